#!/bin/sh
# The benchmark's one system dependency: wrk, a C load generator, from Debian's packages.
set -eu
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y wrk
