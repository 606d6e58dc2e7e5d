"""The operator commands of the network of gateways, in-process with click's runner, on both backends."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
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
        """SIGTERM arrives during the second wait, so the relay tries the lock twice."""

        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            if len(waits) == 2:
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
    assert waiting.exit_code == 0 and waiting.output.count("waiting to take over") == 1, "said once, not per try"
    assert "Relay of" not in waiting.output
    assert waits == [1.0, 1.0], "a short relay interval is not a busy loop on the lock"
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


class DemoProcess:
    """A stand-in for one process demo-network starts: alive for ``alive_polls`` polls, then ended."""

    def __init__(self, pid: int, command: list[str], env: dict[str, str], alive_polls: int, hangs: bool) -> None:
        self.pid, self.command, self.env = pid, command, env
        self.alive_polls, self.hangs = alive_polls, hangs
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self.alive_polls <= 0:
            self.returncode = 1
        self.alive_polls -= 1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.hangs:
            raise subprocess.TimeoutExpired(self.command, timeout or 0)
        self.returncode = 0
        return 0


class DemoStandIns:
    """subprocess.run/Popen, os.killpg, signal.signal and time.sleep for an in-process demo-network.

    A started process answers ``poll`` as running 99 times unless ``alive_polls[index]`` says fewer;
    those in ``hanging`` never finish ``wait``; the start numbered ``start_fails_at`` raises OSError.

    ``run`` answers ``credentials issue CODE`` with ``secret-CODE`` and ``peers add NAME`` with
    ``peer-NAME``; ``answers`` overrides the output of a command ending with the given words.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[tuple[list[str], dict[str, str]]] = []
        self.processes: list[DemoProcess] = []
        self.killed: list[tuple[int, int]] = []
        self.handlers: dict[int, Any] = {}
        self.sleeps = 0
        self.answers: dict[tuple[str, ...], tuple[int, str, str]] = {}
        self.alive_polls: dict[int, int] = {}
        self.hanging: set[int] = set()
        self.start_fails_at: int | None = None
        self.on_sleep: Any = None
        monkeypatch.setattr(subprocess, "run", self.run)
        monkeypatch.setattr(subprocess, "Popen", self.popen)
        monkeypatch.setattr(os, "killpg", lambda pid, signum: self.killed.append((pid, signum)))
        monkeypatch.setattr(signal, "signal", lambda signum, handler: self.handlers.__setitem__(signum, handler))
        monkeypatch.setattr(cli_federation, "time", SimpleNamespace(sleep=self.sleep))
        monkeypatch.setenv("GATEWAY_PUBLIC_URL", "https://not-for-the-demo.example/soap")

    def run(self, command: list[str], env: dict[str, str], capture_output: bool, text: bool) -> SimpleNamespace:
        assert capture_output and text
        self.runs.append((command, env))
        for tail, (code, stdout, stderr) in self.answers.items():
            if tuple(command[-len(tail) :]) == tail:
                return SimpleNamespace(returncode=code, stdout=stdout, stderr=stderr)
        if command[-3:-1] == ["credentials", "issue"]:
            return SimpleNamespace(returncode=0, stdout=f"secret-{command[-1]}\n", stderr="")
        if command[-5:-3] == ["peers", "add"]:
            return SimpleNamespace(returncode=0, stdout=f"peer-{command[-3]}\n", stderr="")
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    def popen(self, command: list[str], env: dict[str, str], start_new_session: bool) -> DemoProcess:
        assert start_new_session, "each instance has its own process group, stopped with killpg"
        index = len(self.processes)
        if index == self.start_fails_at:
            raise OSError(24, "Too many open files")
        process = DemoProcess(9000 + index, command, env, self.alive_polls.get(index, 99), index in self.hanging)
        self.processes.append(process)
        return process

    def sleep(self, _seconds: float) -> None:
        self.sleeps += 1
        if self.on_sleep is not None:
            self.on_sleep()

    def commands(self) -> list[list[str]]:
        """The commands run to completion, without the gateway executable's own words."""
        skip = len(cli_federation.gateway_command())
        return [command[skip:] for command, _env in self.runs]


def _demo(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["demo-network", "--data-dir", str(tmp_path / "demo"), *args])


