"""getPendingDocuments, sendDocument and getDocument answered without Spyne (gateway/soap/binding/fast.py) are
byte for byte Spyne's answers.

Each request is answered twice: once with the fast answers on, once with them off (``binding.fast = {}``,
every call through Spyne). Status, headers, body and what the endpoint records must be the same, for
answers, for faults, and for the bodies the fast path leaves to Spyne.

A poll, a resend and a refused send change nothing the second answer depends on, so both go to the same
endpoint. A send that stores a document would make the second one a duplicate: each way then sends to
its own fresh store (same directory, same credentials), and the gateway's document id, a random uuid,
is pinned to one value in both stores (:func:`pinned_document_id`) so that the bytes compared are the
bytes written, not normalised. A first fetch records 01: each way fetches from its own store, the two
prepared alike with the ids the exchange and the queue make counted from the same start and a still
clock (:func:`twins`); a fetch that changes nothing, or a later fetch, goes to the same endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from support.certificates import Authority
from support.clock import Clock
from support.letters import official_letter
from support.live import CAO_BANG, HAU_GIANG, NGHE_AN, NS, VPCP, secret_of, seed_directory
from support.staging import stage

from gateway.app import Router, create_app
from gateway.config import Settings
from gateway.edxml import DocumentMessage, Organization, document_bytes
from gateway.edxml.signature import sign_document
from gateway.errors import NotFound, Unavailable
from gateway.exchange import service as exchange_service
from gateway.exchange.results import FetchedItem, PendingItem, SendReceipt
from gateway.soap import wsgi_keys
from gateway.soap.binding import fast
from gateway.soap.binding import types as t
from gateway.store import queue
from gateway.store.database import Database

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_REFERENCE = re.compile(rb"reference [0-9a-f]{12}")


def post(app: Router, body: bytes, action: str = '"getPendingDocuments"') -> tuple[str, list[Any], bytes, dict]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/soap",
        "CONTENT_TYPE": "text/xml; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_SOAPACTION": action,
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}
    result = app.soap(environ, lambda status, headers, exc_info=None: seen.update(status=status, headers=headers))
    data = b"".join(result)
    recorded = {key: environ.get(key) for key in (wsgi_keys.OPERATION, wsgi_keys.FAULT_CODE, wsgi_keys.AGENCY)}
    return seen["status"], seen["headers"], _REFERENCE.sub(b"reference R", data), recorded


def post_fast(app: Router, body: bytes, action: str) -> tuple[tuple[Any, ...], bool]:
    """The answer with the fast answers on, and whether one of them answered."""
    handlers = app.soap.binding.fast
    answered: list[bool] = []

    def spy(name: str) -> fast.FastHandler:
        def handler(simple: Any, context: Any) -> Any:
            answer = handlers[name](simple, context)
            answered.append(answer is not None)
            return answer

        return handler

    app.soap.binding.fast = {name: spy(name) for name in handlers}
    try:
        return post(app, body, action), any(answered)
    finally:
        app.soap.binding.fast = handlers


def both_ways(
    app: Router,
    body: bytes,
    *,
    fast_path: bool,
    action: str = '"getPendingDocuments"',
    spyne_app: Router | None = None,
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The answer with the fast answers on (by ``app``) and with them off (by ``spyne_app``, else ``app``
    again); ``fast_path``: whether one must answer."""
    fast_answer, answered = post_fast(app, body, action)
    spyne = spyne_app or app
    handlers = spyne.soap.binding.fast
    spyne.soap.binding.fast = {}
    try:
        spyne_answer = post(spyne, body, action)
    finally:
        spyne.soap.binding.fast = handlers
    assert answered == fast_path
    return fast_answer, spyne_answer


def envelope(inner: str, code: str = NGHE_AN, attributes: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header>'
        f"<g:AuthHeader><g:agencyCode>{code}</g:agencyCode><g:secret>{secret_of(code)}</g:secret></g:AuthHeader>"
        f"</s:Header><s:Body><g:getPendingDocuments{attributes}>{inner}</g:getPendingDocuments></s:Body></s:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    "inner",
    ["", "<g:maxItems>10</g:maxItems>", "\n  <g:maxItems> 7\n</g:maxItems>\n", "<g:maxItems>999999999</g:maxItems>"],
)
def test_an_empty_poll_is_answered_as_spyne_answers_it(app: Router, inner: str) -> None:
    fast_answer, spyne_answer = both_ways(app, envelope(inner), fast_path=True)
    assert fast_answer == spyne_answer
    assert fast_answer[0].startswith("200") and fast_answer[2] == fast.EMPTY_PENDING


