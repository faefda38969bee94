"""The malloc settings every gateway process applies (app/memory.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = "from app.memory import tune_malloc; print(tune_malloc())"


def run_probe(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_applied_on_glibc_unless_the_operator_chose_their_own() -> None:
    # In a fresh interpreter each time: the settings last for the life of a process.
    assert run_probe({"PATH": "/usr/bin:/bin"}) == "True"
    assert run_probe({"PATH": "/usr/bin:/bin", "MALLOC_TRIM_THRESHOLD_": "1048576"}) == "False"
    assert run_probe({"PATH": "/usr/bin:/bin", "MALLOC_MMAP_THRESHOLD_": "131072"}) == "False"
