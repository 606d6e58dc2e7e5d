"""Shared machinery for the reliability tests: gateways as real processes, raw SOAP, streaming bodies.

The reliability claims (bounded memory, refusal of hostile input, no double lease, nothing lost in a
crash) are about the gateway as operators run it, so most tests drive ``edxml-gateway serve`` as a
subprocess in its own process group (killable as a whole, like a machine losing power) and speak
raw HTTP to it: zeep would buffer a 50 MB document and could not send malformed or truncated
bodies at all. The helpers here keep the *client* side small too, so that the memory figures are
the gateway's.

This module has a distinctive name (not ``helpers``) because pytest puts every test directory on
``sys.path`` and other test directories already define modules called ``conftest``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.parsers import expat

import requests
from lxml import etree
from support.letters import letter_message
from support.live import serving_in_thread
from support.processes import Process, free_port, gateway_command, vm_kib

from gateway import directory
from gateway.app import create_app
from gateway.config import Settings
from gateway.edxml import AttachmentSource, document_bytes, write_document
from gateway.store.database import Database

REPO = Path(__file__).resolve().parents[2]
"""The console script of the environment running the tests (never a path inside the checkout)."""
NS = "urn:edxml-gateway:soap:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
VPCP, NGHE_AN, CAO_BANG = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
"""The three agencies ``serve --demo`` issues credentials for."""

DOCUMENTED_CODES = frozenset(
    {
        "Client.MalformedRequest",
        "Client.TooLarge",
        "Client.AuthenticationFailed",
        "Client.MalformedEdxml",
        "Client.SchemaInvalid",
        "Client.InvalidEdxml",
        "Client.SenderMismatch",
        "Client.UnknownRecipient",
        "Client.NotFound",
        "Client.Forbidden",
        "Client.IllegalTransition",
        "Client.InvalidStatus",
        "Client.SignatureRequired",
        "Server.Internal",
        "Server.Unavailable",
    }
)
"""The fault codes of the README's table: the only ones a client may ever see."""


# -- documents -----------------------------------------------------------------------------------


def letter(sender: str = VPCP, recipients: list[str] | None = None, attachment: bytes = b"%PDF-1.4 test\n") -> bytes:
    """A small, valid Công văn with a fresh DocumentId (so every call is a new document, not a resend)."""
    number = uuid.uuid4().hex[:10]
    message = letter_message(sender, recipients or [NGHE_AN], number)
    return document_bytes(message, [AttachmentSource("cong-van.pdf", "application/pdf", data=attachment)])


def write_big_document(path: Path, size: int, sender: str = VPCP, recipient: str = NGHE_AN) -> None:
    """Write an edXML file of about ``size`` bytes whose bulk is one random attachment, in bounded memory."""
    raw = path.with_suffix(".bin")
    remaining = size * 3 // 4
    with raw.open("wb") as out:
        while remaining:
            step = min(remaining, 1 << 20)
            out.write(os.urandom(step))
            remaining -= step
    message = letter_message(sender, [recipient], uuid.uuid4().hex[:10])
    with path.open("wb") as out:
        write_document(message, [AttachmentSource("lon.pdf", "application/pdf", path=raw)], out)
    raw.unlink()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- raw SOAP ------------------------------------------------------------------------------------


def envelope(operation: str, inner: str = "", code: str | None = VPCP, secret: str = "") -> bytes:
    """A SOAP 1.1 request for ``operation`` with the AuthHeader of ``code`` (none if ``code`` is None)."""
    auth = (
        f"<g:AuthHeader><g:agencyCode>{code}</g:agencyCode><g:secret>{secret}</g:secret></g:AuthHeader>" if code else ""
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}">'
        f"<s:Header>{auth}</s:Header><s:Body><g:{operation}>{inner}</g:{operation}></s:Body></s:Envelope>"
    ).encode()


def send_envelope(edxml: bytes, code: str, secret: str) -> bytes:
    """``sendDocument`` carrying ``edxml`` (any bytes) as base64."""
    return envelope("sendDocument", f"<g:document>{base64.b64encode(edxml).decode()}</g:document>", code, secret)


