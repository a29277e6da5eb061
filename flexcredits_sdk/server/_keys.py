"""API keys: made from 256 random bits, shown once, stored only as a SHA-256 digest.

A key is ``fck_`` followed by 43 URL-safe characters. Keys carry their full entropy, so a fast
hash is the right one: nothing can be guessed from the digest, and a lookup by digest costs one
index probe (a slow password hash would only slow every request down).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["KEY_PREFIX", "digest", "new_key", "same_key"]

#: What every tenant key starts with, so a leaked key is easy to recognise.
KEY_PREFIX = "fck_"


def new_key() -> str:
    """Return a new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """Return the hex SHA-256 digest under which `key` is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def same_key(given: str, expected: str) -> bool:
    """Compare two keys in constant time."""
    return hmac.compare_digest(digest(given), digest(expected))
