"""WS-Security UsernameToken (issue 10.7): fresh Created only, each Nonce once, PasswordDigest refused clearly.

A token created in 2001 and a replayed nonce used to be accepted (both were ignored). The rules live in
ExchangeService.authenticate; nonces are kept in the wsse_nonces table (migration 0004_wsse_nonces)
with a unique (agency, nonce) constraint, so a replay is refused on every worker and node sharing the
database. Tested in-process on SQLite and PostgreSQL with a controlled clock, and over HTTP against
the development server and gunicorn.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from security_support import NGHE_AN, VPCP, Server, envelope_parts, post
from sqlalchemy import func, select
from support.live import secret_of, seed_directory

from gateway.config import Settings
from gateway.errors import AuthenticationFailed
from gateway.exchange.service import ExchangeService
from gateway.soap.credentials import PASSWORD_DIGEST, PASSWORD_TEXT, HeaderCredentials, authenticate
from gateway.store import nonces
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import WsseNonce

NOW = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def seeded(database: Database) -> Database:
    seed_directory(database)
    return database


@pytest.fixture
def service(seeded: Database, tmp_path: Path, clock: Clock) -> ExchangeService:
    return ExchangeService(seeded, BlobStore(tmp_path / "blobs"), Settings(data_dir=tmp_path), clock)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _token(nonce: str | None = None, created: str | None = None, kind: str = "text") -> HeaderCredentials:
    return HeaderCredentials(VPCP, secret_of(VPCP), kind, nonce, created)  # type: ignore[arg-type]


def test_a_token_from_2001_is_refused(service: ExchangeService) -> None:
    with pytest.raises(AuthenticationFailed, match="created at 2001-01-01T00:00:00Z, more than 300 seconds"):
        authenticate(service, _token(created="2001-01-01T00:00:00Z"))


@pytest.mark.parametrize("offset", [-299, 0, 299], ids=["earlier", "now", "later"])
def test_created_within_the_window_either_way_is_accepted(service: ExchangeService, offset: int) -> None:
    assert authenticate(service, _token(created=_iso(NOW + timedelta(seconds=offset)))).code == VPCP


@pytest.mark.parametrize("offset", [-301, 301], ids=["too-old", "too-far-ahead"])
def test_created_outside_the_window_either_way_is_refused(service: ExchangeService, offset: int) -> None:
    with pytest.raises(AuthenticationFailed, match="check that the client's clock is right"):
        authenticate(service, _token(created=_iso(NOW + timedelta(seconds=offset))))


def test_the_window_is_a_setting(seeded: Database, tmp_path: Path, clock: Clock) -> None:
    settings = Settings(data_dir=tmp_path, wsse_window_seconds=30)
    narrow = ExchangeService(seeded, BlobStore(tmp_path / "blobs"), settings, clock)
    with pytest.raises(AuthenticationFailed, match="more than 30 seconds"):
        authenticate(narrow, _token(created=_iso(NOW - timedelta(seconds=31))))
    assert Settings.from_env().wsse_window_seconds == 300


@pytest.mark.parametrize("created", ["yesterday", "2026-13-01T00:00:00Z", ""], ids=["words", "month-13", "empty"])
def test_a_created_that_is_not_a_timestamp_is_refused(service: ExchangeService, created: str) -> None:
    with pytest.raises(AuthenticationFailed, match="is not a date and time"):
        service.authenticate(VPCP, secret_of(VPCP), created=created)


def test_a_replayed_nonce_is_refused(service: ExchangeService) -> None:
    token = _token(nonce=base64.b64encode(os.urandom(16)).decode(), created=_iso(NOW))
    assert authenticate(service, token).code == VPCP
    with pytest.raises(AuthenticationFailed, match="Nonce was already used"):
        authenticate(service, token)


def test_the_same_nonce_from_another_agency_is_its_own(service: ExchangeService) -> None:
    nonce = base64.b64encode(os.urandom(16)).decode()
    assert service.authenticate(VPCP, secret_of(VPCP), nonce=nonce).code == VPCP
    assert service.authenticate(NGHE_AN, secret_of(NGHE_AN), nonce=nonce).code == NGHE_AN


def test_a_wrong_secret_never_records_its_nonce(service: ExchangeService, seeded: Database) -> None:
    with pytest.raises(AuthenticationFailed, match="send your agency code and secret"):
        service.authenticate(VPCP, "wrong", nonce="n-1", created=_iso(NOW))
    with seeded.transaction() as session:
        assert session.scalar(select(func.count()).select_from(WsseNonce)) == 0
    assert service.authenticate(VPCP, secret_of(VPCP), nonce="n-1", created=_iso(NOW)).code == VPCP


def test_a_nonce_is_usable_again_once_its_window_is_over_and_expired_ones_are_pruned(
    service: ExchangeService, seeded: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nonces, "_last_prune", time.monotonic())
    assert service.authenticate(VPCP, secret_of(VPCP), nonce="again", created=_iso(NOW)).code == VPCP
    assert service.authenticate(VPCP, secret_of(VPCP), nonce="other", created=_iso(NOW)).code == VPCP
    clock.now = NOW + timedelta(seconds=301)
    assert service.authenticate(VPCP, secret_of(VPCP), nonce="again", created=_iso(clock.now)).code == VPCP
    with pytest.raises(AuthenticationFailed, match="already used"):
        service.authenticate(VPCP, secret_of(VPCP), nonce="again", created=_iso(clock.now))
    monkeypatch.setattr(nonces, "_last_prune", -1e9)
    assert service.authenticate(VPCP, secret_of(VPCP), nonce="third", created=_iso(clock.now)).code == VPCP
    with seeded.transaction() as session:
        kept = session.scalars(select(WsseNonce.nonce_sha256)).all()
    assert len(kept) == 2, "the expired 'other' nonce was not pruned"


def test_a_replay_through_another_node_is_refused(service: ExchangeService, db_url: str, tmp_path: Path) -> None:
    """Two services on their own connections stand for two nodes sharing the database."""
    other = Database(db_url)
    try:
        node = ExchangeService(other, BlobStore(tmp_path / "other"), Settings(data_dir=tmp_path), service.clock)
        assert service.authenticate(VPCP, secret_of(VPCP), nonce="shared", created=_iso(NOW)).code == VPCP
        with pytest.raises(AuthenticationFailed, match="already used"):
            node.authenticate(VPCP, secret_of(VPCP), nonce="shared", created=_iso(NOW))
    finally:
        other.dispose()


def test_concurrent_replays_let_exactly_one_through(service: ExchangeService) -> None:
    outcomes: list[bool] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        try:
            service.authenticate(VPCP, secret_of(VPCP), nonce="race", created=_iso(NOW))
            outcomes.append(True)
        except AuthenticationFailed:
            outcomes.append(False)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 5 + [True]


def test_password_digest_is_refused_with_its_reason(service: ExchangeService) -> None:
    with pytest.raises(AuthenticationFailed, match="PasswordDigest, which this gateway cannot check"):
        authenticate(service, _token(nonce="d-1", created=_iso(NOW), kind="digest"))


# --- over HTTP --------------------------------------------------------------------------------


def _username_token(code: str, password: str, password_type: str, nonce: str | None, created: str | None) -> bytes:
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    parts = [
        f'<wsse:Security xmlns:wsse="{wsse}" xmlns:wsu="{wsu}"><wsse:UsernameToken>',
        f"<wsse:Username>{code}</wsse:Username>",
        f'<wsse:Password Type="{password_type}">{password}</wsse:Password>',
    ]
    if nonce is not None:
        parts.append(f"<wsse:Nonce>{nonce}</wsse:Nonce>")
    if created is not None:
        parts.append(f"<wsu:Created>{created}</wsu:Created>")
    parts.append("</wsse:UsernameToken></wsse:Security>")
    return "".join(parts).encode()


def _call(server: Server, header: bytes) -> str | None:
    head, tail = envelope_parts("getAgencies", header)
    return post(server.url, head + tail, "getAgencies").fault_code


def test_username_tokens_over_http(server: Server) -> None:
    secret = server.secrets[VPCP]
    now = _iso(datetime.now(UTC))
    nonce = base64.b64encode(os.urandom(16)).decode()
    fresh = _username_token(VPCP, secret, PASSWORD_TEXT, nonce, now)
    assert _call(server, fresh) is None
    replays = [_call(server, fresh) for _ in range(4)]
    assert replays == ["Client.AuthenticationFailed"] * 4, "a replayed nonce was accepted by some worker"
    old = _username_token(
        VPCP, secret, PASSWORD_TEXT, base64.b64encode(os.urandom(16)).decode(), "2001-01-01T00:00:00Z"
    )
    assert _call(server, old) == "Client.AuthenticationFailed"
    digest = _username_token(VPCP, "ZGlnZXN0", PASSWORD_DIGEST, nonce + "x", now)
    assert _call(server, digest) == "Client.AuthenticationFailed"
    plain = _username_token(VPCP, secret, PASSWORD_TEXT, None, None)
    assert _call(server, plain) is None and _call(server, plain) is None, (
        "a token without nonce or Created works as before"
    )
