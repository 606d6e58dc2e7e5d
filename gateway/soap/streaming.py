"""Large edXML payloads bypass Spyne, in both directions, in bounded memory; callers are known first.

Spyne reads a whole request into memory, parses it into one tree and copies a ``ByteArray``
about eleven times (docs/spyne.md §5). The gateway instead streams each request
through expat once: the base64 text of ``sendDocument/document`` is decoded chunk by chunk
into a staging file, and Spyne receives the same envelope with that element emptied. On the
way out, ``getDocument``'s answer (Spyne's or fast.py's) carries a short placeholder
(``getDocuments``' one per item, numbered), replaced here by the file's base64, read and encoded
in chunks while the response is written.

The same pass authenticates the caller: the SOAP header's AuthHeader or WS-Security UsernameToken
is collected as it streams by, and ``authenticate`` is called when ``<Body>`` starts, so a request
with wrong credentials is answered after its first few KiB, before any payload byte is decoded or
written, and without reading the rest (docs/xml-hardening.md). Until then the body is read in small
pieces, so the reader never waits for bytes it will not need.

The XML rules are those of :mod:`gateway.safexml`, shared with the edXML reader: UTF-8 only, no
DTD or entities, :data:`~gateway.safexml.ENVELOPE_LIMITS` on depth, attributes, elements and text,
a bound on any single piece of markup, and the payload feeder. This module also enforces the
request size limit and checks that SOAPAction names the operation in the body.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any
from xml.parsers import expat

import pybase64

from gateway import safexml
from gateway.errors import MalformedEdxml, MalformedRequest, TooLarge
from gateway.exchange.results import Caller
from gateway.exchange.service import StagedDocument
from gateway.safexml import ENVELOPE_LIMITS, Base64Text, Limits
from gateway.soap.context import OutboundFile, numbered
from gateway.soap.credentials import HeaderCollector, HeaderCredentials

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
READ_CHUNK = 1024 * 1024
"""Bytes asked of ``wsgi.input`` per read once the caller is authenticated.