class StreamingSendBody:
    """A ``sendDocument`` body read from a file and base64-encoded on the fly.

    ``requests`` sends an iterable with a length as a plain Content-Length body (not chunked),
    so neither the client nor any proxy ever holds the encoded document.
    """

    BLOCK = 3 * 64 * 1024

    def __init__(self, path: Path, code: str, secret: str) -> None:
        self.path = path
        self.head, _, self.tail = envelope("sendDocument", "<g:document>\x00</g:document>", code, secret).partition(
            b"\x00"
        )
        self.length = len(self.head) + (path.stat().st_size + 2) // 3 * 4 + len(self.tail)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with self.path.open("rb") as source:
            while block := source.read(self.BLOCK):
                yield base64.b64encode(block)
        yield self.tail


@dataclass
class SoapReply:
    """An HTTP answer read as SOAP: the fault code (without prefix) when it is a fault."""

    status: int
    body: bytes
    root: Any
    fault_code: str | None = None
    fault_string: str | None = None

    def find(self, local: str) -> str | None:
        """Text of the first element with this local name in the gateway namespace."""
        node = self.root.find(f".//{{{NS}}}{local}")
        return None if node is None else node.text

    def findall(self, local: str) -> list[str]:
        return [node.text or "" for node in self.root.iterfind(f".//{{{NS}}}{local}")]


def parse_reply(status: int, body: bytes, method: str = "POST") -> SoapReply:
    """Parse a response as a SOAP 1.1 envelope; AssertionError if it is anything else.

    Faults come with HTTP 500 (SOAP 1.1), 413 for an oversize body, 405 for a method other than POST.
    """
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    except etree.XMLSyntaxError as exc:
        raise AssertionError(f"HTTP {status} answer is not XML: {body[:300]!r}") from exc
    assert root.tag == f"{{{SOAP_ENV}}}Envelope", f"HTTP {status} answer is not a SOAP envelope: {body[:300]!r}"
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    if fault is None:
        assert status == 200, f"HTTP {status} without a SOAP Fault: {body[:300]!r}"
        return SoapReply(status, body, root)
    code = (fault.findtext("faultcode") or "").rpartition(":")[2]
    detail = fault.findtext(f"detail/{{{NS}}}GatewayFault/{{{NS}}}code")
    assert detail == code, f"fault detail code {detail!r} differs from faultcode {code!r}"
    assert code in DOCUMENTED_CODES, f"undocumented fault code {code!r}"
    expected = 405 if method != "POST" else 413 if code == "Client.TooLarge" else 500
    assert status == expected, f"{code} came with HTTP {status}"
    return SoapReply(status, body, root, code, fault.findtext("faultstring"))


def post(url: str, body: Any, action: str = "", method: str = "POST", timeout: float = 120) -> SoapReply:
    """Send ``body`` (bytes or a streaming body) and parse the answer as SOAP."""
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    response = requests.request(method, url, data=body, headers=headers, timeout=timeout)
    return parse_reply(response.status_code, response.content, method)


def raw_http(host: str, port: int, head: bytes, body: bytes, shut_write: bool = True, timeout: float = 30) -> bytes:
    """Write bytes to the server exactly as given (for lying Content-Lengths), then read until it closes.

    Sending errors are tolerated: a server that answers early and closes is doing its job, and the
    answer is still in our receive buffer.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
            if shut_write:
                sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return bytes(received)


def split_http(response: bytes) -> tuple[int, bytes]:
    """Status code and body of a raw HTTP/1.x response (Content-Length framed, as the gateway sends)."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), f"not an HTTP response: {response[:200]!r}"
    return int(head.split(b" ", 2)[1]), body


class _Base64Hasher:
    """Decodes base64 text arriving in pieces and hashes the bytes, holding at most one piece."""

    def __init__(self) -> None:
        self.pending = b""
        self.digest = hashlib.sha256()
        self.size = 0

    def feed(self, text: str) -> None:
        data = self.pending + text.encode("ascii").translate(None, b" \t\r\n")
        usable = len(data) // 4 * 4
        self.pending = data[usable:]
        decoded = base64.b64decode(data[:usable], validate=True)
        self.digest.update(decoded)
        self.size += len(decoded)


@dataclass
class FetchResult:
    """What a streamed ``getDocument`` answer said and what its payload really hashed to."""

    status: int
    fault_code: str | None
    declared_sha256: str | None
    declared_size: int | None
    sha256: str
    size: int


