"""Throughput of the gateway as deployed, against the bare cost of the work it cannot avoid.

The question this answers: how many ~20 KB edXML documents with a 1 MB attachment can the gateway
take per second under gunicorn, and how close is that to the ceiling set by what any gateway must
do per document (lxml parse + XSD validation, then a durable store: write + fsync the file and one
database insert committed)? The target (issue 13) is sends/s >= 0.9 of that ceiling on the same
cores, median of three rounds (``--rounds 3``).

For each backend (SQLite, PostgreSQL) it starts the gateway under gunicorn as ``edxml-gateway serve
--production --workers N`` does (gevent workers), through ``tools/bench_app.py`` (which adds a bare
Spyne operation on ``/bare`` to the same workers), in its own process group with a fresh data
directory (and a fresh PostgreSQL database), then:

1. warm-up (excluded): a short send phase and a drain, so every worker has compiled its schemas;
   then, also excluded, a phase of sends that fills the recipients' queues for step 3 (long enough
   for three receive slices at the warm-up's speeds);
2. sends and their ceiling: parallel client *processes* post pre-built SOAP envelopes (raw HTTP, no
   zeep, so the client stays cheap) for a fixed duration; each document gets a unique DocumentId and
   number by rewriting the first base64 block of a template. The ceiling: as many processes as
   gunicorn workers run lxml parse + validate + store, on the same backend, for the same duration.
   The two alternate in ABBA order (sends, ceiling, ceiling, sends; half the duration per slice),
   so a drift of the machine's speed during the run weighs on both alike;
3. receive: the recipients take items off their queues as a client does:
   getPendingDocuments(maxItems=10), then getDocument + confirmReceived for each item; where the
   served WSDL has the batch operations, one getDocuments and one confirmReceivedItems for the
   batch instead (``--per-item-fetch``: getDocument per item all the same); items/s is compared
   with the sends/s of the same run (target >= 1.0: the gateway empties queues at least as fast as
   they fill). Timed like the sends, in two slices that bracket step 2 (one just before it, one
   just after), on queues that never run dry during a slice (that would be an error); what is left
   is drained afterwards, unmeasured, and every document sent must have been received;
4. empty polls: getPendingDocuments for agencies with nothing waiting, and the bare Spyne
   operation on ``/bare`` (no storage work) with the same clients on the same workers, in ABBA
   order (polls, bare, bare, polls; half the duration per slice); polls/s is compared with bare
   calls/s (target >= 0.6: an empty poll costs little more than SOAP itself);
5. parse + validate alone (as the ceiling, without the store), for comparison.

Clients and server share the machine's cores (as does anything else running), so the bench
reports the CPU the clients used and the CPU used by processes it did not start ("foreign"), to
show how much the figures are disturbed. A round at the default duration stores about 16 GB
(removed when the round ends); a round that could leave less than :data:`SPACE_LEFT` free on the
scratch directory's filesystem is not started (a full disk stops a PostgreSQL server on it).

    .venv/bin/python tools/bench.py                       # both backends, 20 s phases
    .venv/bin/python tools/bench.py --rounds 3            # the same three times, with each backend's ratios
    .venv/bin/python tools/bench.py --quick --backends sqlite --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import multiprocessing
import os
import platform
import queue
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import psutil
import psycopg
from lxml import etree
from sqlalchemy import make_url

from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes
from gateway.store.blobs import drop_cached_pages

REPO = Path(__file__).resolve().parents[1]
XSD = REPO / "xsd" / "edxml-document.xsd"
BENCH_APP = REPO / "tools" / "bench_app.py"
BARE_NS = "urn:edxml-gateway:bench:bare"
NS = "urn:edxml-gateway:soap:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SENDER = "000.00.00.G22"
RECIPIENTS = ("000.00.00.H41", "000.00.00.H14")
"""One sender, two recipients so two queues are drained at once (secrets issued by tools/bench_app.py)."""
IDLE_AGENCIES = 8
"""Agencies nobody writes to: their polls are the empty polls."""
PULL_BATCH = 10
"""maxItems of the receiving clients' getPendingDocuments."""
PLACEHOLDER = "BENCH-0000000000"
"""Stands for the document number in CodeNumber and DocumentId; replaced by a same-length number."""
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ATTACHMENT_BYTES = 1_000_000
SEND_TARGET = 0.9
"""Sends/s against the ceiling, median of three rounds (issue 13: a send can cost less than the ceiling)."""
SPACE_LEFT = 4 * 1024**3
"""Free bytes a backend-round must leave on the scratch directory's filesystem, by its estimate.

A round stores thousands of documents (about 16 GB at 20 s phases here), and PostgreSQL often shares
that filesystem: when it fills, the server stops ("No space left on device") for everyone using it.
So a round that might fill it is not started (:class:`SpaceGuard`)."""
DOCUMENTS_PER_PHASE_SECOND = 800
"""First estimate of the documents a backend-round stores per second of ``--duration`` (sends, the
queues filled for receiving, the ceiling): 16 GB of 1.35 MB documents at 20 s phases is about 600.
Once a round has run, what it took is used instead."""
CEILING_STEPS = ("parse", "validate", "write+fsync", "insert+commit", "document")
OPERATIONS = ("sendDocument", "getPendingDocuments", "getDocument", "confirmReceived", "fetch+ack")
RECEIVE_OPERATIONS = (
    "getPendingDocuments",
    "getDocument",
    "getDocuments",
    "confirmReceived",
    "confirmReceivedItems",
    "fetch+ack",
)
_FETCHED_HEAD = re.compile(rb"<(?:[\w.-]+:)?itemId>([^<]+)</.*?<(?:[\w.-]+:)?size>(\d+)</.*?<(?:[\w.-]+:)?edxml>", re.S)
"""A getDocuments answer's item up to its file's base64 (whose length its size gives: the scan jumps over it)."""
POLL_OPERATIONS = ("emptyPoll", "bare")
_ITEM_ID = re.compile(rb"<(?:[\w.-]+:)?itemId>([^<]+)</")
_RESPONSE_HEAD = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*(\r\n.*?)\r\n\r\n", re.S)
_CONTENT_LENGTH = re.compile(rb"(?i)\ncontent-length:[ \t]*(\d+)")
RESPONSE_BUFFER = 4 * 1024 * 1024
"""Bytes of a client's response buffer: a fetched document's answer (1.9 MB) fits without growing it."""
HEAD_LIMIT = 64 * 1024
"""Bytes a response's status line and headers may take in the bench's client."""
_DOCUMENT_ID = re.compile(rb"<(?:[\w.-]+:)?documentId>([^<]+)</")
_PARA = (
    "Ủy ban nhân dân tỉnh chỉ đạo các sở, ban, ngành triển khai kết nối, liên thông văn bản điện tử "
    "giữa các cơ quan nhà nước theo Nghị quyết 36a/NQ-CP; "
)


