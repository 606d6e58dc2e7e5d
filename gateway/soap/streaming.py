"""Large edXML payloads bypass Spyne, in both directions, in bounded memory.

Spyne reads a whole request into memory, parses it into one tree and copies a ``ByteArray``
about eleven times (../shared/stack-notes.md §1.7). The gateway instead streams each request
through expat once: the base64 text of ``sendDocument/document`` is decoded chunk by chunk
into a staging file, and Spyne receives the same envelope with that element emptied. On the
way out, ``getDocument`` hands Spyne a short placeholder which is replaced here by the file's
base64, read and encoded in chunks while the response is written.

The same pass enforces the request size limit, refuses DTDs and entity declarations, bounds
nesting depth and the size of any single piece of markup, refuses encodings other than UTF-8
(Spyne decodes the slim envelope as UTF-8), and checks that SOAPAction names the operation in the
body.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

import pybase64

from gateway.errors import MalformedEdxml, MalformedRequest, TooLarge
from gateway.exchange.service import StagedDocument

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
READ_CHUNK = 1024 * 1024
"""Bytes asked of ``wsgi.input`` per read.

gunicorn's body reader receives up to 1 MiB per ``recv`` and, on every smaller read, copies what it
still buffers into a new buffer, so 64 KiB reads re-copied each received MiB up to 16 times. With
1 MiB reads, memory still stays bounded by a few chunks whatever the document's size.
"""
MAX_DEPTH = 64
MAX_MARKUP = 1024 * 1024
"""Bytes expat may hold for one unfinished token (a tag with its attributes, a comment, a PI).

