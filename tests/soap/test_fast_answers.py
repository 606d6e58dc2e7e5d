"""getPendingDocuments answered without Spyne (gateway/soap/binding/fast.py) is byte for byte Spyne's answer.

Each request is answered twice by the same endpoint: once with the fast answers on, once with them off
(``binding.fast = {}``, every call through Spyne). Status, headers, body and what the endpoint records
must be the same, for answers, for faults, and for the bodies the fast path leaves to Spyne.
"""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from support.live import NGHE_AN, NS, VPCP, secret_of
from support.staging import stage

from gateway.app import Router
from gateway.edxml import DocumentMessage, Organization, document_bytes
from gateway.errors import NotFound, Unavailable
from gateway.exchange.results import PendingItem
from gateway.soap import wsgi_keys
from gateway.soap.binding import fast
from gateway.soap.binding import types as t

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


def both_ways(app: Router, body: bytes, *, fast_path: bool) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The answer with the fast answers on and with them off; ``fast_path``: whether one must answer."""
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
        fast_answer = post(app, body)
        app.soap.binding.fast = {}
        spyne_answer = post(app, body)
    finally:
        app.soap.binding.fast = handlers
    assert any(answered) == fast_path
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