# -- the document ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One edXML document whose number can be changed without re-encoding the 1 MB attachment.

    The placeholder occurs only in the header, so the file splits at a multiple of 3 bytes after
    its last occurrence: the base64 of the head is recomputed per document (a few hundred bytes)
    and the base64 of the rest, computed once, is appended. Both halves concatenate to the base64
    of the whole file because the split is 3-byte aligned.
    """

    edxml: bytes
    split: int
    tail_b64: bytes

    @classmethod
    def build(cls, recipient: str, attachment: bytes) -> Template:
        msg = DocumentMessage(
            sender=Organization(SENDER, "Văn phòng Chính phủ"),
            recipients=(Organization(recipient, "Ủy ban nhân dân tỉnh"),),
            code_number=PLACEHOLDER,
            code_notation="VPCP-TTĐT",
            promulgation_date=date(2026, 11, 20),
            type_code=1,
            type_name="Công văn",
            subject=(_PARA * 8)[:990],
            document_id=f"{SENDER},2026/11/20,{PLACEHOLDER}/VPCP-TTĐT",
            content=(_PARA * 30)[:3990],
            signer_position="Phó Chủ nhiệm",
            signer_full_name="Nguyễn Văn A",
            priority=1,
            to_places=tuple((f"Sở {i:02d}: " + _PARA * 3)[:480] for i in range(24)),
        )
        edxml = document_bytes(msg, [AttachmentSource("cong-van.pdf", "application/pdf", data=attachment)])
        last = edxml.rfind(PLACEHOLDER.encode()) + len(PLACEHOLDER)
        split = -(-last // 3) * 3
        return cls(edxml, split, base64.b64encode(edxml[split:]))

    @property
    def header_bytes(self) -> int:
        """Bytes of edXML before the attachment's base64: the "metadata/text" part of the document."""
        return self.edxml.find(b"<ContentTransferEncoded>")

    def number(self, n: int) -> bytes:
        """The document number replacing the placeholder: same length, so the split stays aligned."""
        return f"BENCH-{n:010d}".encode()

    def document(self, n: int) -> bytes:
        """The edXML file with number ``n``."""
        return self.edxml[: self.split].replace(PLACEHOLDER.encode(), self.number(n)) + self.edxml[self.split :]

    def document_b64(self, n: int) -> bytes:
        return b"".join(self.document_b64_parts(n))

    def document_b64_parts(self, n: int) -> tuple[bytes, bytes]:
        """The base64 of document ``n`` in two pieces (the head's, recomputed; the rest's), not joined."""
        head = self.edxml[: self.split].replace(PLACEHOLDER.encode(), self.number(n))
        return base64.b64encode(head), self.tail_b64


def envelope_parts(agency: str, secret: str, operation: str) -> tuple[bytes, bytes]:
    """The bytes before and after the operation's parameters, so large bodies are joined, not formatted."""
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:gw="{NS}">'
        f"<soapenv:Header><gw:AuthHeader><gw:agencyCode>{agency}</gw:agencyCode><gw:secret>{secret}</gw:secret>"
        f"</gw:AuthHeader></soapenv:Header><soapenv:Body><gw:{operation}>"
    )
    return head.encode(), f"</gw:{operation}></soapenv:Body></soapenv:Envelope>".encode()


def envelope(agency: str, secret: str, operation: str, body: bytes) -> bytes:
    """A SOAP 1.1 request as a generated stub would send it (AuthHeader, document/literal wrapped)."""
    head, tail = envelope_parts(agency, secret, operation)
    return head + body + tail


# -- clients --------------------------------------------------------------------------------------


