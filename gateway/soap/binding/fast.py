"""getPendingDocuments, sendDocument and getDocument answered without Spyne, byte for byte as Spyne answers them.

Most calls a gateway serves are polls that find nothing (issue 13: every agency's software polls).
Through Spyne such a poll costs a second parse of the envelope the streaming reader already read
(lxml), schema validation, Spyne's object tree for the answer and its serialisation: measured
in-process, about as much CPU again as authentication and the poll's query together. A send pays
the same for its slim envelope and its receipt, about a tenth of its CPU, and a fetch about a
tenth of its CPU too (receiving must keep up with sending). The reader hands over the Body's
parameters when the Body is simple (:class:`~gateway.soap.streaming.SimpleBody`; a send's Body is
simple when it holds only the document, already decoded to the staging file); a poll or a fetch
whose parameters are plainly valid, or such a send, is answered here, and anything else (an
unusual but perhaps valid ``maxItems`` or ``itemId``, attributes, comments, another namespace, a
send without a document) goes through Spyne, so every refusal keeps the words and codes Spyne
gives it. Answers and faults are the bytes Spyne writes (``tests/soap/test_fast_answers.py``
compares them); a fetch's answer carries the same placeholder Spyne's does, which the endpoint
replaces by the file's base64 as it streams it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from lxml import etree

from gateway.errors import GatewayError
from gateway.exchange.results import Caller, FetchedItem, PendingItem, SendReceipt
from gateway.soap.binding.answer import Answer
from gateway.soap.context import RelayContext, RequestContext
from gateway.soap.faults import SOAP_PREFIX, fault_envelope, internal_error
from gateway.soap.namespaces import NAMESPACE
from gateway.soap.streaming import SOAP11_ENV, SimpleBody

HEADERS = (("Content-Type", "text/xml; charset=utf-8"),)
"""What Spyne answers with besides Content-Length, faults included."""
FAULT_STATUS = "500 Internal Server Error"
_NSMAP = {SOAP_PREFIX: SOAP11_ENV, "tns": NAMESPACE}
_MAX_ITEMS = f"{NAMESPACE} maxItems"
_PLAIN_INT = re.compile(r"[ \t\r\n]*([0-9]{1,9})[ \t\r\n]*")
"""An ``xs:int`` every schema processor takes as it is; other spellings are left to Spyne."""
_ITEM_ID = f"{NAMESPACE} itemId"
_PLAIN_TEXT = re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?")
"""An ``itemId`` (``xs:string``, which Spyne hands the operation unchanged) that needs no thought: not
empty, no control characters, no space at either end; any other is left to Spyne."""

PENDING_FIELDS: tuple[tuple[str, str], ...] = (
    ("itemId", "item_id"),
    ("kind", "kind"),
    ("documentId", "document_id"),
    ("edxmlDocumentId", "edxml_document_id"),
    ("senderCode", "sender_code"),
    ("senderName", "sender_name"),
    ("code", "code"),
    ("subject", "subject"),
    ("promulgationDate", "promulgation_date"),
    ("dueDate", "due_date"),
    ("priority", "priority"),
    ("businessType", "business_type"),
    ("statusCode", "status_code"),
    ("statusFrom", "status_from"),
    ("size", "size"),
    ("queuedAt", "queued_at"),
    ("leaseExpiresAt", "lease_expires_at"),
    ("attempts", "attempts"),
    ("signer", "signer"),
)
"""``PendingItem`` on the wire (types.PendingItem, in order) and the result attribute each one carries."""

SEND_FIELDS: tuple[tuple[str, str], ...] = (
    ("documentId", "document_id"),
    ("edxmlDocumentId", "edxml_document_id"),
    ("duplicate", "duplicate"),
    ("recipients", "recipients"),
    ("signer", "signer"),
)
"""``SendReceipt`` on the wire (types.SendReceipt, in order) and the result attribute each one carries."""
FETCHED_FIELDS: tuple[tuple[str, str], ...] = (
    ("itemId", "item_id"),
    ("kind", "kind"),
    ("documentId", "document_id"),
    ("sha256", "sha256"),
    ("size", "size"),
)
"""``FetchedDocument`` on the wire (types.FetchedDocument, in order) but its last field, ``edxml``, the file
itself: the endpoint streams it in place of the placeholder (:func:`fetched_response`)."""
ARRAY_ITEM = "string"
"""What Spyne names each item of an ``Array(Unicode)`` (after the item's XML Schema type, ``xs:string``)."""


FastHandler = Callable[[SimpleBody, RequestContext | RelayContext], Answer | None]
_Result = TypeVar("_Result")


def _q(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


def _response(operation: str) -> tuple[etree._Element, etree._Element]:
    """An envelope holding ``<operation>Response/<operation>Result`` as Spyne wraps a result; and that result."""
    envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap=_NSMAP)
    body = etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body")
    response = etree.SubElement(body, _q(f"{operation}Response"))
    return envelope, etree.SubElement(response, _q(f"{operation}Result"))


def _serialise(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _text(value: Any) -> str:
    """A value as Spyne writes it: booleans in lowercase, ISO dates and times (offset kept), decimal
    integers, text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _fields(parent: etree._Element, record: Any, fields: Sequence[tuple[str, str]]) -> None:
    """``record``'s fields as children of ``parent``: those that are None left out, a tuple or list as
    an array of strings."""
    for wire, attribute in fields:
        value = getattr(record, attribute)
        if value is None:
            continue
        element = etree.SubElement(parent, _q(wire))
        if isinstance(value, tuple | list):
            for item in value:
                etree.SubElement(element, _q(ARRAY_ITEM)).text = _text(item)
        else:
            element.text = _text(value)


def pending_response(items: list[PendingItem]) -> bytes:
    """The getPendingDocuments response for ``items``; optional fields that are None are left out."""
    envelope, result = _response("getPendingDocuments")
    for item in items:
        _fields(etree.SubElement(result, _q("PendingItem")), item, PENDING_FIELDS)
    return _serialise(envelope)


def send_response(receipt: SendReceipt) -> bytes:
    """The sendDocument response for ``receipt``; no ``signer`` when the document was not signed."""
    envelope, result = _response("sendDocument")
    _fields(result, receipt, SEND_FIELDS)
    return _serialise(envelope)


def fetched_response(item: FetchedItem, placeholder: bytes) -> bytes:
    """The getDocument response for ``item`` with ``placeholder`` as its ``edxml``, base64 as Spyne writes a
    ByteArray: the endpoint finds that base64 and streams the file's in its place."""
    envelope, result = _response("getDocument")
    _fields(result, item, FETCHED_FIELDS)
    etree.SubElement(result, _q("edxml")).text = base64.b64encode(placeholder).decode("ascii")
    return _serialise(envelope)


def fault_response(error: GatewayError) -> Answer:
    """The fault Spyne writes for ``error`` raised by an operation."""
    return Answer(FAULT_STATUS, list(HEADERS), fault_envelope(error, as_spyne=True), error.code, error.message)


EMPTY_PENDING = pending_response([])
"""The answer to almost every poll, serialised once."""


def _answer(operation: str, call: Callable[[], _Result], write: Callable[[_Result], bytes]) -> Answer:
    """``write(call())`` as a 200 answer; an error of ``call`` as the fault Spyne writes for it."""
    try:
        result = call()
    except GatewayError as error:
        return fault_response(error)
    except Exception:
        return fault_response(internal_error(_q(operation)))
    return Answer("200 OK", list(HEADERS), write(result), None)


def _authenticated(context: RequestContext | RelayContext) -> tuple[RequestContext, Caller] | None:
    """A gateway request and its authenticated caller; None for a relay call or without a caller (Spyne answers)."""
    if not isinstance(context, RequestContext) or context.caller is None:
        return None
    return context, context.caller


def get_pending_documents(simple: SimpleBody, context: RequestContext | RelayContext) -> Answer | None:
    """A poll whose only parameter is absent or a plain number, for an authenticated caller; else None."""
    found = _authenticated(context)
    if found is None:
        return None
    request, caller = found
    limit: int | None = None
    if simple.parameters:
        if len(simple.parameters) != 1 or simple.parameters[0][0] != _MAX_ITEMS:
            return None
        plain = _PLAIN_INT.fullmatch(simple.parameters[0][1])
        if plain is None:
            return None
        limit = int(plain.group(1))
    exchange = request.exchange
    return _answer(
        "getPendingDocuments",
        lambda: exchange.pending(caller, limit, fresh_caller=True),
        lambda items: pending_response(items) if items else EMPTY_PENDING,
    )


def send_document(simple: SimpleBody, context: RequestContext | RelayContext) -> Answer | None:
    """A send whose Body held only the document, staged by the reader, for an authenticated caller; else None.

    The staged file is the endpoint's: committed here by the exchange service when the document is
    stored, discarded by the endpoint after the answer otherwise (as when Spyne answers).
    """
    found = _authenticated(context)
    if found is None:
        return None
    request, caller = found
    exchange, staged = request.exchange, request.staged_document
    if simple.parameters or staged is None:
        return None
    return _answer("sendDocument", lambda: exchange.send_document(caller, staged), send_response)


def get_document(simple: SimpleBody, context: RequestContext | RelayContext) -> Answer | None:
    """A fetch whose only parameter is a plain ``itemId``, for an authenticated caller; else None.

    As Spyne's handler does, the file is registered with ``context.stream_file`` once the item is
    fetched, and the endpoint streams it into the answer.
    """
    found = _authenticated(context)
    if found is None or len(simple.parameters) != 1 or simple.parameters[0][0] != _ITEM_ID:
        return None
    item_id = simple.parameters[0][1]
    if _PLAIN_TEXT.fullmatch(item_id) is None:
        return None
    request, caller = found
    exchange = request.exchange

    def fetch() -> tuple[FetchedItem, bytes]:
        item = exchange.fetch(caller, item_id)
        return item, request.stream_file(item.path, item.size)

    return _answer("getDocument", fetch, lambda fetched: fetched_response(*fetched))


FAST_OPERATIONS: Mapping[str, FastHandler] = {
    f"{NAMESPACE} getPendingDocuments": get_pending_documents,
    f"{NAMESPACE} sendDocument": send_document,
    f"{NAMESPACE} getDocument": get_document,
}
"""Operations (expat names of their request elements) that have a fast answer."""
