"""Hardened, streaming edXML parser: bytes or file in, small lxml tree out.

Why not ``lxml.etree.parse``: a 50 MB document is almost all one base64 text node, and libxml2
would hold it whole (and lxml copy it again to read it). Here expat streams the input and hands
``ContentTransferEncoded`` text to a counter chunk by chunk, so the tree keeps every element,
attribute, line number and text *except* attachment contents; their decoded size and base64
validity are recorded in :class:`ParsedEdxml.contents`. Memory stays near the header size.

Hardening: expat never fetches external entities, and any DOCTYPE is refused outright, which also
refuses every entity declaration (XXE, billion laughs) before it can be used. All parse failures
become :class:`~gateway.errors.MalformedEdxml` with a line and column a clerk can look up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from xml.parsers import expat

from lxml import etree

from gateway.edxml.ns import PREFIXES, local_name
from gateway.errors import MalformedEdxml

CHUNK = 1 << 20
"""Bytes fed to expat per call, and the bound on one text callback."""

MAX_TEXT = 1 << 20
"""Characters allowed in any text other than an attachment; real header fields are far below it."""

MAX_DEPTH = 64
"""Nesting allowed; edXML needs about 10 levels."""

MAX_MARKUP = 1 << 20
"""Bytes expat may hold for one unfinished tag, comment or PI: it buffers such a token whole
until it ends, so a 20 MB attribute would otherwise cost several times its size."""

_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})

ENCODED_CONTENT = "ContentTransferEncoded"

_WHITESPACE = {ord(c): None for c in " \t\r\n"}
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")

_EXPAT_WORDS = {
    expat.errors.codes[expat.errors.XML_ERROR_INVALID_TOKEN]: "a character or piece of markup is not allowed here",
    expat.errors.codes[expat.errors.XML_ERROR_TAG_MISMATCH]: "a closing tag does not match its opening tag",
    expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS]: "the file is empty or ends before the document is complete",
    expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_TOKEN]: "the file ends in the middle of a tag",
    expat.errors.codes[expat.errors.XML_ERROR_UNDEFINED_ENTITY]: "it uses an undefined entity reference (&name;)",
    expat.errors.codes[expat.errors.XML_ERROR_JUNK_AFTER_DOC_ELEMENT]: "there is content after the end of the document",
    expat.errors.codes[expat.errors.XML_ERROR_INCORRECT_ENCODING]: "the bytes do not match the declared encoding",
    expat.errors.codes[expat.errors.XML_ERROR_UNKNOWN_ENCODING]: "the declared encoding is not supported (use UTF-8)",
    expat.errors.codes[expat.errors.XML_ERROR_UNBOUND_PREFIX]: "it uses a namespace prefix that is not declared",
    expat.errors.codes[expat.errors.XML_ERROR_DUPLICATE_ATTRIBUTE]: "an element has the same attribute twice",
    expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION]: "a CDATA section is not closed",
}


@dataclass
class EncodedContent:
    """What streaming learnt about one ``ContentTransferEncoded``: decoded size, or why it is not base64."""

    line: int
    chars: int = 0
    padding: int = 0
    error: str | None = None

    def feed(self, text: str) -> None:
        """Account for one chunk without keeping it; only padding state crosses chunks."""
        if self.error is not None:
            return
        compact = text.translate(_WHITESPACE)
        if not compact:
            return
        if _NOT_BASE64.search(compact):
            self.error = "contains characters that are not base64"
            return
        if self.padding:
            if compact.strip("="):
                self.error = "has data after the '=' padding"
                return
            self.padding += len(compact)
        else:
            first_pad = compact.find("=")
            if first_pad >= 0:
                if compact[first_pad:].strip("="):
                    self.error = "has '=' in the middle of the data"
                    return
                self.padding = len(compact) - first_pad
        self.chars += len(compact)

    def finish(self) -> None:
        """Check the total length once the element is closed."""
        if self.error is None and (self.chars % 4 or self.padding > 2):
            self.error = "is truncated or has a wrong length (base64 comes in groups of 4 characters)"

    @property
    def size(self) -> int:
        """Decoded byte count."""
        return self.chars // 4 * 3 - self.padding


@dataclass
class ParsedEdxml:
    """A parsed edXML message: the tree (attachment contents left empty) and their stream summaries."""

    root: etree._Element
    contents: dict[etree._Element, EncodedContent] = field(default_factory=dict)


@dataclass
class _Open:
    element: etree._Element
    parts: list[str] = field(default_factory=list)
    length: int = 0
    tail_parts: list[str] = field(default_factory=list)
    encoded: EncodedContent | None = None


class _TreeBuilder:
    """Expat callbacks that build the lxml tree, keeping line numbers for error messages."""

    def __init__(self, parser: expat.XMLParserType) -> None:
        self._parser = parser
        self._stack: list[_Open] = []
        self.root: etree._Element | None = None
        self.contents: dict[etree._Element, EncodedContent] = {}

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if len(self._stack) >= MAX_DEPTH:
            raise MalformedEdxml(
                f"The edXML is not acceptable XML: line {self._parser.CurrentLineNumber}: "
                f"elements are nested more than {MAX_DEPTH} levels deep."
            )
        tag = _clark(name)
        attrib = {_clark(key): value for key, value in attrs.items()}
        try:
            element = self._attach(tag, attrib)
        except ValueError as exc:
            raise MalformedEdxml(
                f"The edXML is not acceptable XML: line {self._parser.CurrentLineNumber}: {exc}."
            ) from None
        element.sourceline = self._parser.CurrentLineNumber
        opened = _Open(element)
        if local_name(tag) == ENCODED_CONTENT:
            opened.encoded = EncodedContent(line=element.sourceline)
            self.contents[element] = opened.encoded
        self._stack.append(opened)

    def _attach(self, tag: str, attrib: dict[str, str]) -> etree._Element:
        """Create the element under the open one; lxml refuses some names and URIs XML allows."""
        if not self._stack:
            self.root = etree.Element(tag, attrib, nsmap=PREFIXES)
            return self.root
        top = self._stack[-1]
        if len(top.element) and top.tail_parts:
            top.element[-1].tail = "".join(top.tail_parts)
            top.tail_parts = []
        return etree.SubElement(top.element, tag, attrib)

    def end(self, _name: str) -> None:
        opened = self._stack.pop()
        element = opened.element
        if opened.encoded is not None:
            opened.encoded.finish()
            element.text = ""
        text = "".join(opened.parts)
        if len(element) == 0:
            if opened.encoded is None and opened.parts:
                element.text = text
        else:
            if text.strip():
                element.text = text
            if opened.tail_parts:
                element[-1].tail = "".join(opened.tail_parts)

    def data(self, text: str) -> None:
        if not self._stack:
            return
        top = self._stack[-1]
        if top.encoded is not None and len(top.element) == 0:
            top.encoded.feed(text)
            return
        if len(top.element):
            if text.strip():
                top.tail_parts.append(text)
            return
        top.length += len(text)
        if top.length > MAX_TEXT:
            raise MalformedEdxml(
                f"The edXML is not acceptable: line {top.element.sourceline}: the text of "
                f"{local_name(top.element.tag)} is longer than {MAX_TEXT} characters."
            )
        top.parts.append(text)


def _clark(expat_name: str) -> str:
    """Expat's ``"uri local"`` to lxml's ``"{uri}local"``."""
    uri, sep, local = expat_name.rpartition(" ")
    return f"{{{uri}}}{local}" if sep else local


def _refuse_doctype(*_args: object) -> None:
    raise MalformedEdxml(
        "The edXML contains a DOCTYPE declaration. edXML never needs one, and DOCTYPEs can hide "
        "entity tricks that read server files or exhaust memory, so the gateway refuses them."
    )


def _require_utf8(_version: str | None, encoding: str | None, _standalone: int) -> None:
    """QCVN 102 packets are UTF-8; a document in another encoding would reach recipients that cannot read it."""
    if encoding is not None and encoding.lower() not in _UTF8_NAMES:
        raise MalformedEdxml(
            f"The edXML is encoded in {encoding}; QCVN 102 documents must be encoded in UTF-8. "
            "Save the file as UTF-8 and send it again."
        )


def _refuse_entity(*_args: object) -> None:
    raise MalformedEdxml("The edXML declares or references an external entity; the gateway refuses entities.")


def _chunks(source: Path | bytes | bytearray | memoryview) -> Iterator[bytes | memoryview]:
    if isinstance(source, Path):
        stream: IO[bytes]
        with source.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                yield chunk
        return
    view = memoryview(source).cast("B")
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]


def parse(source: Path | bytes | bytearray | memoryview) -> ParsedEdxml:
    """Parse edXML from a file or bytes; never loads DTDs or entities, never holds attachment text."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = CHUNK
    builder = _TreeBuilder(parser)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_entity
    parser.XmlDeclHandler = _require_utf8
    try:
        fed = 0
        for chunk in _chunks(source):
            if not fed and (bytes(chunk[:2]) in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in bytes(chunk[:4])):
                _require_utf8(None, "UTF-16 or UTF-32", -1)
            fed += len(chunk)
            parser.Parse(chunk, False)
            if fed - max(parser.CurrentByteIndex, 0) > MAX_MARKUP:
                raise MalformedEdxml(
                    f"The edXML has a tag, attribute, comment or processing instruction longer than "
                    f"{MAX_MARKUP // 1024} KiB (near line {parser.CurrentLineNumber}); only attachment "
                    "contents may be that large."
                )
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        words = _EXPAT_WORDS.get(exc.code, expat.ErrorString(exc.code))
        raise MalformedEdxml(
            f"The edXML is not well-formed XML: line {exc.lineno}, column {exc.offset + 1}: {words}."
        ) from None
    except (LookupError, UnicodeError) as exc:
        raise MalformedEdxml(
            f"The edXML cannot be decoded: line {parser.CurrentLineNumber}: the declared encoding is not "
            f"supported or does not match the bytes ({exc}); use UTF-8."
        ) from None
    except OSError as exc:
        raise MalformedEdxml(f"The edXML file cannot be read: {exc.strerror or exc}.") from None
    if builder.root is None:
        raise MalformedEdxml("The edXML is empty: it contains no element.")
    return ParsedEdxml(builder.root, builder.contents)
