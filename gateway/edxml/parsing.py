"""Hardened, streaming edXML parser: bytes or file in, small lxml tree out.

Why not ``lxml.etree.parse``: a 50 MB document is almost all one base64 text node, and libxml2
would hold it whole (and lxml copy it again to read it). Here expat streams the input and hands
``ContentTransferEncoded`` text to a counter chunk by chunk, so the tree keeps every element,
attribute, line number and text *except* attachment contents; their decoded size and base64
validity are recorded in :class:`ParsedEdxml.contents`. Memory stays near the header size.

Hardening: expat never fetches external entities, and any DOCTYPE is refused outright, which also
refuses every entity declaration (XXE, billion laughs) before it can be used. All parse failures
become :class:`~gateway.errors.MalformedEdxml` with a line and column a clerk can look up.

Fast path: expat would still turn every attachment byte into a Python ``str`` through text
callbacks, which cost most of a send's parse time. So expat is fed in pieces split right after the
``>`` of any tag that may be a ``ContentTransferEncoded`` start tag; once such an element has
started, its text up to the next ``<`` is checked as bytes (C-speed ``translate``/``find``) and
never reaches expat, which then sees an empty element. Text holding anything but base64 characters
and XML whitespace (``&`` references, other bytes) is given to expat as before, so expat keeps
judging well-formedness; CDATA, comments and the rest of the element after the ``<`` go through
expat too. Line and column numbers reported after skipped text are compensated for its line breaks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeAlias
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

_NAME = ENCODED_CONTENT.encode("ascii")
_BASE64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_XML_SPACE = b" \t\r\n"
_PAD_OR_SPACE = b"=" + _XML_SPACE
_TAG_PREFIX = re.compile(rb"(?:[^\s<>/!?:=\"']+:)?")
"""What may stand between ``<`` and the element name in a start tag: nothing or ``prefix:``."""

_LOOKBACK = 256
"""Bytes searched backwards for the ``<`` before the name; with none that close, it may be a start tag."""

_MAX_MISSES = 1024
"""Extra expat calls (splits that started no attachment) allowed before the fast path gives up, so
input crafted with many ``<ContentTransferEncoded>`` look-alikes (comments, CDATA) costs at most
this many small calls more than plain expat would."""

_PIECE = 1 << 16
"""Attachment text is checked in slices this big: a 1 MiB slice copy plus ``translate``'s output
buffer of the same size come from fresh pages (mmap) every time and cost twice the work itself."""

Buffer: TypeAlias = bytes | bytearray

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

    def feed_base64(self, buf: Buffer, start: int, stop: int, spaces: int) -> None:
        """:meth:`feed` for raw bytes ``buf[start:stop]`` the caller checked hold only base64
        characters and ``spaces`` XML whitespace bytes: the same rules, without a ``str`` copy."""
        if self.error is not None:
            return
        chars = stop - start - spaces
        if not chars:
            return
        if self.padding:
            if buf[start:stop].translate(None, _PAD_OR_SPACE):
                self.error = "has data after the '=' padding"
                return
            self.padding += chars
        else:
            first_pad = buf.find(b"=", start, stop)
            if first_pad >= 0:
                tail = buf[first_pad:stop]
                if tail.translate(None, _PAD_OR_SPACE):
                    self.error = "has '=' in the middle of the data"
                    return
                self.padding = tail.count(b"=")
        self.chars += chars

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
    children: int = 0
    """Counted here because ``len()`` of an lxml element walks its children: quadratic with many."""


class _TreeBuilder:
    """Expat callbacks that build the lxml tree, keeping line numbers for error messages."""

    def __init__(self, parser: expat.XMLParserType) -> None:
        self._parser = parser
        self._stack: list[_Open] = []
        self.root: etree._Element | None = None
        self.contents: dict[etree._Element, EncodedContent] = {}
        self.skipped_lines = 0
        """Line breaks in attachment text that bypassed expat, so expat did not count them."""
        self.awaiting: EncodedContent | None = None
        """The attachment whose start tag expat just reported, while it is still open and textless."""

    def line(self) -> int:
        """The current line in the document, counting line breaks expat never saw."""
        return self._parser.CurrentLineNumber + self.skipped_lines

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if len(self._stack) >= MAX_DEPTH:
            raise MalformedEdxml(
                f"The edXML is not acceptable XML: line {self.line()}: "
                f"elements are nested more than {MAX_DEPTH} levels deep."
            )
        tag = _clark(name)
        attrib = {_clark(key): value for key, value in attrs.items()}
        try:
            element = self._attach(tag, attrib)
        except ValueError as exc:
            raise MalformedEdxml(f"The edXML is not acceptable XML: line {self.line()}: {exc}.") from None
        element.sourceline = self.line()
        opened = _Open(element)
        if local_name(tag) == ENCODED_CONTENT:
            opened.encoded = EncodedContent(line=element.sourceline)
            self.contents[element] = opened.encoded
        self.awaiting = opened.encoded
        self._stack.append(opened)

    def _attach(self, tag: str, attrib: dict[str, str]) -> etree._Element:
        """Create the element under the open one; lxml refuses some names and URIs XML allows."""
        if not self._stack:
            self.root = etree.Element(tag, attrib, nsmap=PREFIXES)
            return self.root
        top = self._stack[-1]
        if top.children and top.tail_parts:
            top.element[-1].tail = "".join(top.tail_parts)
            top.tail_parts = []
        element = etree.SubElement(top.element, tag, attrib)
        top.children += 1
        return element

    def end(self, _name: str) -> None:
        self.awaiting = None
        opened = self._stack.pop()
        element = opened.element
        if opened.encoded is not None:
            opened.encoded.finish()
            element.text = ""
        text = "".join(opened.parts)
        if opened.children == 0:
            if opened.encoded is None and opened.parts:
                element.text = text
        else:
            if text.strip():
                element.text = text
            if opened.tail_parts:
                element[-1].tail = "".join(opened.tail_parts)

    def data(self, text: str) -> None:
        """Route text; expat splits it wherever its input was split, so a tail that has shown
        non-whitespace keeps every later piece, whitespace or not."""
        if not self._stack:
            return
        top = self._stack[-1]
        if top.encoded is not None and top.children == 0:
            top.encoded.feed(text)
            return
        if top.children:
            if top.tail_parts or text.strip():
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


class _Feeder:
    """Feeds expat, except attachment text: that is checked as bytes and skipped (see the module doc).

    Works window by window (``buf[start:end]``, at most :data:`CHUNK` bytes), so expat is never
    given more than a window at once and the unfinished-markup guard runs as often as before.
    """

    def __init__(self, parser: expat.XMLParserType, builder: _TreeBuilder) -> None:
        self._parser = parser
        self._builder = builder
        self.fed = 0
        """Bytes given to expat (skipped text excluded), for the unfinished-markup guard."""
        self._content: EncodedContent | None = None
        """The attachment whose text is being skipped; ``None`` while feeding expat."""
        self._hot = False
        """Inside a tag that may be an attachment's start tag: split after each ``>``."""
        self._fast = True
        """Whether to look for attachment start tags at all; off once :data:`_MAX_MISSES` is spent."""
        self._misses = 0
        self._after_cr = False
        """Skipped text ended with CR at a window end; an LF next completes that line break."""
        self._column_line = 0
        self._column_shift = 0
        """Columns expat reports on its line ``_column_line`` are short by this many characters."""

    def window(self, buf: Buffer, start: int, end: int) -> None:
        """Process ``buf[start:end]``, the next bytes of the document."""
        view = memoryview(buf)
        self._hot = self._fast
        pos = start
        while pos < end:
            pos = self._markup(buf, view, pos, end) if self._content is None else self._skip_text(buf, pos, end)

    def finish(self) -> None:
        """Tell expat the document ended (it reports an unclosed element or missing root)."""
        self._parser.Parse(b"", True)

    def position(self, line: int, column: int) -> tuple[int, int]:
        """An expat-reported position as a place in the document, counting skipped text."""
        shift = self._column_shift if line == self._column_line else 0
        return line + self._builder.skipped_lines, column + shift

    def _feed(self, view: memoryview, start: int, end: int) -> EncodedContent | None:
        """Give ``view[start:end]`` to expat; return the attachment if these bytes ended with its start tag."""
        self._builder.awaiting = None
        if start < end:
            self._parser.Parse(view[start:end], False)
            self.fed += end - start
            if self.fed - max(self._parser.CurrentByteIndex, 0) > MAX_MARKUP:
                raise MalformedEdxml(
                    f"The edXML has a tag, attribute, comment or processing instruction longer than "
                    f"{MAX_MARKUP // 1024} KiB (near line {self._builder.line()}); only attachment "
                    "contents may be that large."
                )
        started, self._builder.awaiting = self._builder.awaiting, None
        return started

    def _markup(self, buf: Buffer, view: memoryview, pos: int, end: int) -> int:
        """Feed expat up to just after a possible attachment start tag; return where to go on."""
        if self._hot:
            gt = buf.find(b">", pos, end)
            lt = buf.find(b"<", pos, end if gt < 0 else gt)
            if gt < 0 or lt >= 0:
                self._hot = lt < 0
                stop = end if lt < 0 else lt
                self._feed(view, pos, stop)
                return stop
            self._content = self._feed(view, pos, gt + 1)
            if self._content is not None:
                self._hot = False
            else:
                self._misses += 1
                self._fast = self._misses <= _MAX_MISSES
                self._hot = self._fast
            return gt + 1
        found = buf.find(_NAME, pos, end) if self._fast else -1
        while found >= 0 and not self._may_start_tag(buf, found):
            found = buf.find(_NAME, found + len(_NAME), end)
        if found < 0:
            self._feed(view, pos, end)
            return end
        self._feed(view, pos, found)
        self._hot = True
        return found

    @staticmethod
    def _may_start_tag(buf: Buffer, name_at: int) -> bool:
        """Whether the name at ``name_at`` may be an element name in a start tag (not an end tag or text)."""
        lt = buf.rfind(b"<", max(name_at - _LOOKBACK, 0), name_at)
        return lt < 0 or _TAG_PREFIX.fullmatch(buf, lt + 1, name_at) is not None

    def _skip_text(self, buf: Buffer, pos: int, end: int) -> int:
        """Check and skip attachment text up to the next ``<``; return where expat takes over again.

        The window's part of the text is judged whole: if any of it needs expat, all of it goes to
        expat, so expat's text callbacks (and thus which '=' message appears) start where they did.
        """
        assert self._content is not None
        lt = buf.find(b"<", pos, end)
        stop = end if lt < 0 else lt
        spaces: list[Buffer] = []
        for start in range(pos, stop, _PIECE):
            others = buf[start : min(start + _PIECE, stop)].translate(None, _BASE64_BYTES)
            if others.translate(None, _XML_SPACE):
                if self._after_cr and buf.startswith(b"\n", pos):
                    self._builder.skipped_lines -= 1
                self._after_cr = False
                self._content = None
                return pos
            spaces.append(others)
        if pos < stop:
            residue = b"".join(spaces)
            self._content.feed_base64(buf, pos, stop, len(residue))
            self._count_lines(buf, pos, stop, residue)
        if lt < 0:
            return end
        self._after_cr = False
        self._content = None
        return lt

    def _count_lines(self, buf: Buffer, start: int, stop: int, spaces: bytes) -> None:
        """Record the line breaks of skipped ``buf[start:stop]`` (whose whitespace bytes, in order,
        are ``spaces``) as expat counts them: CR LF, lone CR and lone LF each end one line."""
        line_feeds = spaces.count(b"\n")
        returns = spaces.count(b"\r")
        breaks = line_feeds + returns - (_crlf_count(buf, start, stop, returns) if returns else 0)
        if self._after_cr and buf.startswith(b"\n", start):
            breaks -= 1
        self._after_cr = buf.endswith(b"\r", start, stop)
        self._builder.skipped_lines += breaks
        line, column = self._parser.CurrentLineNumber, self._parser.CurrentColumnNumber
        if line_feeds or returns:
            last_break = max(buf.rfind(b"\n", start, stop), buf.rfind(b"\r", start, stop))
            self._column_line, self._column_shift = line, stop - last_break - 1 - column
        elif self._column_line == line:
            self._column_shift += stop - start
        else:
            self._column_line, self._column_shift = line, stop - start