@dataclass
class ClientResult:
    """What one client process did: latencies per operation (seconds), errors, its own CPU time."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0

    def record(self, operation: str, seconds: float) -> None:
        self.latencies.setdefault(operation, []).append(seconds)

    def fail(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(message[:300])


class SoapCaller:
    """Raw HTTP POSTs to /soap: a new connection per call, as legacy stubs without keep-alive make them.

    The request goes out in one ``sendmsg`` of its pieces (headers, envelope head, the document's
    base64 in its two pieces, envelope tail), so the client never joins a 1.8 MB body, and the
    response is received into one buffer reused for every call, so a fetched 1.9 MB answer is
    neither parsed by ``http.client`` nor copied into fresh memory (0.27-0.31 against 0.50-0.57 ms
    of client CPU per 1.8 MB answer, docs/performance.md). The clients stand for agencies' own
    machines, and every copy they make here takes CPU from the gateway on the cores they share.
    """

    def __init__(self, port: int, result: ClientResult, path: str = "/soap") -> None:
        self.port = port
        self.result = result
        self.path = path
        self._buffer = bytearray(RESPONSE_BUFFER)

    def call(self, operation: str, body: bytes | Sequence[bytes], label: str | None = None) -> memoryview | None:
        """POST ``body`` (or its pieces, in order); the response body, or None after recording the failure.

        The body is a view of the caller's buffer, valid until its next call. Latency goes under
        ``label`` (default: the operation).
        """
        started = time.perf_counter()
        parts = [body] if isinstance(body, bytes) else list(body)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept-Encoding: identity\r\n"
            f"Content-Length: {sum(len(part) for part in parts)}\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f'SOAPAction: "{operation}"\r\nConnection: close\r\n\r\n'
        ).encode()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=120) as sock:
                _send_all(sock, [head, *parts])
                status, data = self._receive(sock)
        except (OSError, ValueError) as exc:
            self.result.fail(f"{operation}: {type(exc).__name__}: {exc}")
            return None
        if status != 200:
            self.result.fail(f"{operation}: HTTP {status}: {bytes(data[:300])!r}")
            return None
        self.result.record(label or operation, time.perf_counter() - started)
        return data

    def _receive(self, sock: socket.socket) -> tuple[int, memoryview]:
        """Status and body of the response, received into the buffer (grown if a body needs more)."""
        view = memoryview(self._buffer)
        got = 0
        while (found := _RESPONSE_HEAD.match(self._buffer, 0, got)) is None:
            if got >= HEAD_LIMIT:
                raise ValueError(f"no end of the response headers in its first {HEAD_LIMIT // 1024} KiB")
            received = sock.recv_into(view[got:HEAD_LIMIT])
            if not received:
                raise ConnectionError("the gateway closed the connection before answering")
            got += received
        length = _CONTENT_LENGTH.search(found.group(2))
        if length is None:
            raise ValueError("a response without Content-Length (the gateway always sends one)")
        start, end = found.end(), found.end() + int(length.group(1))
        if end > len(self._buffer):  # a new buffer: views of the old one (earlier answers) may still be held
            grown = bytearray(end)
            grown[:got] = view[:got]
            self._buffer, view = grown, memoryview(grown)
        while got < end:
            received = sock.recv_into(view[got:end])
            if not received:
                raise ConnectionError(f"the response ended {end - got} bytes short")
            got += received
        return int(found.group(1)), view[start:end]


def _send_all(sock: socket.socket, parts: list[bytes]) -> None:
    """Send ``parts`` back to back with ``sendmsg`` (scatter-gather: no joined copy), resuming after partial sends."""
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def send_envelope_parts(secret: str) -> tuple[bytes, bytes]:
    """The sender's ``sendDocument`` request before and after the document's base64 text."""
    head, tail = envelope_parts(SENDER, secret, "sendDocument")
    return head + b"<gw:document>", b"</gw:document>" + tail


def send_document(caller: SoapCaller, around: tuple[bytes, bytes], template: Template, n: int) -> None:
    """Send document ``n`` in ``around`` (:func:`send_envelope_parts`); an answer without a documentId is an error."""
    head, tail = around
    data = caller.call("sendDocument", (head, *template.document_b64_parts(n), tail))
    if data is not None and not _DOCUMENT_ID.search(data):
        caller.result.fail(f"sendDocument: no documentId in {bytes(data[:300])!r}")


def _send_client(
    port: int, secret: str, template: Template, first: int, *, start_at: float, stop_at: float, out: Queue
) -> None:
    """Send documents numbered from ``first`` until ``stop_at`` (monotonic clock, shared by all processes)."""
    result = ClientResult()
    caller = SoapCaller(port, result)
    cpu = _cpu_seconds()
    around = send_envelope_parts(secret)
    n = first
    time.sleep(max(0.0, start_at - time.monotonic()))
    while time.monotonic() < stop_at:
        send_document(caller, around, template, n)
        n += 1
    result.cpu_seconds = _cpu_seconds() - cpu
    out.put(result)


def _fetch_client(
    port: int,
    agency: str,
    secret: str,
    batches: Batches,
    *,
    start_at: float,
    out: Queue,
    stop_at: float | None = None,
) -> None:
    """Receive as an agency's software does: pull a batch, fetch and acknowledge it, until the queue is
    empty or, with ``stop_at``, until then (finishing the batch in hand).

    A timed slice measures receiving while every client has work: a queue that runs dry before
    ``stop_at`` is an error, since the slice would then count clients waiting for nothing.
    ``batches`` says how the served WSDL takes several items at once: one getDocuments for the
    batch, one confirmReceivedItems (else getDocument, confirmReceived per item). Every item
    fetched and acknowledged counts once under "fetch+ack", with its share of the batch's time.
    """
    result = ClientResult()
    caller = SoapCaller(port, result)
    cpu = _cpu_seconds()
    pending = envelope(agency, secret, "getPendingDocuments", f"<gw:maxItems>{PULL_BATCH}</gw:maxItems>".encode())
    time.sleep(max(0.0, start_at - time.monotonic()))
    while stop_at is None or time.monotonic() < stop_at:
        started = time.perf_counter()
        listing = caller.call("getPendingDocuments", pending)
        if listing is None:
            break
        items = _ITEM_ID.findall(listing)
        if not items:
            if stop_at is not None:
                result.fail(f"receive: {agency}'s queue ran dry before the end of the timed slice; queue more first")
            break
        fetched_items = (
            _fetch_batch(caller, agency, secret, batches.fetch, items, result)
            if batches.fetch is not None
            else _fetch_each(caller, agency, secret, batches.confirm is None, items, result)
        )
        if batches.confirm is not None and fetched_items:
            body = _batch_body(batches.confirm, fetched_items)
            if caller.call("confirmReceivedItems", envelope(agency, secret, "confirmReceivedItems", body)) is None:
                fetched_items = []
        if fetched_items:
            share = (time.perf_counter() - started) / len(fetched_items)
            for _ in fetched_items:
                result.record("fetch+ack", share)
    result.cpu_seconds = _cpu_seconds() - cpu
    out.put(result)


def _fetch_each(
    caller: SoapCaller, agency: str, secret: str, confirm_each: bool, items: list[bytes], result: ClientResult
) -> list[bytes]:
    """getDocument for each item (and confirmReceived after each, with ``confirm_each``); the items that made it."""
    fetched_items = []
    for item_id in items:
        item = b"<gw:itemId>" + item_id + b"</gw:itemId>"
        fetched = caller.call("getDocument", envelope(agency, secret, "getDocument", item))
        if fetched is None:
            continue
        if len(fetched) < ATTACHMENT_BYTES:
            result.fail(f"getDocument: short response ({len(fetched)} bytes)")
            continue
        if confirm_each and caller.call("confirmReceived", envelope(agency, secret, "confirmReceived", item)) is None:
            continue
        fetched_items.append(item_id)
    return fetched_items


def _fetch_batch(
    caller: SoapCaller, agency: str, secret: str, shape: tuple[str, str], items: list[bytes], result: ClientResult
) -> list[bytes]:
    """One getDocuments for the batch; the items it answered (all of them, or it is an error)."""
    answer = caller.call("getDocuments", envelope(agency, secret, "getDocuments", _batch_body(shape, items)))
    if answer is None:
        return []
    answered, at = [], 0
    while (found := _FETCHED_HEAD.search(answer, at)) is not None:
        answered.append(found.group(1))
        at = found.end() + (int(found.group(2)) + 2) // 3 * 4
    if answered != items or len(answer) < len(items) * ATTACHMENT_BYTES:
        result.fail(f"getDocuments: {len(answered)} of {len(items)} items in {len(answer)} bytes")
        return []
    return answered


def _batch_body(shape: tuple[str, str], items: list[bytes]) -> bytes:
    """The parameters of a batch operation: ``shape`` is (parameter, item element), as the WSDL names them."""
    parameter, element = (name.encode() for name in shape)
    ids = b"".join(b"<gw:%s>%s</gw:%s>" % (element, i, element) for i in items)
    return b"<gw:%s>%s</gw:%s>" % (parameter, ids, parameter)


def _poll_client(
    port: int, path: str, label: str, bodies: list[tuple[str, bytes]], *, start_at: float, stop_at: float, out: Queue
) -> None:
    """Call ``bodies`` (operation, envelope) round-robin on ``path`` until ``stop_at``; an answer naming an
    item (for empty polls) or lacking the constant (for the bare operation) is an error."""
    result = ClientResult()
    caller = SoapCaller(port, result, path)
    cpu = _cpu_seconds()
    time.sleep(max(0.0, start_at - time.monotonic()))
    n = 0
    while time.monotonic() < stop_at:
        operation, body = bodies[n % len(bodies)]
        data = caller.call(operation, body, label)
        if data is not None:
            if label == "emptyPoll" and _ITEM_ID.search(data):
                result.fail("emptyPoll: an idle agency had items waiting")
            elif label == "bare" and b">ok<" not in bytes(data):
                result.fail(f"bare: unexpected answer {bytes(data[:200])!r}")
        n += 1
    result.cpu_seconds = _cpu_seconds() - cpu
    out.put(result)


def bare_envelope(agency: str, secret: str) -> bytes:
    """The bare operation's request, with the same AuthHeader as a poll so both bodies cost the same to parse."""
    head, _ = envelope_parts(agency, secret, "bare")
    head = head.replace(b"<gw:bare>", f'<b:bare xmlns:b="{BARE_NS}">'.encode())
    return head + b"</b:bare></soapenv:Body></soapenv:Envelope>"


