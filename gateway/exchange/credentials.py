"""Agency secrets: issued by the gateway, stored only as hashes, checked in constant time.

Secrets are 256-bit random tokens the gateway generates (never chosen by people), so a single
SHA-256 is enough to make a stolen table useless: there is nothing to brute-force. A slow
password hash would only cost every SOAP call tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_SCHEME = "sha256"


def new_secret() -> str:
    """A fresh URL-safe secret for an agency (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of ``secret``: ``sha256$<hex digest>``."""
    return f"{_SCHEME}${hashlib.sha256(secret.encode('utf-8')).hexdigest()}"


def secret_matches(secret: str, stored: str) -> bool:
    """True when ``secret`` hashes to ``stored``; comparison takes constant time."""
    scheme, _, digest = stored.partition("$")
    if scheme != _SCHEME:
        return False
    candidate = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    return hmac.compare_digest(candidate, digest)