gunicorn's body reader receives up to 1 MiB per ``recv`` and, on every smaller read, copies what it
still buffers into a new buffer, so 64 KiB reads re-copied each received MiB up to 16 times. With
1 MiB reads, memory still stays bounded by a few chunks whatever the document's size.
"""
HEAD_CHUNK = 16 * 1024
"""Bytes asked per read until ``<Body>`` is reached: both servers' readers wait until they have all the
bytes asked for, so asking a megabyte would wait for payload an unauthenticated caller may never send."""
_BASE64_CHUNK = 3 * 64 * 1024
MAX_SPARE_BUFFERS = 4
"""Read buffers (:data:`READ_CHUNK` each) a worker keeps between requests: a new one would be paged in afresh."""
_SPARE_BUFFERS: list[bytearray] = []
SIMPLE_TEXT = 256
"""Characters of parameter text a simple Body may hold (see :class:`StagedRequest`); more is not simple."""
MAX_SIMPLE_CHILDREN = 16
_XML_SPACE = " \t\r\n"

_ENVELOPE = f"{SOAP11_ENV} Envelope"
_HEADER = f"{SOAP11_ENV} Header"
_BODY = f"{SOAP11_ENV} Body"


def envelope_dialect(limits: Limits = ENVELOPE_LIMITS) -> safexml.Dialect:
    """How envelope refusals are worded: MalformedRequest (TooLarge for an over-long token)."""
    return safexml.Dialect(
        subject="The request",
        error=MalformedRequest,
        oversize=TooLarge,
        payload_words="the edXML document",
        doctype_reason="SOAP requests must not contain a DOCTYPE or entity declarations.",
        utf8_advice="send SOAP requests encoded in UTF-8.",
        limits=limits,
    )


_DIALECT = envelope_dialect()


@dataclass(frozen=True)
class Payload:
    """Where a base64 payload sits in a request: ``Body/<operation>/<element>`` in ``namespace``."""

    namespace: str
    operation: str
    element: str


@dataclass(frozen=True)
class SimpleBody:
    """A Body that is one operation element holding only leaf elements with short text (no attributes,
    comments, CDATA or mixed text): names are expat's ``"uri local"``, texts as received.

    For an operation with a payload (``sendDocument``) the only child allowed is the payload element
    itself, once: its text is the staged document, never a parameter, so ``parameters`` is empty.
    """

    operation: str
    parameters: tuple[tuple[str, str], ...]


@dataclass
class StagedRequest:
    """The request as Spyne will see it, the authenticated caller, and the decoded payload if there was one.

    ``simple`` is set when the Body is one operation element without attributes, text or anything but
    leaf children without attributes holding short text: the shape a binding can answer without
    parsing the envelope again. For an operation with a payload, the Body is simple only when its one
    child is the payload element without attributes (its base64 decoded into ``staged``, not kept as
    a parameter); any other child, a second payload element, or a comment, processing instruction
    or CDATA section anywhere in the Body makes it not simple. None for every other Body, which must
    go the whole way.
    """

    body: bytes
    operation: str | None
    staged: StagedDocument | None
    caller: Caller
    simple: SimpleBody | None = None


def _bad_base64(problem: str) -> MalformedEdxml:
    return MalformedEdxml(
        f"The document element does not hold valid base64 (it {problem}). Send the .edxml file's bytes base64-encoded."
    )


class _Scanner:
    """expat callbacks: bound the envelope, collect credentials, authenticate at Body, find the payload.

    Offsets are in bytes fed to expat (``CurrentByteIndex``), which is what the slim body is
    cut from: payload text that the feeder decodes itself never reaches expat.
    """

    def __init__(
        self,
        parser: Any,
        feeder: safexml.PayloadFeeder,
        payloads: dict[str, Payload],
        begin_staging: Callable[[], StagedDocument],
        authenticate: Callable[[HeaderCredentials], Caller],
    ) -> None:
        self.parser = parser
        self.feeder = feeder
        self.guard = safexml.Guard(_DIALECT, feeder.line)
        self.payloads = payloads
        self.begin_staging = begin_staging
        self.authenticate = authenticate
        self.header = HeaderCollector()
        self.stack: list[str] = []
        self.operation: str | None = None
        self.caller: Caller | None = None
        self.capture: Base64Text | None = None
        self.capture_depth = 0
        self.tag_at: int | None = None
        """Where the payload's start tag begins (its ``<``)."""
        self.consumed: int | None = None
        self.content_end: int | None = None
        self.staged: StagedDocument | None = None
        self.simple: list[tuple[str, list[str]]] | None = []
        """The operation's leaf children and their text so far; None once the Body is not simple."""
        self.simple_text = 0
        self.operation_name = ""
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.data
        parser.StartCdataSectionHandler = self.markup
        parser.CommentHandler = lambda _text: self.markup()
        parser.ProcessingInstructionHandler = lambda _target, _data: self.markup()

    def mark(self) -> None:
        """Payload content read by expat up to here is decoded and need not be kept."""
        if self.capture is not None:
            self.consumed = self.parser.CurrentByteIndex

    def markup(self) -> None:
        """A comment, processing instruction or CDATA section: inside the Body, one makes the Body not simple."""
        self.mark()
        if self.caller is not None:
            self.simple = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if self.capture is not None:
            raise MalformedEdxml("The document element must contain only base64 text, not XML elements.")
        self.guard.start(name, attrs)
        self.stack.append(name)
        depth = len(self.stack)
        if self.simple is not None and self.caller is not None:
            self._simple_start(name, attrs, depth)
        if depth >= 3 and self.stack[1] == _HEADER:
            self.header.start(name, attrs, depth - 2)
        elif depth == 2 and name == _BODY and self.stack[0] == _ENVELOPE:
            if self.caller is not None:
                self.guard.refuse("the SOAP envelope has more than one Body")
            self.caller = self.authenticate(self.header.credentials())
        elif depth == 3 and self.stack[:2] == [_ENVELOPE, _BODY]:
            self.operation = name.rpartition(" ")[2]
            self.operation_name = name
        elif depth == 4 and self.operation in self.payloads and self.stack[:2] == [_ENVELOPE, _BODY]:
            payload = self.payloads[self.operation]
            if name == f"{payload.namespace} {payload.element}" and self.staged is None:
                self.staged = self.begin_staging()
                self.capture = Base64Text(sink=self.staged, refuse=_bad_base64)
                self.capture_depth = depth
                self.tag_at = self.parser.CurrentByteIndex
                self.feeder.awaiting = self.capture

    def _simple_start(self, name: str, attrs: dict[str, str], depth: int) -> None:
        """Keep the Body simple only for ``<operation><leaf>text</leaf>...</operation>``, no attributes.

        An operation with a payload stays simple only as ``<operation><payload>base64</payload></operation>``:
        the payload element is not a parameter (its text goes to the staging file, see :meth:`data`).
        Called by :meth:`start` before it stages the payload, so ``staged`` is still None for the first one.
        """
        simple = self.simple
        assert simple is not None
        if attrs or depth == 2 or depth > 4 or (depth == 3 and self.operation is not None):
            self.simple = None
        elif depth == 4:
            payload = self.payloads.get(self.operation or "")
            if payload is not None:
                if self.staged is not None or name != f"{payload.namespace} {payload.element}":
                    self.simple = None
            elif len(simple) >= MAX_SIMPLE_CHILDREN:
                self.simple = None
            else:
                simple.append((name, []))

    def end(self, _name: str) -> None:
        self.feeder.awaiting = None
        depth = len(self.stack)
        if self.capture is not None and depth == self.capture_depth:
            self.content_end = self.parser.CurrentByteIndex
            self.capture.finish()
            self.capture = None
        if depth >= 3 and self.stack[1] == _HEADER:
            self.header.end(depth - 2)
        self.guard.end()
        self.stack.pop()

    def data(self, text: str) -> None:
        if self.capture is not None:
            self.mark()
            self.capture.feed(text)
            return
        self.guard.text(len(text))
        if self.simple is not None and self.caller is not None:
            self._simple_text(text)
        if len(self.stack) >= 3:
            self.header.text(text)

    def _simple_text(self, text: str) -> None:
        """A leaf's text is kept (up to :data:`SIMPLE_TEXT` characters); text elsewhere must be whitespace."""
        simple = self.simple
        assert simple is not None
        if len(self.stack) == 4:
            self.simple_text += len(text)
            if self.simple_text > SIMPLE_TEXT:
                self.simple = None
            else:
                simple[-1][1].append(text)
        elif text.strip(_XML_SPACE):
            self.simple = None

    def simple_body(self) -> SimpleBody | None:
        """The Body's parameters if it stayed simple (see :class:`StagedRequest`)."""
        if self.simple is None or self.operation is None:
            return None
        return SimpleBody(self.operation_name, tuple((name, "".join(parts)) for name, parts in self.simple))