@dataclass(frozen=True)
class Batches:
    """How the served WSDL takes several items in one call: ``(parameter, item element)`` per operation, or None."""

    confirm: tuple[str, str] | None
    fetch: tuple[str, str] | None


def batch_shape(wsdl: bytes, operation: str) -> tuple[str, str] | None:
    """``(parameter, item element)`` of batch ``operation`` in a served WSDL, or None when it has no such operation."""
    xs = "{http://www.w3.org/2001/XMLSchema}"
    root = etree.fromstring(wsdl)
    wrapper = root.find(f".//{xs}complexType[@name='{operation}']")
    if wrapper is None:
        return None
    parameter = wrapper.find(f".//{xs}element")
    if parameter is None:
        return None
    type_name = (parameter.get("type") or "").rpartition(":")[2]
    array = root.find(f".//{xs}complexType[@name='{type_name}']")
    item = array.find(f".//{xs}element") if array is not None else None
    return parameter.get("name", "itemIds"), item.get("name", "string") if item is not None else "string"


# -- the ceiling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CeilingStore:
    """Where the ceiling stores documents: a directory for files and one table on the bench's backend."""

    directory: Path
    sqlite_path: Path | None = None
    pg_dsn: str | None = None

    def prepare(self) -> None:
        """Create the table; SQLite gets the gateway's settings (WAL, synchronous=FULL)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ddl = (
            "CREATE TABLE IF NOT EXISTS bench_ceiling (id {pk}, document_id TEXT UNIQUE NOT NULL, "
            "path TEXT NOT NULL, size BIGINT NOT NULL, stored_at TEXT NOT NULL)"
        )
        if self.sqlite_path is not None:
            with contextlib.closing(sqlite3.connect(self.sqlite_path)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(ddl.format(pk="INTEGER PRIMARY KEY"))
                db.commit()
        else:
            with psycopg.connect(self.pg_dsn or "", autocommit=True) as db:
                db.execute(ddl.format(pk="BIGSERIAL PRIMARY KEY"))

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection whose ``insert`` commits one row per call, durably, as the gateway's do."""
        if self.sqlite_path is not None:
            db = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            try:
                yield db
            finally:
                db.close()
        else:
            with psycopg.connect(self.pg_dsn or "") as db:
                yield db

    def insert(self, db: Any, document_id: str, path: Path, size: int) -> None:
        now = datetime.now(UTC).isoformat()
        if self.sqlite_path is not None:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO bench_ceiling (document_id, path, size, stored_at) VALUES (?, ?, ?, ?)",
                (document_id, str(path), size, now),
            )
            db.execute("COMMIT")
        else:
            db.execute(
                "INSERT INTO bench_ceiling (document_id, path, size, stored_at) VALUES (%s, %s, %s, %s)",
                (document_id, str(path), size, now),
            )
            db.commit()


def _write_fsync(path: Path, data: bytes) -> None:
    """Write and fsync a new file, then let the kernel reuse its pages, as the gateway's blob store does.

    Without the last step the ceiling's cost depends on the VM's memory history, not on its work: pages
    the kernel takes from memory the balloon returned to the host cost several times more to fill
    (``drop_cached_pages`` in gateway/store/blobs.py; docs/performance.md, "The ceiling measured cold").
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        drop_cached_pages(fd)
    finally:
        os.close(fd)


def _ceiling_client(
    template: Template, store: CeilingStore | None, first: int, *, start_at: float, stop_at: float, out: Queue
) -> None:
    """Parse + validate (+ store) documents until ``stop_at``; per-step times go in the latencies."""
    result = ClientResult()
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    cpu = _cpu_seconds()
    n = first
    with store.connect() if store else contextlib.nullcontext() as db:
        time.sleep(max(0.0, start_at - time.monotonic()))
        while time.monotonic() < stop_at:
            data = template.document(n)
            t0 = time.perf_counter()
            root = etree.fromstring(data, parser)
            t1 = time.perf_counter()
            if not schema.validate(root):
                result.fail(f"ceiling: document {n} invalid: {schema.error_log}")
            t2 = time.perf_counter()
            result.record("parse", t1 - t0)
            result.record("validate", t2 - t1)
            if store is not None:
                path = store.directory / f"{n}.edxml"
                _write_fsync(path, data)
                t3 = time.perf_counter()
                store.insert(db, template.number(n).decode(), path, len(data))
                t4 = time.perf_counter()
                result.record("write+fsync", t3 - t2)
                result.record("insert+commit", t4 - t3)
            result.record("document", time.perf_counter() - t0)
            n += 1
    result.cpu_seconds = _cpu_seconds() - cpu
    out.put(result)


# -- measuring a phase ----------------------------------------------------------------------------


def _busy_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / tick, total / tick


def _tree_cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class PhaseResult:
    """One measured phase: merged client results, wall time, and who used the CPU meanwhile."""

    wall: float
    clients: ClientResult
    server_cpu: float
    machine_busy: float
    machine_total: float

    @property
    def foreign_cpu_share(self) -> float:
        """Share of the machine's CPU used by processes this bench did not start."""
        ours = self.server_cpu + self.clients.cpu_seconds
        return max(0.0, self.machine_busy - ours) / self.machine_total if self.machine_total else 0.0

    @property
    def client_cpu_share(self) -> float:
        return self.clients.cpu_seconds / self.machine_total if self.machine_total else 0.0

    def count(self, operation: str) -> int:
        return len(self.clients.latencies.get(operation, []))

    def rate(self, operation: str) -> float:
        return self.count(operation) / self.wall if self.wall else 0.0

    def __add__(self, other: PhaseResult) -> PhaseResult:
        """Two slices of one phase as one: counts, times and CPU add up."""
        clients = ClientResult(
            {
                operation: self.clients.latencies.get(operation, []) + other.clients.latencies.get(operation, [])
                for operation in {*self.clients.latencies, *other.clients.latencies}
            },
            self.clients.errors + other.clients.errors,
            (self.clients.error_samples + other.clients.error_samples)[:3],
            self.clients.cpu_seconds + other.clients.cpu_seconds,
        )
        return PhaseResult(
            self.wall + other.wall,
            clients,
            self.server_cpu + other.server_cpu,
            self.machine_busy + other.machine_busy,
            self.machine_total + other.machine_total,
        )


