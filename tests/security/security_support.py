"""Real gateway processes for the attack tests: the development server and gunicorn, CPU and memory read from /proc.

The attacks these tests pin down (issue 10.1-10.3) pinned gunicorn workers for minutes and cost gigabytes,
so they run against ``edxml-gateway serve`` as operators run it, in its own process group, and
measure the serving processes themselves: CPU time (user + system, all of the gateway's processes)
and peak RSS (``VmHWM``, reset before each request) of each process that may serve the request.

This module has a distinctive name because pytest puts every test directory on ``sys.path``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from lxml import etree
from support.cputime import least_in_turns
from support.processes import Process, free_port, gateway_command, vm_kib

NS = "urn:edxml-gateway:soap:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
VPCP, NGHE_AN = "000.00.00.G22", "000.00.00.H41"
SERVERS = ["development", "gunicorn"]


@dataclass
class Server:
    """``edxml-gateway serve --demo`` on a free port: the development server or gunicorn with 2 workers."""

    kind: str
    data_dir: Path
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: Process | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/soap"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "blobs" / "tmp"

    def start(self, timeout: float = 90) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [*gateway_command(), "--data-dir", str(self.data_dir)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        command += ["serve", "--demo", "--port", str(self.port)]
        if self.kind == "gunicorn":
            command += ["--workers", "2", "--timeout", "120"]
        env = {**os.environ, "GATEWAY_DATA_DIR": str(self.data_dir), **self.env}
        env.pop("GATEWAY_DATABASE_URL", None)
        log = self.data_dir.parent / f"{self.data_dir.name}-{self.kind}.log"
        self.process = Process(f"{self.kind} gateway", command, env, log, self.data_dir).start()
        deadline = time.monotonic() + timeout
        try:
            self.process.wait_healthy(self.port, timeout)
        except RuntimeError:
            self.stop()
            raise
        entries = json.loads((self.data_dir / "demo-credentials.json").read_text(encoding="utf-8"))
        self.secrets = {entry["agency"]: entry["secret"] for entry in entries}
        while len(self.serving_pids()) < (2 if self.kind == "gunicorn" else 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self

    def serving_pids(self) -> list[int]:
        """The processes that run requests: gunicorn's workers, or the development server itself."""
        assert self.process is not None
        return self.process.children() if self.kind == "gunicorn" else [self.process.pid]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gateway and all its processes so far."""
        assert self.process is not None
        return self.process.cpu_seconds()

    def reset_peaks(self) -> dict[int, int]:
        """Reset each serving process's peak RSS; returns each one's current RSS in KiB."""
        base = {}
        for pid in self.serving_pids():
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            base[pid] = vm_kib(pid, "VmRSS")
        return base

    def peak_growth_kib(self, base: dict[int, int]) -> int:
        """The largest peak-RSS growth of any serving process since :meth:`reset_peaks`."""
        return max(vm_kib(pid, "VmHWM") - rss for pid, rss in base.items())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@contextlib.contextmanager
def running(kind: str, data_dir: Path, **options: Any) -> Iterator[Server]:
    server = Server(kind, data_dir, **options).start()
    try:
        yield server
    finally:
        server.stop()


# -- requests ------------------------------------------------------------------------------------


def auth_header(code: str, secret: str) -> bytes:
    return f"<g:AuthHeader><g:agencyCode>{code}</g:agencyCode><g:secret>{secret}</g:secret></g:AuthHeader>".encode()


def envelope_parts(operation: str, header: bytes, open_tag: bytes | None = None) -> tuple[bytes, bytes]:
    """The bytes before and after the operation's content."""
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header>'.encode()
        + header
        + b"</s:Header><s:Body>"
        + (open_tag or f"<g:{operation}>".encode())
    )
    return head, f"</g:{operation}></s:Body></s:Envelope>".encode()


def send_document_body(edxml: bytes, code: str, secret: str) -> bytes:
    head, tail = envelope_parts("sendDocument", auth_header(code, secret))
    return head + b"<g:document>" + base64.b64encode(edxml) + b"</g:document>" + tail


@dataclass
class Reply:
    status: int
    fault_code: str | None
    fault_string: str


def parse_reply(status: int, body: bytes) -> Reply:
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    if fault is None:
        return Reply(status, None, "")
    return Reply(status, (fault.findtext("faultcode") or "").rpartition(":")[2], fault.findtext("faultstring") or "")


def post(url: str, body: bytes | Iterable[bytes], action: str, timeout: float = 300) -> Reply:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    response = requests.post(url, data=body, headers=headers, timeout=timeout)
    return parse_reply(response.status_code, response.content)


class StreamedBody:
    """A request body produced piece by piece with a known length, so the client never holds it whole."""

    def __init__(self, pieces: Callable[[], Iterator[bytes]], length: int) -> None:
        self.pieces = pieces
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces()


def cpu_of(server: Server, request: Callable[[], Reply], rounds: int) -> tuple[float, Reply]:
    """The gateway's CPU time for ``rounds`` identical requests, and the last reply."""
    started = server.cpu_seconds()
    reply = Reply(0, None, "")
    for _ in range(rounds):
        reply = request()
    return server.cpu_seconds() - started, reply


def growth_ratio(server: Server, make: Callable[[int], Callable[[], Reply]], n: int, rounds: int) -> float:
    """CPU for size 2n over CPU for size n, requests built by ``make(size)``: each the least of two
    tries, taken in turns (:func:`support.cputime.least_in_turns`)."""
    small, large = make(n), make(2 * n)
    small()
    large()
    cost_small, cost_large = least_in_turns(
        lambda: cpu_of(server, small, rounds)[0], lambda: cpu_of(server, large, rounds)[0], 2
    )
    print(
        f"\n{server.kind}: CPU n={n}: {cost_small:.3f} s, 2n: {cost_large:.3f} s, ratio {cost_large / cost_small:.2f}"
    )
    return cost_large / max(cost_small, 0.01)