class _Envelope:
    """The bytes the slim envelope is made of: what expat was fed, minus payload content it already read."""

    def __init__(self, scanner: _Scanner, envelope_limit: int) -> None:
        self.scanner = scanner
        self.envelope_limit = envelope_limit
        self.kept = bytearray()
        self.dropped = 0
        self.content_start: int | None = None

    def after_feed(self, view: memoryview, start: int, end: int) -> None:
        self.kept += view[start:end]
        scanner = self.scanner
        if self.content_start is None and scanner.tag_at is not None:
            gt = self.kept.find(b">", scanner.tag_at - self.dropped)
            self.content_start = len(self.kept) if gt < 0 else gt + 1
        if scanner.capture is not None and scanner.consumed is not None and self.content_start is not None:
            cut_to = scanner.consumed - self.dropped
            if cut_to > self.content_start:
                del self.kept[self.content_start : cut_to]
                self.dropped += cut_to - self.content_start
        if len(self.kept) > self.envelope_limit:
            raise TooLarge(
                f"Fields other than the edXML document are limited to {self.envelope_limit // 1024} KiB per request."
            )

    def slim_body(self) -> bytes:
        """The envelope as received, with the payload element emptied."""
        end = self.scanner.content_end
        if self.content_start is None or end is None or end - self.dropped < self.content_start:
            return bytes(self.kept)
        return bytes(self.kept[: self.content_start] + self.kept[end - self.dropped :])