Target = tuple[Any, tuple[Any, ...], dict[str, Any]]
"""A client function, its positional arguments, and keyword arguments (``stop_at`` for timed phases)."""


def run_phase(targets: list[Target], server: list[psutil.Process], lead: float) -> PhaseResult:
    """Start one process per target; all begin at the same instant ``lead`` seconds from now.

    Each target is called with ``start_at`` (monotonic clock, shared by all processes) and ``out``
    (the queue its :class:`ClientResult` goes to) as keyword arguments.
    """
    context = multiprocessing.get_context("fork")
    out: Queue = context.Queue()
    start_at = time.monotonic() + lead
    processes = [
        context.Process(target=target, args=args, kwargs={**kwargs, "start_at": start_at, "out": out})
        for target, args, kwargs in targets
    ]
    for process in processes:
        process.start()
    time.sleep(max(0.0, start_at - time.monotonic()))
    server_cpu, (busy, total), started = _tree_cpu(server), _busy_jiffies(), time.monotonic()
    merged = ClientResult()
    for _ in processes:
        part = _next_result(out, processes)
        for operation, values in part.latencies.items():
            merged.latencies.setdefault(operation, []).extend(values)
        merged.errors += part.errors
        merged.error_samples.extend(part.error_samples[: max(0, 3 - len(merged.error_samples))])
        merged.cpu_seconds += part.cpu_seconds
    wall = time.monotonic() - started
    busy_after, total_after = _busy_jiffies()
    for process in processes:
        process.join()
    return PhaseResult(wall, merged, _tree_cpu(server) - server_cpu, busy_after - busy, total_after - total)


def _next_result(out: Queue, processes: list[multiprocessing.process.BaseProcess]) -> ClientResult:
    """The next client's result; RuntimeError if a client died without one (rather than waiting forever)."""
    while True:
        try:
            return out.get(timeout=1)
        except queue.Empty:
            failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"a client process died (exit codes {failed}); its traceback is above") from None


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported latency was really observed)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# -- the gateway under gunicorn -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """``tools/bench_app.py --workers N`` (the gateway as ``serve`` runs it, plus ``/bare``) in its own
    process group, stopped by that group's id."""

    def __init__(self, data_dir: Path, database_url: str | None, workers: int) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = _free_port()
        env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
        env.pop("GATEWAY_DATABASE_URL", None)
        if database_url:
            env["GATEWAY_DATABASE_URL"] = database_url
        self.log_path = data_dir.parent / f"gateway-{data_dir.name}.log"
        self.log = self.log_path.open("wb")
        command = [sys.executable, str(BENCH_APP), "--workers", str(workers), "--port", str(self.port)]
        command += ["--agencies", SENDER, *RECIPIENTS, "--idle-agencies", str(IDLE_AGENCIES)]
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.arbiter = psutil.Process(self.process.pid)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until /health answers 200 and all workers are forked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.process.returncode}); see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response,
            ):
                if response.status == 200 and len(self.worker_processes()) == self.workers:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the gateway did not become healthy in {timeout:.0f} s; see {self.log_path}")

    def worker_processes(self) -> list[psutil.Process]:
        return self.arbiter.children()

    def secrets(self) -> dict[str, str]:
        return {entry["agency"]: entry["secret"] for entry in self._entries()}

    def idle_agencies(self) -> list[str]:
        return [entry["agency"] for entry in self._entries() if entry["idle"]]

    def _entries(self) -> list[dict[str, Any]]:
        return json.loads((self.data_dir / "bench-credentials.json").read_text(encoding="utf-8"))

    def batches(self, per_item_fetch: bool) -> Batches:
        """How to call confirmReceivedItems and getDocuments, where the served WSDL has them."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/soap?wsdl", timeout=30) as response:
            wsdl = response.read()
        fetch = None if per_item_fetch else batch_shape(wsdl, "getDocuments")
        return Batches(confirm=batch_shape(wsdl, "confirmReceivedItems"), fetch=fetch)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# -- one backend ----------------------------------------------------------------------------------


@dataclass
class Options:
    workers: int
    clients: int
    duration: float
    warmup: float
    pg_url: str
    profile_dir: Path | None = None
    py_spy: str | None = None
    per_item_fetch: bool = False


@contextlib.contextmanager
def profiled(options: Options, label: str, pids: list[int], seconds: float) -> Iterator[None]:
    """Sample the workers with py-spy (``--profile``) while a phase runs; idle time included.

    Idle samples are kept on purpose: fsync and database waits are part of a send's cost, and a
    worker waiting in its event loop is easy to tell apart by its stack.
    """
    if options.profile_dir is None or options.py_spy is None:
        yield
        return
    options.profile_dir.mkdir(parents=True, exist_ok=True)
    samplers = [
        subprocess.Popen(
            [
                options.py_spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--idle",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(options.profile_dir / f"{label}-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    try:
        yield
    finally:
        for sampler in samplers:
            sampler.wait()


def _operation_figures(phase: PhaseResult, operations: tuple[str, ...]) -> dict[str, dict[str, float]]:
    figures = {}
    for operation in operations:
        values = phase.clients.latencies.get(operation, [])
        figures[operation] = {
            "count": len(values),
            "per_second": len(values) / phase.wall if phase.wall else 0.0,
            "p50_ms": percentile(values, 0.50) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
            "mean_ms": sum(values) / len(values) * 1000 if values else float("nan"),
        }
    return figures


def receive_mode(batches: Batches) -> str:
    """How the receiving clients called the gateway, for the report."""
    fetch = "getDocuments per batch" if batches.fetch else "getDocument per item"
    confirm = "confirmReceivedItems per batch" if batches.confirm else "confirmReceived per item"
    return f"{fetch}, {confirm}"


def _phase_meta(phase: PhaseResult) -> dict[str, Any]:
    return {
        "wall_s": phase.wall,
        "errors": phase.clients.errors,
        "error_samples": phase.clients.error_samples,
        "client_cpu_share": phase.client_cpu_share,
        "server_cpu_share": phase.server_cpu / phase.machine_total if phase.machine_total else 0.0,
        "foreign_cpu_share": phase.foreign_cpu_share,
    }


class SpaceGuard:
    """Refuse to start a backend-round that could fill the scratch directory's filesystem.

    Before a round it compares the free space with what a round takes: the largest drop in free space
    a round of this run has caused so far, or, before the first, an estimate from ``--duration`` and
    the document's size. It raises ``SystemExit`` with what to do; the figures measured so far are
    still printed (and are in ``--json``).
    """

    def __init__(self, scratch: Path, duration: float, document_bytes: int) -> None:
        self.scratch = scratch
        self.estimate = int(DOCUMENTS_PER_PHASE_SECOND * duration * document_bytes)
        self.largest = 0
        """The most free space a round of this run has taken (0 before the first)."""
        self._free_before = 0

    @property
    def need(self) -> int:
        return self.largest or self.estimate

    def free(self) -> int:
        return shutil.disk_usage(self.scratch).free

    def before_round(self, label: str) -> None:
        self._free_before = free = self.free()
        if free - self.need < SPACE_LEFT:
            raise SystemExit(
                f"not starting {label}: {free / 1e9:.1f} GB free on the filesystem of {self.scratch}, and a "
                f"round takes about {self.need / 1e9:.1f} GB of it; at least {SPACE_LEFT / 1024**3:.0f} GiB "
                "must be left (a full disk stops a PostgreSQL server on it). Free some space, or run shorter "
                "phases (--duration)."
            )

    def after_round(self) -> None:
        """Called while the round's files still exist: their space is what the next round needs."""
        self.largest = max(self.largest, self._free_before - self.free())


