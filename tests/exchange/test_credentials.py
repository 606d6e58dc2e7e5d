"""Agency secrets are stored as ``sha256$<digest>``; a stored value in any other form never matches."""

from __future__ import annotations

import hashlib

import pytest

from gateway.exchange.credentials import hash_secret, new_secret, secret_matches


def test_a_secret_matches_its_own_hash_only() -> None:
    secret = new_secret()
    stored = hash_secret(secret)
    assert stored.startswith("sha256$") and secret not in stored
    assert secret_matches(secret, stored)
    assert not secret_matches(secret + "x", stored)
    assert not secret_matches(new_secret(), stored)


def test_new_secrets_are_long_and_distinct() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20 and {len(s) for s in secrets} == {43}


@pytest.mark.parametrize("scheme", ["md5", "bcrypt", "", "SHA256"])
def test_a_hash_under_another_scheme_is_refused_even_with_the_right_digest(scheme: str) -> None:
    digest = hashlib.sha256(b"secret").hexdigest()
    assert not secret_matches("secret", f"{scheme}${digest}")


def test_a_bare_digest_without_scheme_is_refused() -> None:
    assert not secret_matches("secret", hashlib.sha256(b"secret").hexdigest())