def test_demo_network_sets_up_three_instances_and_stops_all_when_one_process_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins = DemoStandIns(monkeypatch)
    stand_ins.alive_polls = {3: 1}  # the HA relay ends after the first round of polls
    result = _demo(tmp_path, "--base-port", "20100")
    assert result.exit_code == 0, result.output

    commands = stand_ins.commands()
    assert commands[:3] == [["db", "upgrade"]] * 3
    assert ["agencies", "add", "000.46.24.H41", "UBND xã Cẩm Sơn", "--level", "3", "--parent", "000.00.24.H41"] in (
        commands
    )
    assert ["agencies", "add", "000.00.00.G22", "Văn phòng Chính phủ", "--level", "1"] in commands
    assert sum(c[:2] == ["credentials", "issue"] for c in commands) == 10
    peers_added = [
        (c, env["GATEWAY_INSTANCE_ID"])
        for c, env in zip(commands, (e for _, e in stand_ins.runs), strict=True)
        if c[:2] == ["peers", "add"]
    ]
    assert peers_added == [
        (["peers", "add", "HA", "--name", "Tỉnh A (Nghệ An)"], "national"),
        (["peers", "add", "HB", "--name", "Tỉnh B (Hà Tĩnh)"], "national"),
    ]
    for _command, env in stand_ins.runs:
        assert "GATEWAY_PUBLIC_URL" not in env and env["GATEWAY_RELAY_INTERVAL"] == "1"
        assert env["GATEWAY_DATA_DIR"] == str(tmp_path / "demo" / env["GATEWAY_INSTANCE_ID"])

    known = json.loads((tmp_path / "demo" / "credentials.json").read_text(encoding="utf-8"))
    assert known["peers"] == {"HA": "peer-HA", "HB": "peer-HB"}
    assert known["agencies"]["000.46.24.H14"] == {"instance": "HB", "secret": "secret-000.46.24.H14"}
    assert len(known["agencies"]) == 10
    assert (tmp_path / "demo" / "credentials.json").stat().st_mode & 0o777 == 0o600

    skip = len(cli_federation.gateway_command())
    started = [(p.command[skip:], p.env["GATEWAY_INSTANCE_ID"]) for p in stand_ins.processes]
    assert started == [
        (["serve", "--port", "20100"], "national"),
        (["relay"], "national"),
        (["serve", "--port", "20101"], "HA"),
        (["relay"], "HA"),
        (["serve", "--port", "20102"], "HB"),
        (["relay"], "HB"),
    ]
    assert "GATEWAY_UPSTREAM_URL" not in stand_ins.processes[0].env
    assert stand_ins.processes[5].env["GATEWAY_UPSTREAM_URL"] == "http://127.0.0.1:20100"
    assert stand_ins.processes[5].env["GATEWAY_UPSTREAM_SECRET"] == "peer-HB"

    assert "http://127.0.0.1:20102/soap" in result.stdout and "secret-000.46.24.H14" in result.stdout
    assert "Ctrl+C stops all." in result.stdout
    assert "A demo process ended; stopping the network." in result.stderr
    assert stand_ins.sleeps == 1
    assert stand_ins.killed == [(p.pid, signal.SIGTERM) for p in stand_ins.processes if p.pid != 9003], (
        "the process that ended is not signalled"
    )


def test_demo_network_reuses_its_credentials_and_on_sigterm_kills_a_process_that_will_not_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins = DemoStandIns(monkeypatch)
    known = {
        "agencies": {"000.00.00.H41": {"instance": "HA", "secret": "kept-secret"}},
        "peers": {"HA": "kept-HA", "HB": "kept-HB"},
    }
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "credentials.json").write_text(json.dumps(known), encoding="utf-8")
    stand_ins.hanging = {2}
    stand_ins.on_sleep = lambda: stand_ins.handlers[signal.SIGTERM](signal.SIGTERM, None)

    result = _demo(tmp_path)
    assert result.exit_code == 0, result.output
    assert stand_ins.commands() == [["db", "upgrade"]] * 3, "a second start sets nothing up again"
    assert [p.command[-2:] for p in stand_ins.processes[::2]] == [["--port", str(8100 + i)] for i in range(3)]
    assert stand_ins.processes[3].env["GATEWAY_UPSTREAM_SECRET"] == "kept-HA"
    assert "kept-secret" in result.stdout
    assert "A demo process ended" not in result.stderr, "SIGTERM stops the network quietly"
    assert stand_ins.killed == [(9000 + i, signal.SIGTERM) for i in range(6)] + [(9002, signal.SIGKILL)]


def test_demo_network_stops_at_a_failing_setup_command_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins = DemoStandIns(monkeypatch)
    stand_ins.answers[("db", "upgrade")] = (1, "", "  error: database is locked\n")
    result = _demo(tmp_path)
    assert result.exit_code == 1
    command = [*cli_federation.gateway_command(), "db", "upgrade"]
    unwrapped = " ".join(result.stderr.split())  # the console wraps long lines at a space
    assert unwrapped == f"error: {' '.join(command[-4:])} failed: error: database is locked"
    assert len(stand_ins.runs) == 1 and stand_ins.processes == []
    assert not (tmp_path / "demo" / "credentials.json").exists()


@pytest.mark.parametrize("printed", ["", "Added.\nsecret\n"])
def test_demo_network_refuses_output_that_is_not_one_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, printed: str
) -> None:
    stand_ins = DemoStandIns(monkeypatch)
    stand_ins.answers[("credentials", "issue", "000.00.00.G01")] = (0, printed, "")
    result = _demo(tmp_path)
    assert result.exit_code == 1
    assert "Error: could not read the secret the gateway printed" in result.stderr
    assert stand_ins.processes == [] and not (tmp_path / "demo" / "credentials.json").exists()


def test_demo_network_stops_the_processes_it_started_when_a_later_start_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They run in sessions of their own, so nothing else would ever stop them."""
    stand_ins = DemoStandIns(monkeypatch)
    stand_ins.start_fails_at = 3
    result = _demo(tmp_path)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: could not start a demo process: [Errno 24] Too many open files"
    assert stand_ins.killed == [(9000, signal.SIGTERM), (9001, signal.SIGTERM), (9002, signal.SIGTERM)]
    assert [p.returncode for p in stand_ins.processes] == [0, 0, 0], "each one is waited for"