def bench_backend(backend: str, templates: list[Template], options: Options, scratch: Path) -> dict[str, Any]:
    """Run warm-up, fetch+ack, sends, the ceiling and polls for one backend; return its figures."""
    pg_admin = pg_name = None
    database_url = None
    data_dir = scratch / backend
    if backend == "postgresql":
        pg_admin = options.pg_url
        pg_name = f"edxml_bench_{os.getpid()}"
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        pg_dsn = psycopg.conninfo.make_conninfo(pg_admin, dbname=pg_name)
        database_url = (
            make_url(pg_admin)
            .set(drivername="postgresql+psycopg", database=pg_name)
            .render_as_string(hide_password=False)
        )
        store = CeilingStore(scratch / f"ceiling-{backend}", pg_dsn=pg_dsn)
    else:
        store = CeilingStore(scratch / f"ceiling-{backend}", sqlite_path=scratch / "ceiling.sqlite3")
    gateway = GatewayProcess(data_dir, database_url, options.workers)
    try:
        gateway.wait_ready()
        secrets = gateway.secrets()
        workers = gateway.worker_processes()
        worker_pids = [w.pid for w in workers]
        server = [gateway.arbiter, *workers]
        port = gateway.port
        batches = gateway.batches(options.per_item_fetch)
        idle = gateway.idle_agencies()

        def sends(duration: float, base: int) -> PhaseResult:
            targets = [
                (_send_client, (port, secrets[SENDER], templates[i % 2], base + i * 10_000_000))
                for i in range(options.clients)
            ]
            return _run_timed(targets, server, duration)

        def receive(duration: float | None = None) -> PhaseResult:
            """Fetch and acknowledge for ``duration`` seconds, or until the queues are empty (None)."""
            targets = [
                (_fetch_client, (port, RECIPIENTS[i % 2], secrets[RECIPIENTS[i % 2]], batches))
                for i in range(options.clients)
            ]
            if duration is not None:
                return _run_timed(targets, server, duration)
            return run_phase([(target, args, {}) for target, args in targets], server, lead=0.3)

        def ceiling(duration: float, base: int, into: CeilingStore | None = store) -> PhaseResult:
            """The ceiling's processes; with ``into=None`` they parse and validate without storing."""
            targets = [
                (_ceiling_client, (templates[i % 2], into, base + i * 10_000_000)) for i in range(options.workers)
            ]
            return _run_timed(targets, server, duration)

        warm_sends = sends(options.warmup, 0)
        warm_drain = receive()
        warm_rss = {pid: _status_kib(pid, "VmRSS") for pid in worker_pids}
        # Every compared pair is measured in ABBA order (A, B, B, A; every slice half the duration):
        # this VM's speed drifts by 10-20% within a minute, and a linear drift then weighs the same on
        # both sides of a ratio. Receiving brackets sending, which brackets the ceiling; receiving is
        # timed like sending, on queues filled beforehand (not measured) with more than a slice takes,
        # and what is left is drained after the last slice (not measured either).
        store.prepare()
        half = options.duration / 2
        # The queues must outlast a receive slice: filled for as long as, at the warm-up's receive/send
        # speed ratio with a margin of three (one recipient may get fewer documents), a slice takes.
        speedup = warm_drain.rate("fetch+ack") / max(warm_sends.rate("sendDocument"), 1e-9)
        queued = sends(max(options.duration, 3 * speedup * half), 500_000_000)
        with profiled(options, f"{backend}-fetch-1", worker_pids, half):
            fetch_phase = receive(half)
        with profiled(options, f"{backend}-send-1", worker_pids, half):
            send_phase = sends(half, 1_000_000_000)
        ceiling_phase = ceiling(half, 3_000_000_000)
        ceiling_phase += ceiling(half, 3_500_000_000)
        with profiled(options, f"{backend}-send-2", worker_pids, half):
            send_phase += sends(half, 1_500_000_000)
        with profiled(options, f"{backend}-fetch-2", worker_pids, half):
            fetch_phase += receive(half)
        rest = receive()
        polls = [("getPendingDocuments", envelope(code, secrets[code], "getPendingDocuments", b"")) for code in idle]
        bare = [("bare", bare_envelope(code, secrets[code])) for code in idle]

        def calls(path: str, label: str, bodies: list[tuple[str, bytes]]) -> PhaseResult:
            clients = [(_poll_client, (port, path, label, bodies[i:] + bodies[:i])) for i in range(options.clients)]
            return _run_timed(clients, server, half)

        poll_phase = calls("/soap", "emptyPoll", polls)
        bare_phase = calls("/bare", "bare", bare)
        bare_phase += calls("/bare", "bare", bare)
        poll_phase += calls("/soap", "emptyPoll", polls)
        peak = {pid: _status_kib(pid, "VmHWM") for pid in worker_pids}
        restarted = sorted(set(worker_pids) ^ {w.pid for w in gateway.worker_processes()})
        parse_phase = ceiling(options.duration, 2_000_000_000, into=None)
    finally:
        gateway.stop()
        if pg_admin and pg_name:
            with psycopg.connect(pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    sent = send_phase.count("sendDocument")
    fetched = fetch_phase.count("fetch+ack")
    # Every document sent after the warm-up is received in a timed slice or in the unmeasured rest.
    sent_after_warmup = queued.count("sendDocument") + sent
    received_after_warmup = fetched + rest.count("fetch+ack")
    lost = abs(sent_after_warmup - received_after_warmup)
    lost += abs(warm_sends.count("sendDocument") - warm_drain.count("fetch+ack"))
    sends_per_s = send_phase.rate("sendDocument")
    ceiling_per_s = ceiling_phase.rate("document")
    polls_per_s, bare_per_s = poll_phase.rate("emptyPoll"), bare_phase.rate("bare")
    receive_per_s = fetch_phase.rate("fetch+ack")
    phases = [warm_sends, warm_drain, queued, rest, send_phase, fetch_phase]
    phases += [ceiling_phase, poll_phase, bare_phase, parse_phase]
    errors = sum(phase.clients.errors for phase in phases) + lost + len(restarted)
    samples = [sample for phase in phases for sample in phase.clients.error_samples]
    if lost:
        samples.append(f"{sent_after_warmup} documents sent but {received_after_warmup} fetched and acknowledged")
    if restarted:
        samples.append(f"gunicorn workers changed during the run: {restarted}")
    return {
        "backend": backend,
        "errors": errors,
        "error_samples": samples,
        "sends_per_s": sends_per_s,
        "fetch_ack_per_s": receive_per_s,
        "receive_mode": receive_mode(batches),
        "receive_ratio": receive_per_s / sends_per_s if sends_per_s else float("nan"),
        "polls_per_s": polls_per_s,
        "bare_per_s": bare_per_s,
        "poll_ratio": polls_per_s / bare_per_s if bare_per_s else float("nan"),
        "poll": {**_phase_meta(poll_phase), "operations": _operation_figures(poll_phase, ("emptyPoll",))},
        "bare": {**_phase_meta(bare_phase), "operations": _operation_figures(bare_phase, ("bare",))},
        "send": {**_phase_meta(send_phase), "operations": _operation_figures(send_phase, ("sendDocument",))},
        "fetch": {
            **_phase_meta(fetch_phase),
            "operations": _operation_figures(fetch_phase, RECEIVE_OPERATIONS),
        },
        "worker_rss_mib": {
            str(pid): {"after_warmup": warm_rss[pid] / 1024, "peak": peak[pid] / 1024} for pid in worker_pids
        },
        "parse_validate_per_s": parse_phase.rate("document"),
        "parse_validate": {**_phase_meta(parse_phase), "steps": _operation_figures(parse_phase, ("parse", "validate"))},
        "ceiling_per_s": ceiling_per_s,
        "ceiling": {
            **_phase_meta(ceiling_phase),
            "steps": _operation_figures(ceiling_phase, CEILING_STEPS),
        },
        "ratio": sends_per_s / ceiling_per_s if ceiling_per_s else float("nan"),
        "cpu_ms_per_document": {
            "gateway_send": _per_item_ms(send_phase.server_cpu, sent),
            "gateway_fetch_ack": _per_item_ms(fetch_phase.server_cpu, fetched),
            "gateway_empty_poll": _per_item_ms(poll_phase.server_cpu, poll_phase.count("emptyPoll")),
            "gateway_bare": _per_item_ms(bare_phase.server_cpu, bare_phase.count("bare")),
            "parse_validate": _per_item_ms(parse_phase.clients.cpu_seconds, parse_phase.count("document")),
            "ceiling": _per_item_ms(ceiling_phase.clients.cpu_seconds, ceiling_phase.count("document")),
        },
    }


def _per_item_ms(cpu_seconds: float, items: int) -> float:
    """CPU per item: unlike rates, it barely moves when other processes compete for the cores."""
    return cpu_seconds / items * 1000 if items else float("nan")


def _run_timed(
    targets: list[tuple[Any, tuple[Any, ...]]], server: list[psutil.Process], duration: float
) -> PhaseResult:
    """A phase whose clients stop ``duration`` seconds after the common start."""
    lead = 0.5
    stop_at = time.monotonic() + lead + duration
    return run_phase([(target, args, {"stop_at": stop_at}) for target, args in targets], server, lead)


# -- report ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were taken on: they mean nothing without it."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = _status_kib_meminfo("MemTotal")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "gateway"], capture_output=True, text=True)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "lxml": ".".join(map(str, etree.LXML_VERSION[:3])),
        "libxml2": ".".join(map(str, etree.LIBXML_VERSION)),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit.stdout.strip() + (" (gateway/ modified)" if dirty.stdout.strip() else ""),
        "loadavg_at_start": os.getloadavg()[0],
    }