@pytest.mark.parametrize(
    ("inner", "attributes"),
    [
        ("<g:maxItems>+5</g:maxItems>", ""),
        ("<g:maxItems>-1</g:maxItems>", ""),
        ("<g:maxItems>9999999999</g:maxItems>", ""),
        ("<g:maxItems></g:maxItems>", ""),
        ("<g:maxItems>ten</g:maxItems>", ""),
        ("<g:maxItems>1</g:maxItems><g:maxItems>2</g:maxItems>", ""),
        ("<g:other>1</g:other>", ""),
        ('<maxItems xmlns="urn:elsewhere">3</maxItems>', ""),
        ("<g:maxItems><![CDATA[3]]></g:maxItems>", ""),
        ("<!-- hi --><g:maxItems>3</g:maxItems>", ""),
        ("text<g:maxItems>3</g:maxItems>", ""),
        ("<g:maxItems><g:x/>3</g:maxItems>", ""),
        ('<g:maxItems xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>', ""),
        ("", ' extra="1"'),
    ],
)
def test_bodies_the_fast_path_leaves_to_spyne_get_spynes_answer(app: Router, inner: str, attributes: str) -> None:
    fast_answer, spyne_answer = both_ways(app, envelope(inner, attributes=attributes), fast_path=False)
    assert fast_answer == spyne_answer


def test_an_operation_in_another_namespace_is_spynes_to_refuse(app: Router) -> None:
    body = envelope("").replace(b"<g:getPendingDocuments>", b'<x:getPendingDocuments xmlns:x="urn:other">')
    body = body.replace(b"</g:getPendingDocuments>", b"</x:getPendingDocuments>")
    fast_answer, spyne_answer = both_ways(app, body, fast_path=False)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")


def letter(number: int, subject: str) -> bytes:
    return document_bytes(
        DocumentMessage(
            sender=Organization(VPCP, "Văn phòng Chính phủ"),
            recipients=(Organization(NGHE_AN, "UBND tỉnh Nghệ An"),),
            code_number=str(number),
            code_notation="TTg-KSTT",
            promulgation_date=date(2026, 11, 19),
            type_code=1,
            type_name="Công văn",
            subject=subject,
            document_id=f"doc-{number}",
            due_date=date(2026, 12, 1) if number % 2 else None,
        )
    )


def test_a_poll_with_items_is_written_as_spyne_writes_it(app: Router, monkeypatch: pytest.MonkeyPatch) -> None:
    exchange = app.gateway.exchange
    sender = exchange.authenticate(VPCP, secret_of(VPCP))
    recipient = exchange.authenticate(NGHE_AN, secret_of(NGHE_AN))
    for number, subject in enumerate(["Thử nghiệm & <kiểm tra> \"quote\" 'x'", "Công văn số 2", "  spaces  "]):
        exchange.send_document(sender, stage(exchange, letter(number, subject)))
    first = exchange.pending(recipient, 1)[0]
    exchange.fetch(recipient, first.item_id)
    exchange.update_status(recipient, first.document_id, "03", "Đã phân công", None)
    items = exchange.pending(recipient, 10) + exchange.pending(sender, 10)
    assert any(i.status_code for i in items) and any(i.due_date for i in items) and not all(i.due_date for i in items)
    monkeypatch.setattr(exchange, "pending", lambda caller, limit=None, fresh_caller=False: items)
    fast_answer, spyne_answer = both_ways(app, envelope("<g:maxItems>10</g:maxItems>"), fast_path=True)
    assert fast_answer == spyne_answer
    assert fast_answer[2].count(b"<tns:PendingItem>") == len(items)


