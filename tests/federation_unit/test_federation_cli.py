"""The operator commands of the network of gateways, in-process with click's runner, on both backends."""

from __future__ import annotations

import ctypes
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from gateway.cli import federation as cli_federation
from gateway.cli import main
from gateway.config import Settings
from gateway.exchange.credentials import secret_matches
from gateway.federation import outbox
from gateway.store.database import Database
from gateway.store.locks import singleton
from gateway.store.models import AuditEntry, OutboxConsignment, Peer


def _cli(db_url: str, tmp_path: Path, *args: str, **env: str) -> Result:
    base = ["--data-dir", str(tmp_path / "var"), "--database-url", db_url]
    return CliRunner().invoke(main, [*base, *args], env={"GATEWAY_INSTANCE_ID": "national", **env})


def test_peers_agencies_home_and_relay_commands(db_url: str, tmp_path: Path) -> None:
    assert _cli(db_url, tmp_path, "db", "upgrade").exit_code == 0
    added = _cli(db_url, tmp_path, "peers", "add", "HA", "--name", "Tỉnh A")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip().splitlines()[-1]
    db = Database(db_url)
    try:
        with db.transaction(readonly=True) as session:
            peer = session.scalars(select(Peer)).one()
            assert (peer.instance_id, peer.role) == ("HA", "provincial")
            assert peer.secret_hash is not None and secret_matches(secret, peer.secret_hash)
        again = _cli(db_url, tmp_path, "peers", "add", "HA", "--name", "again")
        assert again.exit_code == 1 and "already registered" in again.output
        assert "HA" in _cli(db_url, tmp_path, "peers", "list").stdout

        home = _cli(db_url, tmp_path, "agencies", "add", "000.00.01.H41", "Sở", "--level", "2", "--home", "HA")
        assert home.exit_code == 0, home.output
        listed = _cli(db_url, tmp_path, "agencies", "list").stdout
        assert "000.00.01.H41" in listed and "HA" in listed

        status = _cli(db_url, tmp_path, "relay", "status", "--json")
        assert status.exit_code == 0 and json.loads(status.stdout) == []
        missing = _cli(db_url, tmp_path, "relay", "requeue", "00000000-0000-0000-0000-000000000000")
        assert missing.exit_code == 1 and "no failed consignment" in missing.output
        refused = _cli(db_url, tmp_path, "relay", "--once", GATEWAY_ROLE="provincial")
        assert refused.exit_code == 1 and "GATEWAY_UPSTREAM_URL" in refused.output

        with db.transaction(readonly=True) as session:
            actions = [a for a in session.scalars(select(AuditEntry.action))]
            assert "peer_add" in actions and "agency_add" in actions
            assert session.scalars(select(OutboxConsignment)).first() is None
    finally:
        db.dispose()


def _failed_consignment(db: Database, tmp_path: Path) -> str:
    """One consignment to HA that failed after two attempts (a status: no document to report on)."""
    settings = Settings(data_dir=tmp_path / "var", database_url=str(db.url), instance_id="national")
    now = datetime.now(UTC)
    with db.transaction() as session:
        consignment = outbox.add(
            session,
            settings,
            next_hop="HA",
            kind="status",
            document_id=None,
            origin_instance="HB",
            origin_document_id="d",
            sender_code="000.46.24.H14",
            recipients=["000.46.24.H41"],
            sha256="0" * 64,
            size=0,
            path_so_far=["HB"],
            now=now,
        )
        session.flush()
        row = session.get_one(OutboxConsignment, consignment)
        row.attempts = 2
        outbox.fail(session, row, "HA never answered", now, settings)
    return consignment