def fetch_streaming(url: str, code: str, secret: str, item_id: str) -> FetchResult:
    """``getDocument`` read from the socket in 64 KiB pieces through expat; the payload is only hashed."""
    body = envelope("getDocument", f"<g:itemId>{item_id}</g:itemId>", code, secret)
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"getDocument"'}
    hasher = _Base64Hasher()
    fields: dict[str, str] = {}
    stack: list[str] = []
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = lambda name, _attrs: stack.append(name.rpartition(" ")[2])
    parser.EndElementHandler = lambda _name: stack.pop()

    def text(data: str) -> None:
        if stack and stack[-1] == "edxml":
            hasher.feed(data)
        elif stack:
            fields[stack[-1]] = fields.get(stack[-1], "") + data

    parser.CharacterDataHandler = text
    with requests.post(url, data=body, headers=headers, timeout=300, stream=True) as response:
        for chunk in response.iter_content(65536):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
        status = response.status_code
    assert not hasher.pending, "the base64 payload did not end on a quantum"
    return FetchResult(
        status,
        fields.get("faultcode", "").rpartition(":")[2] or None,
        fields.get("sha256"),
        int(fields["size"]) if "size" in fields else None,
        hasher.digest.hexdigest(),
        hasher.size,
    )


# -- agency calls over raw SOAP ------------------------------------------------------------------


@dataclass
class Agent:
    """One agency speaking raw SOAP to one gateway URL."""

    url: str
    code: str
    secret: str

    def call(self, operation: str, inner: str = "", timeout: float = 120) -> SoapReply:
        return post(self.url, envelope(operation, inner, self.code, self.secret), action=operation, timeout=timeout)

    def send(self, edxml: bytes) -> SoapReply:
        return post(self.url, send_envelope(edxml, self.code, self.secret), action="sendDocument")

    def pending(self, max_items: int = 100) -> list[dict[str, str]]:
        reply = self.call("getPendingDocuments", f"<g:maxItems>{max_items}</g:maxItems>")
        assert reply.fault_code is None, reply.fault_string
        items = []
        for node in reply.root.iterfind(f".//{{{NS}}}PendingItem"):
            items.append({etree.QName(child).localname: child.text or "" for child in node})
        return items

    def ack(self, item_id: str) -> SoapReply:
        return self.call("confirmReceived", f"<g:itemId>{item_id}</g:itemId>")


def assert_still_serves(url: str, secrets: dict[str, str]) -> None:
    """A normal send from VPCP followed by Nghệ An's pending list: the process survived whatever came before."""
    sender, recipient = Agent(url, VPCP, secrets[VPCP]), Agent(url, NGHE_AN, secrets[NGHE_AN])
    receipt = sender.send(letter(VPCP, [NGHE_AN]))
    assert receipt.fault_code is None, f"a normal send failed: {receipt.fault_code} {receipt.fault_string}"
    document_id = receipt.find("documentId")
    assert document_id
    seen: set[str] = set()
    for _ in range(50):
        items = recipient.pending(100)
        seen.update(item["documentId"] for item in items)
        if document_id in seen or not items:
            break
    assert document_id in seen, "the document just sent is not in the recipient's pending list"


# -- memory ---


MEMORY_BUDGET = 4.0
"""Peak RSS growth allowed per request in flight, as a multiple of the document size."""


@dataclass
class Figures:
    """Peak RSS growth of the worker in bytes, per phase, for a document of ``size`` bytes."""

    size: int
    baseline: int
    send_growth: int
    fetch_growth: int

    @property
    def send_ratio(self) -> float:
        return self.send_growth / self.size

    @property
    def fetch_ratio(self) -> float:
        return self.fetch_growth / self.size

    def report(self) -> str:
        return (
            f"document size        {self.size / 1e6:8.1f} MB\n"
            f"worker baseline RSS  {self.baseline / 1e6:8.1f} MB (after a warm-up send)\n"
            f"send  peak growth    {self.send_growth / 1e6:8.1f} MB  ratio {self.send_ratio:5.2f}x"
            f" (budget {MEMORY_BUDGET}x)\n"
            f"fetch peak growth    {self.fetch_growth / 1e6:8.1f} MB  ratio {self.fetch_ratio:5.2f}x"
            f" (budget {MEMORY_BUDGET}x)"
        )