def _status_kib_meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def print_report(report: dict[str, Any]) -> None:
    """A table per backend, then the verdict on each target."""
    m, d = report["machine"], report["document"]
    print(
        f"\nMachine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"lxml {m['lxml']} (libxml2 {m['libxml2']}), {m['date']}, commit {m['commit']}"
    )
    print(
        f"Document: {d['edxml_bytes']:,} bytes edXML ({d['header_bytes']:,} bytes of metadata/text + "
        f"{d['attachment_bytes']:,}-byte attachment), SOAP request {d['request_bytes']:,} bytes"
    )
    s = report["settings"]
    print(
        f"Settings: {s['workers']} gunicorn gevent workers, {s['clients']} client processes, "
        f"{s['duration']} s per phase, ceiling with {s['workers']} processes"
    )
    rounds = s.get("rounds", 1)
    for result in report["backends"]:
        print(f"\n== {result['backend']}" + (f" (round {result['round']} of {rounds})" if rounds > 1 else "") + " ==")
        print(f"{'operation':<22}{'count':>8}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        operations = {
            **result["send"]["operations"],
            **result["fetch"]["operations"],
            **result["poll"]["operations"],
            **result["bare"]["operations"],
        }
        for name, op in operations.items():
            if not op["count"]:
                continue
            print(f"{name:<22}{op['count']:>8}{op['per_second']:>10.1f}{op['p50_ms']:>10.1f}{op['p99_ms']:>10.1f}")
        print(f"{'sends/s':<40}{result['sends_per_s']:>10.1f}")
        print(f"{'fetch+ack/s':<40}{result['fetch_ack_per_s']:>10.1f}  ({result['receive_mode']})")
        print(
            f"{'ratio receive / send':<40}{result['receive_ratio']:>10.2f}  "
            f"({'meets' if result['receive_ratio'] >= 1.0 else 'MISSES'} the 1.0 target: fetch+ack/s / sends/s)"
        )
        print(f"{'empty polls/s':<40}{result['polls_per_s']:>10.1f}")
        print(f"{'bare calls/s':<40}{result['bare_per_s']:>10.1f}")
        print(
            f"{'ratio polls / bare':<40}{result['poll_ratio']:>10.2f}  "
            f"({'meets' if result['poll_ratio'] >= 0.6 else 'MISSES'} the 0.6 target)"
        )
        for pid, rss in result["worker_rss_mib"].items():
            label = f"peak RSS worker {pid} (MiB)"
            print(f"{label:<40}{rss['peak']:>10.1f}  (after warm-up {rss['after_warmup']:.1f})")
        print(f"{'parse+validate only, docs/s':<40}{result['parse_validate_per_s']:>10.1f}")
        print(f"{'ceiling parse+validate+store, docs/s':<40}{result['ceiling_per_s']:>10.1f}")
        steps = result["ceiling"]["steps"]
        print(
            "  ceiling per document, mean ms: "
            + ", ".join(f"{name} {step['mean_ms']:.2f}" for name, step in steps.items())
        )
        print(
            f"{'ratio sends/s / ceiling':<40}{result['ratio']:>10.2f}  "
            f"({'meets' if result['ratio'] >= SEND_TARGET else 'MISSES'} the {SEND_TARGET} target in this round)"
        )
        cpu = result["cpu_ms_per_document"]
        print(
            "  CPU ms per document (gunicorn processes / ceiling processes): "
            + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
        )
        for phase in ("send", "fetch", "poll", "bare", "parse_validate", "ceiling"):
            meta = result[phase]
            print(
                f"  {phase}: {meta['wall_s']:.1f} s, CPU share clients {meta['client_cpu_share']:.0%}, "
                f"gateway {meta['server_cpu_share']:.0%}, other processes (PostgreSQL included) "
                f"{meta['foreign_cpu_share']:.0%}"
            )
        print(f"{'errors':<40}{result['errors']:>10}")
        for sample in result["error_samples"]:
            print(f"  error: {sample}")
    if rounds > 1:
        print_round_summary(report["backends"])


