"""Slow clients cannot take the gateway away from everyone else, with no proxy in front (issue 10.6).

Both ways ``serve`` runs are started as real processes: the development server (gevent's pywsgi) and
production (``--workers 2``: gunicorn, gevent workers). 1,000 connections are held open, half
trickling the headers of a request one byte at a time, half having sent complete headers with a
Content-Length 10 bytes longer than the body that follows. While they are held and after they
close, a normal client's ``/health`` and ``getAgencies`` answer within a second, and afterwards
the server's threads and open descriptors come back to where they were (no thread or socket per
dead connection). A second test shortens the deadlines and checks that the server itself closes
connections whose headers are late and answers a late body with a fault.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from reliability.reliability_support import VPCP, Agent, GatewayProcess

SLOW_CONNECTIONS = 1000
HOLD_SECONDS = 6.0
"""How long the slow connections are held (under the default 10 s header deadline)."""
ANSWER_WITHIN = 1.0
MODES = {"development": None, "production": 2}

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def _enough_descriptors() -> None:
    """The test process itself holds a thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
        if wanted < SLOW_CONNECTIONS + 200:
            pytest.skip(f"the open-file limit ({hard}) is too low to hold {SLOW_CONNECTIONS} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@contextlib.contextmanager
def gateway(tmp_path: Path, workers: int | None, env: dict[str, str] | None = None) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path / "var", workers=workers, env=env or {})
    try:
        yield process.start()
    finally:
        process.stop()


def processes(gateway: GatewayProcess) -> list[psutil.Process]:
    """Every process of the server: the development server itself, or gunicorn's master and workers."""
    assert gateway.process is not None
    master = psutil.Process(gateway.process.pid)
    return [master, *master.children()]


def usage(gateway: GatewayProcess) -> tuple[int, int]:
    """Threads and open descriptors of all the server's processes together."""
    threads = fds = 0
    for process in processes(gateway):
        with contextlib.suppress(psutil.NoSuchProcess):
            threads += process.num_threads()
            fds += process.num_fds()
    return threads, fds


def assert_answers(gateway: GatewayProcess) -> None:
    """``/health`` and an authenticated ``getAgencies`` each answer within ``ANSWER_WITHIN`` seconds."""
    started = time.monotonic()
    health = requests.get(f"http://127.0.0.1:{gateway.port}/health", timeout=ANSWER_WITHIN)
    assert health.status_code == 200
    reply = Agent(gateway.url, VPCP, gateway.secrets[VPCP]).call("getAgencies", timeout=ANSWER_WITHIN)
    assert reply.fault_code is None, reply.fault_string
    assert len(reply.findall("code")) >= 100
    assert time.monotonic() - started < 2 * ANSWER_WITHIN


def open_slow(port: int, count: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """``count`` connections: half trickling headers, half waiting on a body 10 bytes short of its length."""
    tricklers: list[socket.socket] = []
    short_bodies: list[socket.socket] = []
    body = b"<x/>" * 10
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if index % 2:
            sock.sendall(
                b'POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: "getAgencies"\r\n'
                + f"Content-Length: {len(body) + 10}\r\n\r\n".encode()
                + body
            )
            short_bodies.append(sock)
        else:
            sock.sendall(b"POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            tricklers.append(sock)
    return tricklers, short_bodies


def wait_until_held(gateway: GatewayProcess, descriptors: float, timeout: float = 10) -> None:
    """Wait (bounded) until the server has accepted the burst: the test is about connections held, not arriving."""
    deadline = time.monotonic() + timeout
    while usage(gateway)[1] < descriptors and time.monotonic() < deadline:
        time.sleep(0.1)


def trickle(sockets: list[socket.socket]) -> int:
    """One more header byte on every connection; returns how many the server has not closed."""
    alive = 0
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.send(b"X")
            alive += 1
    return alive


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def settle(gateway: GatewayProcess, baseline: tuple[int, int], timeout: float = 20) -> tuple[int, int]:
    """Wait (bounded) until threads and descriptors are back near ``baseline``; returns the last reading."""
    deadline = time.monotonic() + timeout
    current = usage(gateway)
    while time.monotonic() < deadline:
        current = usage(gateway)
        if current[0] <= baseline[0] + 2 and current[1] <= baseline[1] + 20:
            break
        time.sleep(0.5)
    return current


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_thousand_slow_connections_do_not_stop_service(tmp_path: Path, mode: str) -> None:
    with gateway(tmp_path, MODES[mode]) as served:
        assert_answers(served)
        baseline = usage(served)
        tricklers, short_bodies = open_slow(served.port, SLOW_CONNECTIONS)
        try:
            wait_until_held(served, baseline[1] + SLOW_CONNECTIONS * 0.9)
            held_until = time.monotonic() + HOLD_SECONDS
            peak_threads = 0
            while time.monotonic() < held_until:
                assert_answers(served)
                peak_threads = max(peak_threads, usage(served)[0])
                assert trickle(tricklers) == len(tricklers), "a trickling connection was dropped before its deadline"
                time.sleep(0.5)
            held = usage(served)
            assert held[1] >= baseline[1] + SLOW_CONNECTIONS * 0.9, f"the server does not hold the connections: {held}"
            assert peak_threads <= baseline[0] + 2, f"threads grew with connections: {baseline[0]} -> {peak_threads}"
        finally:
            close_all(tricklers + short_bodies)
        after = settle(served, baseline)
        assert after[0] <= baseline[0] + 2 and after[1] <= baseline[1] + 20, f"{baseline} -> {after} after closing"
        cpu_before = sum(p.cpu_times().user + p.cpu_times().system for p in processes(served))
        time.sleep(2)
        cpu_after = sum(p.cpu_times().user + p.cpu_times().system for p in processes(served))
        assert cpu_after - cpu_before < 0.5, f"the idle server used {cpu_after - cpu_before:.2f} s of CPU in 2 s"
        assert_answers(served)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_late_headers_and_bodies_are_cut_off(tmp_path: Path, mode: str) -> None:
    env = {"GATEWAY_HEADER_TIMEOUT": "2", "GATEWAY_BODY_TIMEOUT": "3"}
    with gateway(tmp_path, MODES[mode], env) as served:
        baseline = usage(served)
        tricklers, short_bodies = open_slow(served.port, 100)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and trickle(tricklers):
                time.sleep(0.5)
            assert trickle(tricklers) == 0, "connections still trickling headers after the header deadline"
            for sock in short_bodies:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                answer = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := sock.recv(65536):
                        answer += chunk
                # Both servers hand the body to the gateway as it comes: it answers Client.MalformedRequest.
                assert b"did not arrive within 3 s" in answer, answer[:300]
        finally:
            close_all(tricklers + short_bodies)
        settle(served, baseline)
        assert_answers(served)