def measure_send_and_fetch(gateway: GatewayProcess, document: Path) -> Figures:
    """Send ``document`` from VPCP to Nghệ An and fetch it back, measuring the single worker."""
    (worker,) = gateway.worker_pids()
    assert_still_serves(gateway.url, gateway.secrets)
    size = document.stat().st_size
    expected = sha256_file(document)

    reset_peak(worker)
    baseline = vm_kib(worker, "VmRSS") * 1024
    receipt = post(gateway.url, StreamingSendBody(document, VPCP, gateway.secrets[VPCP]), action="sendDocument")
    if receipt.fault_code:
        raise RuntimeError(f"send refused: {receipt.fault_code} {receipt.fault_string}")
    send_growth = vm_kib(worker, "VmHWM") * 1024 - baseline

    document_id = receipt.find("documentId")
    recipient = gateway.agent(NGHE_AN)
    item = next(i for i in recipient.pending(100) if i["documentId"] == document_id)
    reset_peak(worker)
    fetch_base = vm_kib(worker, "VmRSS") * 1024
    fetched = fetch_streaming(gateway.url, NGHE_AN, gateway.secrets[NGHE_AN], item["itemId"])
    fetch_growth = vm_kib(worker, "VmHWM") * 1024 - fetch_base
    if fetched.fault_code or fetched.sha256 != expected or fetched.declared_sha256 != expected:
        raise RuntimeError(f"fetch did not return the document: {fetched}")
    if fetched.size != size or fetched.declared_size != size:
        raise RuntimeError(f"fetch returned {fetched.size} bytes (declared {fetched.declared_size}), sent {size}")
    return Figures(size, baseline, send_growth, fetch_growth)


# -- gateways ------------------------------------------------------------------------------------


def reset_peak(pid: int) -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS, so the next peak is one phase's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class GatewayProcess:
    """``edxml-gateway serve --demo`` as a subprocess in its own process group, on a free port.

    ``workers=None`` runs the development server (one process); otherwise gunicorn with that many
    sync workers. Environment overrides (``GATEWAY_*``) go in ``env``.
    """

    data_dir: Path
    workers: int | None = 1
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: Process | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/soap"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-gateway.log"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    def start(self, timeout: float = 60) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [*gateway_command(), "--data-dir", str(self.data_dir)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        command += ["serve", "--demo", "--port", str(self.port)]
        if self.workers is not None:
            command += ["--workers", str(self.workers), "--production", "--timeout", "300"]
        env = {**os.environ, "GATEWAY_DATA_DIR": str(self.data_dir), **self.env}
        env.pop("GATEWAY_DATABASE_URL", None)
        self.process = Process("gateway", command, env, self.log_path, self.data_dir).start()
        deadline = time.monotonic() + timeout
        try:
            self.process.wait_healthy(self.port, timeout)
        except RuntimeError:
            self.stop()
            raise
        entries = json.loads((self.data_dir / "demo-credentials.json").read_text(encoding="utf-8"))
        self.secrets = {entry["agency"]: entry["secret"] for entry in entries}
        if self.workers is not None:
            self._wait_for_workers(deadline)
        return self

    def _wait_for_workers(self, deadline: float) -> None:
        while len(self.worker_pids()) < (self.workers or 1) and time.monotonic() < deadline:
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: gunicorn's workers, or the development server itself."""
        assert self.process is not None
        return [self.process.pid] if self.workers is None else self.process.children()

    def agent(self, code: str) -> Agent:
        return Agent(self.url, code, self.secrets[code])

    def kill(self) -> None:
        """SIGKILL the whole process group at once: master and workers die mid-whatever, like a power cut."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        """Graceful stop (SIGTERM to the group), escalating to SIGKILL."""
        if self.process is not None:
            self.process.stop()


GatewayFactory = Callable[..., GatewayProcess]
"""The ``gateway_process`` fixture: start a gateway with these options, stopped after the test."""


@contextlib.contextmanager
def running(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@dataclass
class ThreadedGateway:
    """A gateway served by a threaded wsgiref server inside the test process, with chosen Settings."""

    url: str
    settings: Settings
    secrets: dict[str, str]

    def agent(self, code: str) -> Agent:
        return Agent(self.url, code, self.secrets[code])


def prepare_store(settings: Settings) -> dict[str, str]:
    """Migrate, load the shipped directory and issue a secret to each demo agency (what ``--demo`` does)."""
    db = Database(settings.database_url)
    try:
        db.upgrade()
        now = datetime.now(UTC)
        with db.transaction() as session:
            directory.load_shipped_directory(session, now)
            return {code: directory.issue_credential(session, code, now) for code in (VPCP, NGHE_AN, CAO_BANG)}
    finally:
        db.dispose()


@contextlib.contextmanager
def threaded_gateway(settings: Settings) -> Iterator[ThreadedGateway]:
    secrets = prepare_store(settings)
    app = create_app(settings)
    try:
        with serving_in_thread(app) as base:
            yield ThreadedGateway(f"{base}/soap", settings, secrets)
    finally:
        app.gateway.db.dispose()