def print_round_summary(results: list[dict[str, Any]]) -> None:
    """Each backend's ratio per round, then its minimum and median: the target must hold in every round."""
    print("\n== ratio sends/s / ceiling by round ==")
    for backend in dict.fromkeys(result["backend"] for result in results):
        ratios = [result["ratio"] for result in results if result["backend"] == backend]
        median = statistics.median(ratios)
        verdict = f"{'meets' if median >= SEND_TARGET else 'MISSES'} the {SEND_TARGET} target (median of rounds)"
        print(
            f"{backend:<12}{' '.join(f'{ratio:.2f}' for ratio in ratios)}   min {min(ratios):.2f}, "
            f"median {median:.2f}: {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="gunicorn workers and ceiling processes (default: two per core, as the gateway is deployed: "
        "a send waits on fsync and database round trips, so one worker per core leaves cores idle)",
    )
    parser.add_argument("--clients", type=int, default=6, help="client processes per phase")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per timed phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up sends (not reported)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("GATEWAY_BENCH_PG_URL", DEFAULT_PG_URL),
        help="libpq URL of a database to connect to; the bench creates and drops its own",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole run (every backend, every phase) this many times and summarise each backend's "
        "ratios: single runs on a shared VM vary by 10-20%%",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s phases, 2 clients")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, help="sample the workers with py-spy during sends and fetches")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy executable for --profile")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, data)")
    parser.add_argument(
        "--per-item-fetch",
        action="store_true",
        help="receive with getDocument per item even where the WSDL has getDocuments (the three-call story)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.clients = 2.0, 0.5, 2
    if args.profile and not args.py_spy:
        parser.error("--profile needs py-spy (pip install py-spy, or pass --py-spy PATH)")
    options = Options(
        args.workers,
        args.clients,
        args.duration,
        args.warmup,
        args.pg_url,
        args.profile,
        args.py_spy,
        args.per_item_fetch,
    )
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}")

    attachment = os.urandom(ATTACHMENT_BYTES)
    templates = [Template.build(recipient, attachment) for recipient in RECIPIENTS]
    sample = templates[0]
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join([".venv/bin/python", "tools/bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "workers": options.workers,
            "clients": options.clients,
            "duration": options.duration,
            "rounds": args.rounds,
        },
        "document": {
            "edxml_bytes": len(sample.edxml),
            "header_bytes": sample.header_bytes,
            "attachment_bytes": ATTACHMENT_BYTES,
            "request_bytes": len(envelope(SENDER, "x" * 43, "sendDocument", sample.document_b64(0))) + 27,
        },
        "backends": [],
    }
    scratch = Path(tempfile.mkdtemp(prefix="edxml-bench-"))
    space = SpaceGuard(scratch, options.duration, len(sample.edxml))
    try:
        for round_number in range(1, args.rounds + 1):
            round_scratch = scratch / f"round-{round_number}"
            round_scratch.mkdir()
            for backend in backends:
                progress = f"{backend} (round {round_number} of {args.rounds})"
                space.before_round(progress)
                print(f"benchmarking {progress} ...", file=sys.stderr, flush=True)
                result = bench_backend(backend, templates, options, round_scratch)
                space.after_round()
                report["backends"].append({"round": round_number, **result})
                if args.json:
                    _write_json(args.json, report)
            if not args.keep:
                # A round at the default duration leaves gigabytes of documents: the next must not add to them.
                shutil.rmtree(round_scratch, ignore_errors=True)
    except BaseException:
        if report["backends"]:
            print("\nthe run stopped early; what was measured before it:", file=sys.stderr)
            print_report(report)
        raise
    finally:
        if args.keep:
            print(f"scratch kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print_report(report)
    return 1 if any(result["errors"] for result in report["backends"]) else 0


def _write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the figures so far, after every backend's round: a run cut short keeps what it measured."""
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