expat cannot report such a token until it ends, so it buffers all of it, and Python then copies it
into strings: a 20 MB attribute cost about 70 MB of RSS before this bound. Only the payload's text
may be large, and expat hands text over as it arrives.
"""
_UTF8_NAMES = frozenset({"utf-8", "us-ascii", "ascii"})
_WHITESPACE = b" \t\r\n"
_SPACES = (b"\n", b" ", b"\r", b"\t")
"""Most stacks send base64 on one line: four memchr scans are cheaper than copying it to strip nothing."""
_PAD = ord("=")
_BASE64_CHUNK = 3 * 64 * 1024


@dataclass(frozen=True)
class Payload:
    """Where a base64 payload sits in a request: ``Body/<operation>/<element>`` in ``namespace``."""

    namespace: str
    operation: str
    element: str


@dataclass
class StagedRequest:
    """The request as Spyne will see it, plus the decoded payload if there was one."""

    body: bytes
    operation: str | None
    staged: StagedDocument | None


class _Base64ToFile:
    """Decodes base64 arriving in arbitrary pieces straight into a staging file.

    Each piece is decoded as soon as it arrives, whole quanta of four characters at a time; only
    the one to three characters of an unfinished quantum wait for the next piece.
    """

    def __init__(self, out: StagedDocument) -> None:
        self.out = out
        self.carry = b""
        self.padded = False

    def feed_text(self, text: str) -> None:
        try:
            self.feed(text.encode("ascii"))
        except UnicodeEncodeError:
            raise _bad_base64() from None

    def feed(self, raw: bytes) -> None:
        data = raw.translate(None, _WHITESPACE) if any(space in raw for space in _SPACES) else raw
        if not data:
            return
        if self.padded:
            raise _bad_base64()
        if self.carry:
            data = self.carry + data
        whole = len(data) - len(data) % 4
        self.carry = data[whole:]
        if whole:
            self._decode(memoryview(data)[:whole])
            self.padded = data[whole - 1] == _PAD

    def finish(self) -> None:
        if self.carry:
            raise _bad_base64()
        self.out.flush()

    def _decode(self, quanta: memoryview) -> None:
        try:
            self.out.write(pybase64.b64decode(quanta, validate=True))
        except (binascii.Error, ValueError):
            raise _bad_base64() from None


def _bad_base64() -> MalformedEdxml:
    return MalformedEdxml(
        "The document element does not hold valid base64. Send the .edxml file's bytes base64-encoded."
    )


class _Scanner:
    """expat callbacks: track the element path, find the payload, note where its content lies.

    Offsets are in bytes fed to expat (``CurrentByteIndex``), which is what the slim body is
    cut from: payload text that :func:`stage_request` decodes itself never reaches expat.
    """

    def __init__(self, parser: Any, payloads: dict[str, Payload], begin_staging: Callable[[], StagedDocument]) -> None:
        self.parser = parser
        self.payloads = payloads
        self.begin_staging = begin_staging
        self.stack: list[str] = []
        self.operation: str | None = None
        self.capture: _Base64ToFile | None = None
        self.capture_depth = 0
        self.consumed: int | None = None
        self.content_end: int | None = None
        self.staged: StagedDocument | None = None
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.data
        parser.StartCdataSectionHandler = self.mark
        parser.CommentHandler = lambda _text: self.mark()
        parser.ProcessingInstructionHandler = lambda _target, _data: self.mark()
        parser.XmlDeclHandler = self.check_encoding
        parser.StartDoctypeDeclHandler = self.refuse_dtd
        parser.EntityDeclHandler = self.refuse_dtd
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse_dtd(self, *_args: object) -> None:
        raise MalformedRequest("SOAP requests must not contain a DOCTYPE or entity declarations.")

    def check_encoding(self, _version: str | None, encoding: str | None, _standalone: int) -> None:
        if encoding is not None and encoding.lower() not in _UTF8_NAMES:
            raise _not_utf8(encoding)

    def mark(self) -> None:
        """Payload content read by expat up to here is decoded and need not be kept."""
        if self.capture is not None:
            self.consumed = self.parser.CurrentByteIndex

    @property
    def payload_pending(self) -> bool:
        """True until the payload could still start: only payload operations need piecewise feeding."""
        return self.staged is None and (self.operation is None or self.operation in self.payloads)

    def start(self, name: str, _attrs: object) -> None:
        if self.capture is not None:
            raise MalformedEdxml("The document element must contain only base64 text, not XML elements.")
        self.stack.append(name)
        depth = len(self.stack)
        if depth > MAX_DEPTH:
            raise MalformedRequest(f"The request nests elements deeper than {MAX_DEPTH} levels.")
        if depth == 3 and self.stack[:2] == [f"{SOAP11_ENV} Envelope", f"{SOAP11_ENV} Body"]:
            self.operation = name.rpartition(" ")[2]
        elif depth == 4 and self.operation in self.payloads:
            payload = self.payloads[self.operation]
            if name == f"{payload.namespace} {payload.element}" and self.staged is None:
                self.staged = self.begin_staging()
                self.capture = _Base64ToFile(self.staged)
                self.capture_depth = depth

    def end(self, _name: str) -> None:
        if self.capture is not None and len(self.stack) == self.capture_depth:
            self.content_end = self.parser.CurrentByteIndex
            self.capture.finish()
            self.capture = None
        self.stack.pop()

    def data(self, text: str) -> None:
        if self.capture is not None:
            self.mark()
            self.capture.feed_text(text)


class _Feeder:
    """Feeds a request to expat and keeps the bytes the slim envelope is made of.

    Until the payload element has started, bytes go to expat in pieces ending at each ``>``, so
    that control returns right after the payload's start tag. From there the payload's text is
    found with ``bytes.find(b"<")`` and decoded directly, never passing through expat, which is
    what makes large documents cheap. Text expat must interpret (a character reference, a CDATA
    section) takes the slow path: expat reads it and the scanner decodes what it reports.
    """

    def __init__(self, parser: Any, scanner: _Scanner, envelope_limit: int) -> None:
        self.parser = parser
        self.scanner = scanner
        self.envelope_limit = envelope_limit
        self.kept = bytearray()
        self.fed = 0
        self.content_start: int | None = None
        self.dropped = 0
        self.fast = False

    def feed(self, chunk: bytes) -> None:
        pos = 0
        while pos < len(chunk):
            if self.fast:
                pos = self._payload_text(chunk, pos)
            elif self.scanner.payload_pending:
                end = chunk.find(b">", pos)
                end = len(chunk) if end < 0 else end + 1
                self._parse(chunk[pos:end])
                pos = end
                if self.scanner.capture is not None:
                    self.content_start, self.fast = self.fed, True
            else:
                self._parse(chunk[pos:])
                pos = len(chunk)

    def _payload_text(self, chunk: bytes, pos: int) -> int:
        end = chunk.find(b"<", pos)
        text = chunk[pos:] if end < 0 else chunk[pos:end]
        capture = self.scanner.capture
        assert capture is not None
        if b"&" in text:
            self.fast = False
            return pos
        capture.feed(text)
        if end < 0:
            return len(chunk)
        self.fast = False
        return end

    def _parse(self, piece: bytes) -> None:
        self.kept += piece
        self.fed += len(piece)
        self.parser.Parse(piece, False)
        scanner = self.scanner
        if scanner.capture is not None and scanner.consumed is not None and self.content_start is not None:
            cut_to = scanner.consumed - self.dropped
            del self.kept[self.content_start : cut_to]
            self.dropped += max(cut_to - self.content_start, 0)
        if self.fed - max(self.parser.CurrentByteIndex, 0) > MAX_MARKUP:
            raise TooLarge(
                f"A single tag, attribute, comment or processing instruction in the request is longer than "
                f"{MAX_MARKUP // 1024} KiB; only the edXML document may be large."
            )
        if len(self.kept) > self.envelope_limit:
            raise TooLarge(
                f"Fields other than the edXML document are limited to {self.envelope_limit // 1024} KiB per request."
            )

    def slim_body(self) -> bytes:
        """The envelope as received, with the payload element emptied."""
        end = self.scanner.content_end
        if self.content_start is None or end is None:
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
) -> StagedRequest:
    """Read a SOAP request once; decode the payload (if any) to a staging file, return the slim envelope.

    Raises TooLarge past ``limit`` bytes (before reading, when Content-Length says so) or when the
    envelope without the payload exceeds ``envelope_limit``; MalformedRequest for anything that is
    not a well-formed, DTD-free, UTF-8 SOAP 1.1 envelope whose SOAPAction agrees with its body;
    MalformedEdxml for a payload that is not base64. On any error the staging file is discarded.
    """
    if content_length is not None and content_length > limit:
        raise _too_large(limit)
    parser = expat.ParserCreate(namespace_separator=" ")
    scanner = _Scanner(parser, payloads, begin_staging)
    feeder = _Feeder(parser, scanner, envelope_limit)
    try:
        received = 0
        while True:
            want = READ_CHUNK if content_length is None else min(READ_CHUNK, content_length - received)
            chunk = stream.read(want) if want > 0 else b""
            if not chunk:
                break
            if not received and (chunk.startswith((b"\xfe\xff", b"\xff\xfe")) or b"\x00" in chunk[:4]):
                raise _not_utf8("UTF-16 or UTF-32")
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            feeder.feed(chunk)
        if content_length is not None and received < content_length:
            raise MalformedRequest(
                f"The request body ended after {received} of {content_length} bytes; send it again."
            )
        parser.Parse(b"", True)
        if scanner.operation is None:
            raise MalformedRequest("The request is XML but not a SOAP 1.1 envelope with an operation in its Body.")
        _check_soap_action(soap_action, scanner.operation)
        return StagedRequest(feeder.slim_body(), scanner.operation, scanner.staged)
    except expat.ExpatError as exc:
        _discard(scanner.staged)
        raise MalformedRequest(
            f"The request is not well-formed XML (line {exc.lineno}, column {exc.offset}): "
            f"{expat.ErrorString(exc.code)}."
        ) from None
    except BaseException:
        _discard(scanner.staged)
        raise


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"The request is larger than this gateway accepts ({limit // (1024 * 1024)} MiB including base64 "
        "encoding). Reduce the attachments or ask the operator about the size limit."
    )


def _not_utf8(encoding: str) -> MalformedRequest:
    return MalformedRequest(f"The request is encoded in {encoding}; send SOAP requests encoded in UTF-8.")


def _check_soap_action(soap_action: str | None, operation: str) -> None:
    action = (soap_action or "").strip().strip('"')
    if action and action != operation and not action.endswith(("/" + operation, "#" + operation)):
        raise MalformedRequest(
            f"SOAPAction '{action}' does not match the operation '{operation}' in the body."
        )


def _discard(staged: StagedDocument | None) -> None:
    if staged is not None:
        staged.discard()


class ResponseStreamer:
    """Swaps a placeholder in a small Spyne response for a file's base64, chunk by chunk."""

    def __init__(self) -> None:
        self.placeholder = secrets.token_bytes(30)
        self.marker = base64.b64encode(self.placeholder)

    def stream(self, response: bytes, path: Path, size: int) -> tuple[Iterator[bytes], int]:
        """The response body as an iterator with the file inlined, and its exact length."""
        head, found, tail = response.partition(self.marker)
        if not found:
            return iter([response]), len(response)
        length = len(head) + (size + 2) // 3 * 4 + len(tail)
        return _chunks(head, path, tail), length


def _chunks(head: bytes, path: Path, tail: bytes) -> Iterator[bytes]:
    yield head
    with path.open("rb") as source:
        while block := source.read(_BASE64_CHUNK):
            yield pybase64.b64encode(block)
    yield tail
