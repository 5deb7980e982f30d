"""Secrets: API keys and per-case citizen tokens.

API keys are never stored in plaintext, only their SHA-256. A key made by :func:`new_api_key`
carries 256 random bits: guessing it, or inverting its hash, is as hopeless as breaking
SHA-256 itself, so a salt or a deliberately slow hash (bcrypt, argon2: made for low-entropy
passwords) would add cost to every request and no protection. The lookup by hash is an index
hit, and the failed-authentication limit (api/auth_limit.py) bounds online guessing anyway.
The demo keys are fixed, PUBLIC strings: they are loaded only with JIESU_DEMO_DATA=1.

A citizen token only lets its holder rate one case; it is kept with the intake so that a
retried intake answers exactly as the first one did.
"""

from __future__ import annotations

import hashlib
import secrets


def hash_api_key(key: str) -> str:
    """The sha256 hex digest under which a key or token is stored (``api_keys.key_hash``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


API_KEY_PREFIX = "jiesu_"  # recognisable in logs and secret scanners; not part of the entropy


def new_api_key() -> str:
    """A fresh API key: ``jiesu_`` + 43 URL-safe characters (256 random bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_token() -> str:
    """A fresh random token (32 URL-safe characters), e.g. a case's citizen token."""
    return secrets.token_urlsafe(24)