def stage_request(
    stream: IO[bytes],
    content_length: int | None,
    limit: int,
    payloads: dict[str, Payload],
    begin_staging: Callable[[], StagedDocument],
    soap_action: str | None = None,
    envelope_limit: int = 1024 * 1024,
    *,
    authenticate: Callable[[HeaderCredentials], Caller],
) -> StagedRequest:
    """Read a SOAP request once: authenticate at Body, decode the payload (if any) into staging.

    Raises what ``authenticate`` raises; TooLarge past ``limit`` bytes (before reading, when
    Content-Length says so) or when the envelope without the payload exceeds ``envelope_limit``;
    MalformedRequest for anything that is not a well-formed, DTD-free, UTF-8 SOAP 1.1 envelope within
    :data:`~gateway.safexml.ENVELOPE_LIMITS` whose SOAPAction agrees with its body; MalformedEdxml
    for a payload that is not base64. On any error the staged payload is discarded.
    """
    if content_length is not None and content_length > limit:
        raise _too_large(limit)
    parser = safexml.create_parser(_DIALECT)
    feeder = safexml.PayloadFeeder(parser, _DIALECT, b"document")
    scanner = _Scanner(parser, feeder, payloads, begin_staging, authenticate)
    envelope = _Envelope(scanner, envelope_limit)
    feeder.after_feed = envelope.after_feed
    # Borrowed once the caller is known: a thousand slow unknown callers must not hold a megabyte each.
    buffer: bytearray | None = None
    try:
        received = 0
        while True:
            size = READ_CHUNK if scanner.caller is not None else HEAD_CHUNK
            want = size if content_length is None else min(size, content_length - received)
            if want <= 0:
                break
            if scanner.caller is None:
                data: bytes | bytearray = stream.read(want)
                got = len(data)
            else:
                if buffer is None:
                    buffer = _SPARE_BUFFERS.pop() if _SPARE_BUFFERS else bytearray(READ_CHUNK)
                data, got = buffer, _read_into(stream, buffer, want)
            if not got:
                break
            if not received:
                safexml.check_first_bytes(bytes(data[:4]), _DIALECT)
            received += got
            if received > limit:
                raise _too_large(limit)
            feeder.window(data, 0, got)
        if content_length is not None and received < content_length:
            raise MalformedRequest(f"The request body ended after {received} of {content_length} bytes; send it again.")
        feeder.finish()
        if scanner.operation is None or scanner.caller is None:
            raise MalformedRequest("The request is XML but not a SOAP 1.1 envelope with an operation in its Body.")
        _check_soap_action(soap_action, scanner.operation)
        return StagedRequest(
            envelope.slim_body(), scanner.operation, scanner.staged, scanner.caller, scanner.simple_body()
        )
    except expat.ExpatError as exc:
        _discard(scanner.staged)
        line, column = feeder.position(exc.lineno, exc.offset)
        raise safexml.syntax_error(exc, _DIALECT, line, column) from None
    except BaseException:
        _discard(scanner.staged)
        raise
    finally:
        if buffer is not None and len(_SPARE_BUFFERS) < MAX_SPARE_BUFFERS:
            _SPARE_BUFFERS.append(buffer)


def _read_into(stream: IO[bytes], buffer: bytearray, want: int) -> int:
    """Read the next ``want`` bytes (fewer only at the end) into the start of ``buffer``; returns how many.

    The production server's ``wsgi.input`` fills the buffer from the socket (gateway/server.py's
    ``socket_readinto``); a stream without ``readinto`` is read and copied.
    """
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        chunk = stream.read(want)
        buffer[: len(chunk)] = chunk
        return len(chunk)
    with memoryview(buffer) as view:
        return int(readinto(view[:want]))


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"The request is larger than this gateway accepts ({limit // (1024 * 1024)} MiB including base64 "
        "encoding). Reduce the attachments or ask the operator about the size limit."
    )


def _check_soap_action(soap_action: str | None, operation: str) -> None:
    action = (soap_action or "").strip().strip('"')
    if action and action != operation and not action.endswith(("/" + operation, "#" + operation)):
        raise MalformedRequest(f"SOAPAction '{action}' does not match the operation '{operation}' in the body.")


def _discard(staged: StagedDocument | None) -> None:
    if staged is not None:
        staged.discard()


class ResponseStreamer:
    """Swaps the placeholders in a small Spyne response for files' base64, chunk by chunk."""

    def __init__(self) -> None:
        self.placeholder = secrets.token_bytes(30)

    def stream(self, response: bytes, files: Sequence[OutboundFile]) -> tuple[Iterator[bytes], int]:
        """The response body as an iterator with each file inlined in its placeholder's place, and its exact length.

        A response without the first placeholder is returned as it is (a handler registered a file
        and then answered otherwise); one that carries only some of them is a bug, refused.
        """
        pieces: list[bytes] = []
        rest = response
        for index in range(len(files)):
            head, found, rest = rest.partition(base64.b64encode(numbered(self.placeholder, index)))
            if not found:
                if index == 0:
                    return iter([response]), len(response)
                raise RuntimeError(f"the response carries {index} of its {len(files)} files' placeholders")
            pieces.append(head)
        length = sum(map(len, pieces)) + sum((file.size + 2) // 3 * 4 for file in files) + len(rest)
        return _chunks(pieces, files, rest), length


def _chunks(heads: list[bytes], files: Sequence[OutboundFile], tail: bytes) -> Iterator[bytes]:
    for head, file in zip(heads, files, strict=True):
        yield head
        with file.path.open("rb") as source:
            while block := source.read(_BASE64_CHUNK):
                yield pybase64.b64encode(block)
    yield tail
