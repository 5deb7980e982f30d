"""Secrets: API keys and per-case citizen tokens.

API keys are never stored in plaintext: they are long random (or, for the demo keys, fixed)
strings, so a plain sha256 is enough to store and look them up; no salt or slow hash is needed.
A citizen token only lets its holder rate one case; it is kept with the intake so that a
retried intake answers exactly as the first one did.
"""

from __future__ import annotations

import hashlib
import secrets


def hash_api_key(key: str) -> str:
    """The sha256 hex digest under which a key or token is stored (``api_keys.key_hash``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (32 URL-safe characters), e.g. a case's citizen token."""
    return secrets.token_urlsafe(24)