def _crlf_count(buf: Buffer, start: int, stop: int, returns: int) -> int:
    """``buf.count(b"\r\n", start, stop)``, cheaply for line-wrapped base64 (every CR at a fixed
    stride and followed by LF), where counting a two-byte needle would cost as much as the rest."""
    first = buf.find(b"\r", start, stop)
    second = buf.find(b"\r", first + 1, stop)
    if second < 0:
        return int(buf.startswith(b"\n", first + 1, stop))
    stride = second - first
    carriage = buf[first:stop:stride]
    following = buf[first + 1 : stop : stride]
    if len(carriage) == returns == carriage.count(b"\r") and following.count(b"\n") == len(following):
        return len(following)
    return buf.count(b"\r\n", start, stop)


def _windows(source: Path | bytes | bytearray | memoryview) -> Iterator[tuple[Buffer, int, int]]:
    """The document as ``(buf, start, end)`` windows of at most :data:`CHUNK` bytes, without copying
    in-memory bytes; a file is read one window at a time so memory stays bounded."""
    if isinstance(source, Path):
        stream: IO[bytes]
        with source.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                yield chunk, 0, len(chunk)
        return
    if isinstance(source, memoryview):
        view = source.cast("B")
        for start in range(0, len(view), CHUNK):
            piece = bytes(view[start : start + CHUNK])
            yield piece, 0, len(piece)
        return
    for start in range(0, len(source), CHUNK):
        yield source, start, min(start + CHUNK, len(source))


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
    feeder = _Feeder(parser, builder)
    try:
        first = True
        for buf, start, end in _windows(source):
            if first:
                head = bytes(buf[start : start + 4])
                if head[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in head:
                    _require_utf8(None, "UTF-16 or UTF-32", -1)
                first = False
            feeder.window(buf, start, end)
        feeder.finish()
    except expat.ExpatError as exc:
        words = _EXPAT_WORDS.get(exc.code, expat.ErrorString(exc.code))
        line, column = feeder.position(exc.lineno, exc.offset)
        raise MalformedEdxml(f"The edXML is not well-formed XML: line {line}, column {column + 1}: {words}.") from None
    except (LookupError, UnicodeError) as exc:
        raise MalformedEdxml(
            f"The edXML cannot be decoded: line {builder.line()}: the declared encoding is not "
            f"supported or does not match the bytes ({exc}); use UTF-8."
        ) from None
    except OSError as exc:
        raise MalformedEdxml(f"The edXML file cannot be read: {exc.strerror or exc}.") from None
    if builder.root is None:
        raise MalformedEdxml("The edXML is empty: it contains no element.")
    return ParsedEdxml(builder.root, builder.contents)