def test_relay_status_and_failed_show_a_failed_consignment(db_url: str, tmp_path: Path) -> None:
    assert _cli(db_url, tmp_path, "db", "upgrade").exit_code == 0
    db = Database(db_url)
    try:
        consignment = _failed_consignment(db, tmp_path)
    finally:
        db.dispose()
    status = _cli(db_url, tmp_path, "relay", "status")
    assert status.exit_code == 0, status.output
    assert "Relay outbox per next hop" in status.stdout
    (line,) = [row for row in status.stdout.splitlines() if " HA " in row]
    assert [cell.strip() for cell in line.split("│")[1:6]] == ["HA", "0", "0", "1", "0"], "waiting..delivered"

    failed = _cli(db_url, tmp_path, "relay", "failed", "--json")
    (listed,) = json.loads(failed.stdout)
    assert (listed["consignment"], listed["next_hop"], listed["attempts"]) == (consignment, "HA", 2)
    assert (listed["recipients"], listed["error"]) == (["000.46.24.H41"], "HA never answered")
    table = _cli(db_url, tmp_path, "relay", "failed")
    assert "1 failed consignments" in table.stdout and consignment in table.stdout
    assert "HA never answered" in table.stdout

    requeued = _cli(db_url, tmp_path, "relay", "requeue", consignment)
    assert requeued.exit_code == 0 and f"Requeued {consignment} for HA." in requeued.stdout
    assert json.loads(_cli(db_url, tmp_path, "relay", "failed", "--json").stdout) == []


def test_a_second_relay_refuses_with_once_and_otherwise_waits_until_told_to_stop(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The singleton lock is held (by this test): --once gives up, a plain run waits until SIGTERM."""
    assert _cli(db_url, tmp_path, "db", "upgrade").exit_code == 0
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(signal, "signal", lambda signum, handler: handlers.__setitem__(signum, handler))
    waits: list[float | None] = []

    class TerminatedWhileWaiting(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            handlers[signal.SIGTERM](signal.SIGTERM, None)
            return super().wait(0)

    monkeypatch.setattr(cli_federation, "threading", SimpleNamespace(Event=TerminatedWhileWaiting))
    db = Database(db_url)
    try:
        with singleton(db, cli_federation.RELAY_LOCK, tmp_path / "var") as held:
            assert held
            once = _cli(db_url, tmp_path, "relay", "--once")
            waiting = _cli(db_url, tmp_path, "relay", GATEWAY_RELAY_INTERVAL="0.2")
    finally:
        db.dispose()
    assert once.exit_code == 1 and "another relay is already running for instance national" in once.output
    assert waiting.exit_code == 0 and "waiting to take over" in waiting.output and "Relay of" not in waiting.output
    assert waits == [1.0], "a short relay interval is not a busy loop on the lock"
    assert set(handlers) == {signal.SIGTERM, signal.SIGINT}


def test_serve_starts_the_relay_as_a_child_that_dies_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[list[str], Any]] = []
    monkeypatch.setattr(
        cli_federation.subprocess, "Popen", lambda command, preexec_fn: started.append((command, preexec_fn))
    )
    settings = Settings(data_dir=tmp_path / "var", database_url="sqlite:///x.sqlite3")
    cli_federation.spawn_relay(settings)
    ((command, preexec),) = started
    assert command[-5:] == ["--data-dir", str(tmp_path / "var"), "--database-url", "sqlite:///x.sqlite3", "relay"]
    assert command[:-5] == cli_federation.gateway_command() and preexec is cli_federation._die_with_parent


def test_the_relay_child_asks_linux_for_sigterm_when_its_parent_dies() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    asked = ctypes.c_int()
    try:
        cli_federation._die_with_parent()
        assert libc.prctl(2, ctypes.byref(asked)) == 0  # PR_GET_PDEATHSIG
    finally:
        libc.prctl(1, 0)  # this test process must not keep it
    assert asked.value == signal.SIGTERM


def test_without_prctl_the_relay_child_starts_anyway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda *_, **__: SimpleNamespace())
    cli_federation._die_with_parent()  # no AttributeError: macOS and the BSDs have no prctl


def test_without_an_installed_script_the_gateway_runs_through_the_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    assert cli_federation.gateway_command() == [str(tmp_path / "python3"), "-c", "from gateway.cli import main; main()"]
