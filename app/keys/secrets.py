"""Gateway key material: 256 random bits, shown once, stored only as a SHA-256 digest.

A fast hash is right here: the key has far more entropy than a password, so the digest cannot be
brute-forced, and lookups stay one indexed equality per cache miss.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "igw_"
PREFIX_LENGTH = 12  # "igw_" + 8 characters: enough to recognise a key in listings


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]
