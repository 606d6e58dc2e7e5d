"""The agent as a real process: killed, restarted, with the gateway killed under it, it loses nothing
and duplicates nothing."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.letters import official_letter
from support.live import NGHE_AN, VPCP, secret_of, seed_directory

from gateway.client import AgencyClient, Unreachable
from gateway.store.database import Database

pytestmark = pytest.mark.slow

DOCUMENTS = 10
OUTGOING = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command(*args: str) -> list[str]:
    """The installed ``edxml-gateway`` of the interpreter running the tests."""
    return [str(Path(sys.executable).parent / "edxml-gateway"), *args]


class Process:
    """A child in its own process group, its output in a file for the failure message."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gateway at {base} did not come up")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Process, Process, str, Path]]:
    data = tmp_path / "var"
    db = Database(f"sqlite:///{data / 'gateway.sqlite3'}")
    db.upgrade()
    seed_directory(db)
    db.dispose()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data), "GATEWAY_LEASE_SECONDS": "2"}
    gateway = Process(_command("serve", "--port", str(port)), env, tmp_path / "gateway.log")
    folder = tmp_path / "agent"
    agent_env = {**os.environ, "EDXML_AGENCY": NGHE_AN, "EDXML_SECRET": secret_of(NGHE_AN)}
    agent = Process(
        _command("agent", "run", "--dir", str(folder), "--url", f"{base}/soap", "--interval", "0.2"),
        agent_env,
        tmp_path / "agent.log",
    )
    gateway.start()
    _wait_healthy(base)
    agent.start()
    try:
        yield gateway, agent, base, folder
    finally:
        agent.stop()
        gateway.stop()


def _send_retrying(client: AgencyClient, letter: bytes) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            return str(client.send(letter).documentId)
        except Unreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_killing_the_agent_and_the_gateway_loses_and_duplicates_nothing(
    network: tuple[Process, Process, str, Path],
) -> None:
    gateway, agent, base, folder = network
    chance = random.Random(20261201)
    vpcp = AgencyClient(f"{base}/soap", VPCP, secret_of(VPCP), timeout=5)
    expected: dict[str, str] = {}
    outgoing = {f"out-{n}.edxml": official_letter(NGHE_AN, [VPCP], number=f"9{n}") for n in range(OUTGOING)}
    (folder / "outbox").mkdir(parents=True, exist_ok=True)

    for n in range(DOCUMENTS):
        letter = official_letter(VPCP, [NGHE_AN], number=f"50{n}", attachment=os.urandom(200_000))
        expected[_send_retrying(vpcp, letter)] = hashlib.sha256(letter).hexdigest()
        if n < OUTGOING:
            name = f"out-{n}.edxml"
            staging = folder / f".{name}"
            staging.write_bytes(outgoing[name])
            staging.rename(folder / "outbox" / name)
        time.sleep(chance.uniform(0.05, 0.4))
        if n % 3 == 1:
            agent.kill()
            agent.start()
        if n == 5:
            gateway.kill()
            time.sleep(0.5)
            gateway.start()
            _wait_healthy(base)

    deadline = time.monotonic() + 60
    nghe_an = AgencyClient(f"{base}/soap", NGHE_AN, secret_of(NGHE_AN), timeout=5)
    while time.monotonic() < deadline:
        saved = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "inbox").glob("*.edxml")}
        done = sorted(p.name for p in (folder / "sent").glob("*.edxml"))
        if saved == expected and done == sorted(outgoing):
            break
        time.sleep(0.5)
    assert saved == expected, (folder / "inbox", agent.log.read_text(errors="replace")[-3000:])
    assert done == sorted(outgoing)
    agent.stop()
    time.sleep(2.5)  # every lease the killed agents held has run out
    assert nghe_an.pending() == []
    received = [item.documentId for item in vpcp.pending(100) if item.kind == "document"]
    assert len(received) == len(set(received)) == OUTGOING