@pytest.mark.parametrize("error", [NotFound("Không có"), Unavailable("busy"), RuntimeError("boom")])
def test_faults_are_written_as_spyne_writes_them(
    app: Router, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def fail(*_args: object, **_kwargs: object) -> list[PendingItem]:
        raise error

    monkeypatch.setattr(app.gateway.exchange, "pending", fail)
    fast_answer, spyne_answer = both_ways(app, envelope("<g:maxItems>10</g:maxItems>"), fast_path=True)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")
    assert fast_answer[3][wsgi_keys.FAULT_CODE] is not None


def test_the_fast_fields_are_the_wire_types() -> None:
    assert [wire for wire, _ in fast.PENDING_FIELDS] == list(t.PendingItem._type_info.keys())
    assert {attribute for _, attribute in fast.PENDING_FIELDS} == set(PendingItem.__dataclass_fields__)


def test_a_poll_with_a_ws_security_header_or_extra_header_blocks_is_answered_alike(app: Router) -> None:
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    security = (
        f'<w:Security xmlns:w="{wsse}" s:mustUnderstand="1"><w:UsernameToken><w:Username>{NGHE_AN}</w:Username>'
        f"<w:Password>{secret_of(NGHE_AN)}</w:Password></w:UsernameToken></w:Security>"
    )
    body = envelope("<g:maxItems>5</g:maxItems>")
    header_start, header_end = body.index(b"<s:Header>") + len(b"<s:Header>"), body.index(b"</s:Header>")
    for header in (security, f'<x:Trace xmlns:x="urn:trace">1</x:Trace>{body[header_start:header_end].decode()}'):
        variant = body[:header_start] + header.encode() + body[header_end:]
        fast_answer, spyne_answer = both_ways(app, variant, fast_path=True)
        assert fast_answer == spyne_answer and fast_answer[0].startswith("200")


# -- sendDocument ------------------------------------------------------------------------------------

SEND = '"sendDocument"'
PINNED_ID = "0d6c2f4e-3b7a-4c1e-9f2d-8a5b6c7d8e9f"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def send_envelope(document: bytes, code: str = VPCP, *, attributes: str = "", inner: str | None = None) -> bytes:
    """A send as a generated stub writes it; ``inner`` replaces the Body's ``<g:document>`` element ({b64}: the
    document's base64)."""
    b64 = base64.b64encode(document).decode()
    inner = "<g:document>{b64}</g:document>" if inner is None else inner
    return envelope("", code).replace(
        b"<g:getPendingDocuments></g:getPendingDocuments>",
        f"<g:sendDocument{attributes}>{inner.format(b64=b64)}</g:sendDocument>".encode(),
    )


def stored(app: Router, document: bytes) -> bool:
    """Whether ``document`` is in ``app``'s blob store."""
    return app.gateway.blobs.path(hashlib.sha256(document).hexdigest()).is_file()


@pytest.fixture
def pinned_document_id(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every document stored gets the same gateway id (a uuid4 otherwise), so two stores answer alike."""
    monkeypatch.setattr(exchange_service, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID(PINNED_ID)))
    return PINNED_ID


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Router]]:
    """Fresh gateways, each on its own SQLite store seeded with the test directory, as the ``app`` fixture is."""
    made: list[Router] = []

    def build(name: str, **settings: Any) -> Router:
        url = f"sqlite:///{tmp_path / name / 'gateway.sqlite3'}"
        db = Database(url)
        db.upgrade()
        seed_directory(db)
        db.dispose()
        made.append(create_app(Settings(data_dir=tmp_path / name / "var", database_url=url, **settings)))
        return made[-1]

    try:
        yield build
    finally:
        for router in made:
            router.gateway.db.dispose()


@pytest.fixture
def two_stores(make_app: Callable[..., Router], pinned_document_id: str) -> tuple[Router, Router]:
    """A gateway for the fast answer and another, on its own store, for Spyne's."""
    return make_app("fast"), make_app("spyne")


@pytest.mark.parametrize("recipients", [[NGHE_AN], [NGHE_AN, CAO_BANG, HAU_GIANG]])
def test_a_send_is_answered_as_spyne_answers_it(two_stores: tuple[Router, Router], recipients: list[str]) -> None:
    fast_app, spyne_app = two_stores
    document = official_letter(VPCP, recipients)
    fast_answer, spyne_answer = both_ways(
        fast_app, send_envelope(document), fast_path=True, action=SEND, spyne_app=spyne_app
    )
    assert fast_answer == spyne_answer and fast_answer[0].startswith("200")
    assert f"<tns:documentId>{PINNED_ID}</tns:documentId>".encode() in fast_answer[2]
    assert b"<tns:duplicate>false</tns:duplicate>" in fast_answer[2] and b"signer" not in fast_answer[2]
    assert fast_answer[2].count(b"<tns:string>") == len(recipients)
    assert stored(fast_app, document) and stored(spyne_app, document)


def test_a_resend_is_answered_as_spyne_answers_it(app: Router) -> None:
    exchange = app.gateway.exchange
    document = official_letter(VPCP, [NGHE_AN, CAO_BANG])
    first = exchange.send_document(exchange.authenticate(VPCP, secret_of(VPCP)), stage(exchange, document))
    fast_answer, spyne_answer = both_ways(app, send_envelope(document), fast_path=True, action=SEND)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("200")
    assert b"<tns:duplicate>true</tns:duplicate>" in fast_answer[2]
    assert f"<tns:documentId>{first.document_id}</tns:documentId>".encode() in fast_answer[2]


def test_a_signed_send_is_answered_as_spyne_answers_it(
    make_app: Callable[..., Router], pinned_document_id: str, tmp_path: Path
) -> None:
    authority = Authority("Root CA of the test exchange")
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(authority.pem())
    fast_app, spyne_app = make_app("fast", trusted_certs=bundle), make_app("spyne", trusted_certs=bundle)
    key, cert = authority.issue("Nguyễn Văn A - Văn thư <VPCP> & Co")
    document = sign_document(official_letter(VPCP, [NGHE_AN]), key, cert)
    fast_answer, spyne_answer = both_ways(
        fast_app, send_envelope(document), fast_path=True, action=SEND, spyne_app=spyne_app
    )
    assert fast_answer == spyne_answer and fast_answer[0].startswith("200")
    assert b"<tns:signer>" in fast_answer[2] and b"&gt; &amp; Co</tns:signer>" in fast_answer[2]


def _conflicting(app: Router) -> bytes:
    """Other bytes under the DocumentId of a document the sender already sent."""
    exchange = app.gateway.exchange
    document_id = f"{VPCP},2026/11/20,1/VPCP-TTĐT"
    first = official_letter(VPCP, [NGHE_AN], number="1", document_id=document_id)
    exchange.send_document(exchange.authenticate(VPCP, secret_of(VPCP)), stage(exchange, first))
    return send_envelope(official_letter(VPCP, [NGHE_AN], number="2", document_id=document_id))


@pytest.mark.parametrize(
    ("make_body", "code"),
    [
        (_conflicting, "Client.DocumentIdConflict"),
        (lambda _app: send_envelope(official_letter(VPCP, [NGHE_AN]), NGHE_AN), "Client.SenderMismatch"),
        (lambda _app: send_envelope(b"<not-edxml>plain text</not-edxml>"), "Client.SchemaInvalid"),
        (lambda _app: send_envelope(b"plain text, not XML"), "Client.MalformedEdxml"),
        (lambda _app: send_envelope(b""), "Client.MalformedEdxml"),
    ],
    ids=["conflict", "sender-mismatch", "not-edxml", "not-xml", "empty"],
)
def test_refused_sends_are_answered_as_spyne_answers_them(
    app: Router, make_body: Callable[[Router], bytes], code: str
) -> None:
    fast_answer, spyne_answer = both_ways(app, make_body(app), fast_path=True, action=SEND)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")
    assert fast_answer[3][wsgi_keys.FAULT_CODE] == code
    assert not any(app.gateway.blobs.tmp_dir.iterdir())


@pytest.mark.parametrize("error", [Unavailable("busy"), RuntimeError("boom")])
def test_send_failures_are_written_as_spyne_writes_them(
    app: Router, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def fail(*_args: object, **_kwargs: object) -> SendReceipt:
        raise error

    monkeypatch.setattr(app.gateway.exchange, "send_document", fail)
    body = send_envelope(official_letter(VPCP, [NGHE_AN]))
    fast_answer, spyne_answer = both_ways(app, body, fast_path=True, action=SEND)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")
    assert fast_answer[3][wsgi_keys.FAULT_CODE] is not None


@pytest.mark.parametrize(
    "receipt",
    [
        SendReceipt("id-1", "edxml & <id> \"1\" 'x'", (NGHE_AN,), duplicate=False, signer="  Nguyễn Văn A, CN=<x>  "),
        SendReceipt("id-2", "Văn bản số 2", (NGHE_AN, CAO_BANG), duplicate=True, signer=""),
        SendReceipt("id-3", "3", (), duplicate=False),
    ],
    ids=["escaped", "empty-signer", "no-recipients"],
)
def test_every_receipt_is_written_as_spyne_writes_it(
    app: Router, monkeypatch: pytest.MonkeyPatch, receipt: SendReceipt
) -> None:
    monkeypatch.setattr(app.gateway.exchange, "send_document", lambda caller, staged: receipt)
    body = send_envelope(official_letter(VPCP, [NGHE_AN]))
    fast_answer, spyne_answer = both_ways(app, body, fast_path=True, action=SEND)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("200")


@pytest.mark.parametrize(
    ("inner", "attributes"),
    [
        ("<g:document>{b64}</g:document><g:other>1</g:other>", ""),
        ("<g:other>1</g:other><g:document>{b64}</g:document>", ""),
        ("<g:document>{b64}</g:document><g:document>{b64}</g:document>", ""),
        ("<g:document>{b64}</g:document>", ' extra="1"'),
        ('<g:document g:extra="1">{b64}</g:document>', ""),
        (f'<g:document xmlns:xsi="{XSI}" xsi:nil="false">{{b64}}</g:document>', ""),
        ("<!-- a comment --><g:document>{b64}</g:document>", ""),
        ("<g:document>{b64}<!-- a comment --></g:document>", ""),
        ("<g:document><![CDATA[{b64}]]></g:document>", ""),
        ("<?pi here?><g:document>{b64}</g:document>", ""),
        ("text<g:document>{b64}</g:document>", ""),
        ('<document xmlns="urn:elsewhere">{b64}</document>', ""),
        ("", ""),
    ],
)
def test_sends_the_fast_path_leaves_to_spyne_get_spynes_answer(
    two_stores: tuple[Router, Router], inner: str, attributes: str
) -> None:
    fast_app, spyne_app = two_stores
    body = send_envelope(official_letter(VPCP, [NGHE_AN]), attributes=attributes, inner=inner)
    fast_answer, spyne_answer = both_ways(fast_app, body, fast_path=False, action=SEND, spyne_app=spyne_app)
    assert fast_answer == spyne_answer


def test_a_send_in_another_namespace_is_spynes_to_refuse(app: Router) -> None:
    body = send_envelope(official_letter(VPCP, [NGHE_AN]))
    body = body.replace(b"<g:sendDocument>", b'<x:sendDocument xmlns:x="urn:other">')
    body = body.replace(b"</g:sendDocument>", b"</x:sendDocument>")
    fast_answer, spyne_answer = both_ways(app, body, fast_path=False, action=SEND)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")


def test_a_fast_send_stores_the_blob_and_leaves_no_staging_file(app: Router) -> None:
    document = official_letter(VPCP, [NGHE_AN])
    answer, answered = post_fast(app, send_envelope(document), SEND)
    assert answered and answer[0].startswith("200") and b"<tns:duplicate>false</tns:duplicate>" in answer[2]
    blobs = app.gateway.blobs
    assert blobs.path(hashlib.sha256(document).hexdigest()).read_bytes() == document
    assert not any(blobs.tmp_dir.iterdir())


def test_the_send_fields_are_the_wire_types() -> None:
    assert [wire for wire, _ in fast.SEND_FIELDS] == list(t.SendReceipt._type_info.keys())
    assert {attribute for _, attribute in fast.SEND_FIELDS} == set(SendReceipt.__dataclass_fields__)


# -- getDocument -------------------------------------------------------------------------------------

FETCH = '"getDocument"'


def fetch_envelope(item_id: str, code: str = NGHE_AN, *, attributes: str = "", inner: str | None = None) -> bytes:
    """A fetch as a generated stub writes it; ``inner`` replaces the Body's ``<g:itemId>`` element ({id}: ``item_id``,
    written as it is, so escape it)."""
    inner = "<g:itemId>{id}</g:itemId>" if inner is None else inner
    return envelope("", code).replace(
        b"<g:getPendingDocuments></g:getPendingDocuments>",
        f"<g:getDocument{attributes}>{inner.format(id=item_id)}</g:getDocument>".encode(),
    )


def item_of(app: Router, code: str, kind: str) -> str:
    """The id of ``code``'s pending item of ``kind``."""
    exchange = app.gateway.exchange
    return next(i.item_id for i in exchange.pending(exchange.authenticate(code, secret_of(code))) if i.kind == kind)


def fetch(app: Router, code: str, item_id: str) -> None:
    exchange = app.gateway.exchange
    exchange.fetch(exchange.authenticate(code, secret_of(code)), item_id)


def deliver(app: Router, document: bytes) -> str:
    """Send ``document`` from VPCP (to Nghệ An); the id of Nghệ An's item."""
    exchange = app.gateway.exchange
    exchange.send_document(exchange.authenticate(VPCP, secret_of(VPCP)), stage(exchange, document))
    return item_of(app, NGHE_AN, "document")


def status_item(app: Router, document: bytes) -> str:
    """Send ``document``, fetch it as Nghệ An (which records 01); the id of the 01's status message for VPCP."""
    fetch(app, NGHE_AN, deliver(app, document))
    return item_of(app, VPCP, "status")


@pytest.fixture
def twins(make_app: Callable[..., Router], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Router, Router]]:
    """Two gateways, each on its own store, prepared alike by ``prepare`` with the same ids and clock.

    A first fetch records 01 and so changes what a second one sees: each way fetches from its own store.
    The ids the exchange and the queue make (uuid4s otherwise) are counted from the same start for each
    store and the clock stands still, so the two stores hold the same items under the same ids, and the
    status message 01 is the same file (same sha256) in both.
    """
    counter: list[Iterator[int]] = []
    ids = SimpleNamespace(uuid4=lambda: uuid.UUID(int=next(counter[-1])))
    monkeypatch.setattr(exchange_service, "uuid", ids)
    monkeypatch.setattr(queue, "uuid", ids)

    def build(prepare: Callable[[Router], str]) -> tuple[tuple[Router, Router], str]:
        apps, item_ids = [], []
        for name in ("fast", "spyne"):
            counter.append(itertools.count(1))
            apps.append(make_app(name))
            apps[-1].gateway.exchange.clock = Clock()
            item_ids.append(prepare(apps[-1]))
        assert item_ids[0] == item_ids[1]
        return (apps[0], apps[1]), item_ids[0]

    return build


@pytest.mark.parametrize("fetched_before", [0, 1], ids=["first-fetch", "second-fetch"])
@pytest.mark.parametrize("kind", ["document", "status"])
def test_a_fetch_is_answered_as_spyne_answers_it(
    twins: Callable[..., tuple[tuple[Router, Router], str]], kind: str, fetched_before: int
) -> None:
    document = official_letter(VPCP, [NGHE_AN])
    code = NGHE_AN if kind == "document" else VPCP

    def prepare(app: Router) -> str:
        item_id = deliver(app, document) if kind == "document" else status_item(app, document)
        for _ in range(fetched_before):
            fetch(app, code, item_id)
        return item_id

    (fast_app, spyne_app), item_id = twins(prepare)
    fast_answer, spyne_answer = both_ways(
        fast_app, fetch_envelope(item_id, code), fast_path=True, action=FETCH, spyne_app=spyne_app
    )
    assert fast_answer == spyne_answer and fast_answer[0].startswith("200")
    body = fast_answer[2]
    assert f"<tns:itemId>{item_id}</tns:itemId><tns:kind>{kind}</tns:kind>".encode() in body
    edxml = base64.b64decode(body.split(b"<tns:edxml>")[1].split(b"</tns:edxml>")[0])
    assert hashlib.sha256(edxml).hexdigest().encode() in body
    assert (edxml == document) == (kind == "document")
    assert dict(fast_answer[1])["Content-Length"] == str(len(body))


def test_a_first_fast_fetch_records_the_arrival(app: Router) -> None:
    item_id = deliver(app, official_letter(VPCP, [NGHE_AN]))
    answer, answered = post_fast(app, fetch_envelope(item_id), FETCH)
    assert answered and answer[0].startswith("200")
    assert item_of(app, VPCP, "status")


@pytest.fixture
def fetched_item(app: Router) -> str:
    """A document Nghệ An fetched once already: every later fetch is answered alike."""
    item_id = deliver(app, official_letter(VPCP, [NGHE_AN]))
    fetch(app, NGHE_AN, item_id)
    return item_id


def test_a_fetch_of_a_text_id_with_markup_is_refused_as_spyne_refuses_it(app: Router) -> None:
    fast_answer, spyne_answer = both_ways(
        app, fetch_envelope("Văn bản &amp; &lt;số 1&gt; \"x\" 'y'\u00a0z"), fast_path=True, action=FETCH
    )
    assert fast_answer == spyne_answer and fast_answer[3][wsgi_keys.FAULT_CODE] == NotFound.code
    assert "Văn bản &amp; &lt;số 1&gt;".encode() in fast_answer[2]


@pytest.mark.parametrize("case", ["unknown", "foreign", "withdrawn"])
def test_refused_fetches_are_answered_as_spyne_answers_them(app: Router, fetched_item: str, case: str) -> None:
    exchange = app.gateway.exchange
    if case == "unknown":
        body = fetch_envelope("no-such-item")
    elif case == "foreign":
        body = fetch_envelope(fetched_item, CAO_BANG)
    else:
        document = official_letter(VPCP, [NGHE_AN], number="2")
        receipt = exchange.send_document(exchange.authenticate(VPCP, secret_of(VPCP)), stage(exchange, document))
        item_id = next(i.item_id for i in exchange.pending(exchange.authenticate(NGHE_AN, secret_of(NGHE_AN))))
        exchange.update_status(exchange.authenticate(VPCP, secret_of(VPCP)), receipt.document_id, "13", "Nhầm", None)
        body = fetch_envelope(item_id)
    fast_answer, spyne_answer = both_ways(app, body, fast_path=True, action=FETCH)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")
    assert fast_answer[3][wsgi_keys.FAULT_CODE] == NotFound.code
    assert (b"withdrawn" in fast_answer[2]) == (case == "withdrawn")


@pytest.mark.parametrize("error", [Unavailable("busy"), RuntimeError("boom")])
def test_fetch_failures_are_written_as_spyne_writes_them(
    app: Router, monkeypatch: pytest.MonkeyPatch, fetched_item: str, error: Exception
) -> None:
    def fail(*_args: object, **_kwargs: object) -> FetchedItem:
        raise error

    monkeypatch.setattr(app.gateway.exchange, "fetch", fail)
    fast_answer, spyne_answer = both_ways(app, fetch_envelope(fetched_item), fast_path=True, action=FETCH)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")
    assert fast_answer[3][wsgi_keys.FAULT_CODE] is not None


@pytest.mark.parametrize(
    ("inner", "attributes"),
    [
        ("<g:itemId>{id}</g:itemId><g:other>1</g:other>", ""),
        ("<g:itemId>{id}</g:itemId><g:itemId>{id}</g:itemId>", ""),
        ("<g:itemId>{id}</g:itemId>", ' extra="1"'),
        ("<!-- a comment --><g:itemId>{id}</g:itemId>", ""),
        ("<g:itemId>{id}<!-- a comment --></g:itemId>", ""),
        ("<g:itemId><![CDATA[{id}]]></g:itemId>", ""),
        ("<g:itemId></g:itemId>", ""),
        ("<g:itemId/>", ""),
        ("<g:itemId> {id} </g:itemId>", ""),
        ("<g:itemId>\n  {id}\n</g:itemId>", ""),
        ("<g:itemId>{id}&#9;</g:itemId>", ""),
        ("<g:itemId>a&#9;b</g:itemId>", ""),
        ('<itemId xmlns="urn:elsewhere">{id}</itemId>', ""),
        ("", ""),
    ],
)
def test_fetches_the_fast_path_leaves_to_spyne_get_spynes_answer(
    app: Router, fetched_item: str, inner: str, attributes: str
) -> None:
    body = fetch_envelope(fetched_item, attributes=attributes, inner=inner)
    fast_answer, spyne_answer = both_ways(app, body, fast_path=False, action=FETCH)
    assert fast_answer == spyne_answer


def test_a_fetch_in_another_namespace_is_spynes_to_refuse(app: Router, fetched_item: str) -> None:
    body = fetch_envelope(fetched_item)
    body = body.replace(b"<g:getDocument>", b'<x:getDocument xmlns:x="urn:other">')
    body = body.replace(b"</g:getDocument>", b"</x:getDocument>")
    fast_answer, spyne_answer = both_ways(app, body, fast_path=False, action=FETCH)
    assert fast_answer == spyne_answer and fast_answer[0].startswith("500")


def test_the_fetched_fields_are_the_wire_types() -> None:
    assert [wire for wire, _ in fast.FETCHED_FIELDS] + ["edxml"] == list(t.FetchedDocument._type_info.keys())
    assert {attribute for _, attribute in fast.FETCHED_FIELDS} | {"path"} == set(FetchedItem.__dataclass_fields__)
