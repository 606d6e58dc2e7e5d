"""The one hardened XML reader behind the SOAP envelope and the edXML inside it.

Like zeep's single ``parse_xml``, every XML byte the gateway accepts from outside goes through the
pieces defined here, so a rule is decided once: the expat parser (:func:`create_parser`: UTF-8
only, no DOCTYPE, no entities, text delivered in large pieces), the budget every element and
character is counted against (:class:`Limits`, :class:`Guard`), the base64 checker/decoder
(:class:`Base64Text`) and the feeder that lets large base64 payloads bypass expat
(:class:`PayloadFeeder`). :mod:`gateway.soap.streaming` and :mod:`gateway.edxml.parsing` differ only
in what they do with the elements (find the operation and credentials; build a small tree) and in
the words and fault codes of their refusals (:class:`Dialect`).

Why a feeder: expat would turn every payload byte into a Python ``str`` through text callbacks, which
cost most of a send's parse time (docs/xml-hardening.md, README "Performance"). So the input is split
right after the ``>`` of any tag that may start a payload element; once the handler says such an
element started, its text up to the next ``<`` is checked (and decoded, for the envelope) as bytes,
never reaching expat, which then sees an empty element. Text expat must interpret (a character
reference, a CDATA section, anything but base64 and XML whitespace) goes to expat as usual, and
``buffer_text`` makes expat hand it over in large pieces, so its cost stays linear. Line and column
numbers reported after skipped text are compensated for its line breaks.

Why limits: the cost and memory of a parse must be linear in its input and bounded well below the
worker's memory whatever the shape of the input: one element with 110,000 attributes, 3 million
empty elements, a megabyte-long tag. Each bound is far above what real envelopes and edXML use
(docs/xml-hardening.md lists them with their reasons) and is checked when the element starts, before
anything is built from it.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeAlias
from xml.parsers import expat

import pybase64

from gateway.errors import ClientError

Buffer: TypeAlias = bytes | bytearray

CHUNK = 1 << 20
"""Bytes given to expat per call, and the most text expat buffers before one text callback."""

UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
"""Encoding declarations accepted in envelopes and edXML alike: UTF-8 and its ASCII subset."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one XML document; each is checked as the input streams, before memory is spent on it."""

    depth: int = 64
    """Nesting levels; edXML needs about 10, a SOAP envelope 5."""
    token_bytes: int = 1 << 20
    """Bytes expat may hold for one unfinished token (a tag with its attributes, a comment, a PI): expat
    cannot report such a token until it ends, so it buffers all of it."""
    attributes: int = 64
    """Attributes on one element (namespace declarations excluded); real edXML uses at most a handful."""
    attributes_total: int = 20_000
    """Attributes in the whole document: 64 on each of 20,000 elements would cost about 330 MB of tree."""
    elements: int = 20_000
    """Elements in the whole document."""
    children: int = 1_000
    """Child elements of one element (the longest real lists, ToPlaces/Place and To, stay far below)."""
    text: int = 1 << 20
    """Characters of text in one element, payloads excluded."""
    markup: int = 8 << 20
    """Characters kept per document: element and attribute names, attribute values and text, payloads
    excluded. This is what a tree built from the document holds."""


EDXML_LIMITS = Limits()
"""edXML documents: 20,000 elements, 1,000 children per element, 8 MiB of header markup and text."""

ENVELOPE_LIMITS = Limits(elements=2_000, attributes_total=2_000, children=1_000, text=1 << 20, markup=1 << 20)
"""SOAP envelopes: a request has a few dozen elements; Spyne parses the envelope (payload removed) again."""


@dataclass(frozen=True)
class Dialect:
    """How one kind of document names itself and which fault its refusals carry."""

    subject: str
    """"The request", "The edXML": how messages start."""
    error: type[ClientError]
    """Fault for malformed or refused XML."""
    oversize: type[ClientError]
    """Fault for an over-long token."""
    payload_words: str
    """What may be large, for the over-long token message ("the edXML document")."""
    doctype_reason: str
    """Why a DOCTYPE is refused, in the words of this document kind."""
    utf8_advice: str
    """What to do about a document in another encoding."""
    limits: Limits


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


def not_utf8(dialect: Dialect, encoding: str) -> ClientError:
    """The refusal of a document in another encoding (QCVN 102 and the gateway's SOAP interface are UTF-8)."""
    return dialect.error(f"{dialect.subject} is encoded in {encoding}; {dialect.utf8_advice}")


def check_first_bytes(head: bytes, dialect: Dialect) -> None:
    """Refuse UTF-16/32 by their byte order mark or zero bytes; expat is told the input is UTF-8."""
    if head[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in head[:4]:
        raise not_utf8(dialect, "UTF-16 or UTF-32")


def create_parser(dialect: Dialect) -> Any:
    """An expat parser that reads UTF-8 only, refuses DTDs and entities, and buffers text in large pieces.

    Forcing UTF-8 is what makes ``encoding="utf8"`` work at all: expat knows only "UTF-8" by that
    name and would ask Python's codecs, which cannot describe a multi-byte encoding to it.
    """
    parser = expat.ParserCreate(encoding="utf-8", namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = CHUNK

    def refuse_doctype(*_args: object) -> None:
        raise dialect.error(f"{dialect.subject} contains a DOCTYPE declaration. {dialect.doctype_reason}")

    def refuse_entity(*_args: object) -> NoReturn:
        raise dialect.error(
            f"{dialect.subject} declares or references an external entity; the gateway refuses entities."
        )

    def require_utf8(_version: str | None, encoding: str | None, _standalone: int) -> None:
        if encoding is not None and encoding.lower() not in UTF8_NAMES:
            raise not_utf8(dialect, encoding)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_entity
    parser.XmlDeclHandler = require_utf8
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    if hasattr(parser, "SetReparseDeferralEnabled"):
        # expat 2.6 (Python 3.13, 3.12.3+) defers parsing an unfinished token until more input
        # arrives, its own guard against quadratic re-scans of huge tokens. The reader bounds tokens
        # itself (Limits.token_bytes) and relies on expat reporting each piece as it is fed, as
        # expat 2.5 (Python 3.11) does; deferral made character references fed a byte at a time fail.
        parser.SetReparseDeferralEnabled(False)
    return parser


def syntax_error(exc: expat.ExpatError, dialect: Dialect, line: int, column: int) -> ClientError:
    """An expat error as a sentence a clerk can act on; ``line``/``column`` already compensated (1-based)."""
    words = _EXPAT_WORDS.get(exc.code, expat.ErrorString(exc.code))
    return dialect.error(f"{dialect.subject} is not well-formed XML: line {line}, column {column}: {words}.")


class Guard:
    """Counts every element, attribute and character of a document against its :class:`Limits`.

    Handlers call :meth:`start` from expat's start-element callback before doing anything with the
    element, :meth:`end` from the end callback and :meth:`text` for every piece of text they keep, so
    a document is refused at the first element or character over a bound.
    """

    def __init__(self, dialect: Dialect, line: Callable[[], int]) -> None:
        self.dialect = dialect
        self.limits = dialect.limits
        self.line = line
        self.children: list[int] = [0]
        """Child elements so far of each open element (the first entry counts root elements)."""
        self.texts: list[int] = [0]
        self.names: list[str] = ["the document"]
        self.elements = 0
        self.attributes = 0
        self.markup = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        limits, children = self.limits, self.children
        if len(children) > limits.depth:  # children has one entry per open element, plus the document
            self.refuse(f"elements are nested more than {limits.depth} levels deep")
        if len(attrs) > limits.attributes:
            self.refuse(
                f"the element {_local(name)} has {len(attrs)} attributes; at most {limits.attributes} are allowed"
            )
        self.elements += 1
        if self.elements > limits.elements:
            self.refuse(f"it has more than {limits.elements:,} elements")
        children[-1] += 1
        if children[-1] > limits.children:
            self.refuse(f"{self.names[-1]} has more than {limits.children:,} child elements")
        size = len(name)
        if attrs:
            self.attributes += len(attrs)
            if self.attributes > limits.attributes_total:
                self.refuse(f"it has more than {limits.attributes_total:,} attributes")
            size += sum(len(key) + len(value) for key, value in attrs.items())
        self._count_markup(size)
        children.append(0)
        self.texts.append(0)
        self.names.append(_local(name))

    def end(self) -> None:
        self.children.pop()
        self.texts.pop()
        self.names.pop()

    def text(self, size: int) -> None:
        self.texts[-1] += size
        if self.texts[-1] > self.limits.text:
            self.refuse(f"the text of {self.names[-1]} is longer than {self.limits.text:,} characters")
        self._count_markup(size)

    def _count_markup(self, size: int) -> None:
        self.markup += size
        if self.markup > self.limits.markup:
            self.refuse(
                f"its markup and text (not counting {self.dialect.payload_words}) exceed "
                f"{self.limits.markup // (1 << 20)} MiB"
            )

    def refuse(self, what: str) -> None:
        raise self.dialect.error(f"{self.dialect.subject} is not acceptable XML: line {self.line()}: {what}.")


def _local(name: str) -> str:
    return name.rpartition(" ")[2]


class Sink(Protocol):
    """Where decoded payload bytes go (the blob store's staging file)."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


_XML_SPACE = b" \t\r\n"
_SPACES = (b"\n", b" ", b"\r", b"\t")
"""Most stacks send base64 on one line: four memchr scans are cheaper than copying it to strip nothing."""
_BASE64_DIGITS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BASE64_BYTES = _BASE64_DIGITS + b"="
_STR_WHITESPACE = {ord(c): None for c in " \t\r\n"}
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")
_CHECK_PIECE = 1 << 16
"""Without a sink, text is decoded (only to validate it) in pieces this big: larger outputs come from
fresh pages (mmap) every time, which cost more than the decoding itself."""


class Base64Text:
    """Checks, and with a ``sink`` decodes, base64 text that arrives in arbitrary pieces.

    The same rules whether the text is skipped past expat as bytes (:meth:`take`) or handed over by
    expat (:meth:`feed`): XML whitespace is ignored, ``=`` only at the end, whole quanta of four.
    The first problem is kept in ``error`` (the edXML reader reports it as a schema issue with the
    attachment's line) or, given ``refuse``, raised at once (the envelope reader); everything after
    it is ignored.
    """

    def __init__(
        self, line: int = 0, sink: Sink | None = None, refuse: Callable[[str], Exception] | None = None
    ) -> None:
        self.line = line
        self.sink = sink
        self.refuse = refuse
        self.chars = 0
        self.padding = 0
        self.error: str | None = None
        self._carry = b""

    @property
    def size(self) -> int:
        """Decoded byte count."""
        return self.chars // 4 * 3 - self.padding

    def take(self, buf: Buffer, start: int, stop: int) -> Buffer | None:
        """Accept raw ``buf[start:stop]`` if it is plain base64 and XML whitespace.

        Returns the whitespace it held (for line counting), or None when the text needs expat: a
        reference or, when only checking, any character outside base64 (expat then judges it as XML).
        When decoding, such characters are simply not base64: the decoder refuses them itself, so the
        send path pays for one decoding pass, not a check and a decoding.
        """
        if start >= stop:
            return b""
        if self._take_plain(buf, start, stop):
            return b""
        if buf.find(b"&", start, stop) >= 0:
            return None
        spaced = any(buf.find(space, start, stop) >= 0 for space in _SPACES)
        if spaced:
            data: Buffer = buf[start:stop].translate(None, _XML_SPACE)
            begin, end = 0, len(data)
        else:
            data, begin, end = buf, start, stop
        checked = self.sink is not None or self._alphabet_ok(data, begin, end)
        if not checked and data[begin:end].translate(None, _BASE64_BYTES):
            return None
        spaces = buf[start:stop].translate(None, _BASE64_BYTES) if spaced else b""
        self._accept(data, begin, end)
        return spaces

    def _take_plain(self, buf: Buffer, start: int, stop: int) -> bool:
        """Accept ``buf[start:stop]`` in one pass if it is base64 without whitespace, references or padding.

        That is how stubs send a document (whitespace, if any, comes at line ends): pybase64's
        validating decoder then finds any other byte itself, so the text is checked (and, with a
        sink, decoded) without first scanning it six times for ``&``, whitespace and ``=``, which
        cost about 0.3 ms of a 1.8 MB send (docs/performance.md). On anything else nothing has
        changed when it returns False, and :meth:`take` judges the text byte by byte.
        """
        if self.error is not None or self.padding:
            return False
        view = memoryview(buf)
        head = min((-self.chars) % 4, stop - start)
        whole = start + head + (stop - start - head) // 4 * 4
        carry, rest = self._carry + bytes(view[start : start + head]), bytes(view[whole:stop])
        if (carry + rest).translate(None, _BASE64_DIGITS):  # the carry too: with a sink, any byte may wait there
            return False
        decoded = []
        step = CHUNK if self.sink is not None else _CHECK_PIECE
        try:
            for piece in range(start + head, whole, step):
                end = min(piece + step, whole)
                if view[end - 1] == ord("="):
                    return False
                data = pybase64.b64decode(view[piece:end], validate=True)
                if self.sink is not None:
                    decoded.append(data)
        except (binascii.Error, ValueError):
            return False
        self.chars += stop - start
        if self.sink is not None:
            if len(carry) == 4:
                self.sink.write(pybase64.b64decode(carry, validate=True))
                carry = b""
            for data in decoded:
                self.sink.write(data)
            self._carry = carry + rest
        return True

    def feed(self, text: str) -> None:
        """Account for (and decode) one piece of text expat reported."""
        if self.error is not None:
            return
        compact = text.translate(_STR_WHITESPACE)
        if not compact:
            return
        if _NOT_BASE64.search(compact):
            self._fail("contains characters that are not base64")
            return
        data = compact.encode("ascii")
        self._accept(data, 0, len(data))

    def finish(self) -> None:
        """Check the total length once the element is closed; flush the sink."""
        if self.error is None and (self.chars % 4 or self.padding > 2):
            self._fail("is truncated or has a wrong length (base64 comes in groups of 4 characters)")
        if self.sink is not None and self.error is None:
            self.sink.flush()

    def _fail(self, error: str) -> None:
        self.error = error
        if self.refuse is not None:
            raise self.refuse(error)

    def _alphabet_ok(self, data: Buffer, begin: int, end: int) -> bool:
        """Without a sink: whether ``data[begin:end]`` holds only base64 characters.

        pybase64's SIMD decoder checks whole quanta (where the stream's quanta fall) far faster than
        ``translate`` could; the one to three characters around them are checked by hand.
        """
        head = min((-self.chars) % 4, end - begin)
        whole = begin + head + (end - begin - head) // 4 * 4
        view = memoryview(data)
        try:
            for piece in range(begin + head, whole, _CHECK_PIECE):
                pybase64.b64decode(view[piece : min(piece + _CHECK_PIECE, whole)], validate=True)
        except (binascii.Error, ValueError):
            return False
        return not data[begin : begin + head].translate(None, _BASE64_BYTES) and not data[whole:end].translate(
            None, _BASE64_BYTES
        )

    def _accept(self, data: Buffer, begin: int, end: int) -> None:
        """Apply the padding rules to whitespace-free base64 characters ``data[begin:end]``, then decode."""
        if self.error is not None or begin >= end:
            return
        if self.padding:
            if data[begin:end].translate(None, b"="):
                self._fail("has data after the '=' padding")
                return
            self.padding += end - begin
        else:
            first_pad = data.find(b"=", begin, end)
            if first_pad >= 0:
                tail = data[first_pad:end]
                if tail.translate(None, b"="):
                    self._fail("has '=' in the middle of the data")
                    return
                self.padding = len(tail)
        self.chars += end - begin
        if self.sink is not None:
            self._decode(data, begin, end)

    def _decode(self, data: Buffer, begin: int, end: int) -> None:
        """Decode whole quanta into the sink; the one to three characters of an unfinished one wait.

        A waiting quantum is completed from the head of the next piece and decoded on its own, so a
        megabyte piece is never copied just to prepend three characters to it.
        """
        assert self.sink is not None
        try:
            if self._carry:
                need = min(4 - len(self._carry), end - begin)
                self._carry += data[begin : begin + need]
                begin += need
                if len(self._carry) < 4:
                    return
                self.sink.write(pybase64.b64decode(self._carry, validate=True))
                self._carry = b""
            whole = end - (end - begin) % 4
            self._carry = bytes(data[whole:end])
            view = memoryview(data)
            for piece in range(begin, whole, CHUNK):
                self.sink.write(pybase64.b64decode(view[piece : min(piece + CHUNK, whole)], validate=True))
        except (binascii.Error, ValueError):
            self._fail("is not valid base64")


_TAG_PREFIX = re.compile(rb"(?:[^\s<>/!?:=\"']+:)?")
"""What may stand between ``<`` and the element name in a start tag: nothing or ``prefix:``."""

_LOOKBACK = 256
"""Bytes searched backwards for the ``<`` before the name; with none that close, it may be a start tag."""

MAX_MISSES = 1024
"""Extra expat calls (splits that started no payload) allowed before the fast path gives up, so input
crafted with many look-alikes of the payload's start tag (in comments, CDATA) costs at most this many
small calls more than plain expat would."""


PARSE_PIECE = 64 * 1024
"""Most bytes given to expat in one call, so that no single call does much more than linear work."""

DEFER_FLOOR = 64 * 1024
"""Unfinished-token size from which new bytes are held back until they double it (see ``PayloadFeeder._parse``)."""

_ATTRIBUTE = re.compile(rb"""\s[^\s=<>"'/]+\s*=\s*(?:"[^"<]*"|'[^'<]*')""")
"""One attribute in raw bytes (``<`` cannot occur in attribute values), to count them in a long start tag."""


class PayloadFeeder:
    """Feeds expat, except payload text: that is checked (or decoded) as bytes and skipped.

    The handler sets :attr:`awaiting` to a :class:`Base64Text` from its start-element callback when
    the element is a payload. Works window by window (``buf[start:end]``, at most :data:`CHUNK`
    bytes), so expat is never given more than a window at once and the unfinished-token guard runs
    after every call. ``after_feed(view, start, end)`` sees every byte given to expat, after expat
    has parsed it (the envelope reader keeps them to rebuild the envelope without its payload).
    """

    def __init__(
        self,
        parser: Any,
        dialect: Dialect,
        payload_name: bytes,
        after_feed: Callable[[memoryview, int, int], None] | None = None,
    ) -> None:
        self.parser = parser
        self.dialect = dialect
        self.payload_name = payload_name
        self.after_feed = after_feed
        self.fed = 0
        """Bytes given to expat (skipped text excluded)."""
        self.awaiting: Base64Text | None = None
        """Set by the handler when a payload element just started; read and cleared after each expat call."""
        self.skipped_lines = 0
        """Line breaks in payload text that bypassed expat, so expat did not count them."""
        self._content: Base64Text | None = None
        """The payload whose text is being skipped; ``None`` while feeding expat."""
        self._hot = False
        """Inside a tag that may be a payload's start tag: split after each ``>``."""
        self._fast = True
        """Whether to look for payload start tags at all; off once :data:`MAX_MISSES` is spent."""
        self._misses = 0
        self._deferred = bytearray()
        """Bytes held back from expat while it holds a long unfinished token (see :meth:`_parse`)."""
        self._in_start_tag = False
        """Whether the token expat holds unfinished is a start tag."""
        self._attributes_seen = 0
        self._after_cr = False
        """Skipped text ended with CR at a window end; an LF next completes that line break."""
        self._column_line = 0
        self._column_shift = 0
        """Columns expat reports on its line ``_column_line`` are short by this many characters."""

    def line(self) -> int:
        """The current line in the document, counting line breaks expat never saw."""
        return int(self.parser.CurrentLineNumber) + self.skipped_lines

    def window(self, buf: Buffer, start: int, end: int) -> None:
        """Process ``buf[start:end]``, the next bytes of the document."""
        view = memoryview(buf)
        self._hot = self._fast
        pos = start
        while pos < end:
            pos = self._markup(buf, view, pos, end) if self._content is None else self._skip_text(buf, pos, end)

    def finish(self) -> None:
        """Tell expat the document ended (it reports an unclosed element or missing root)."""
        if self._deferred:
            data = memoryview(bytes(self._deferred))
            self._deferred.clear()
            self.parser.Parse(data, False)
            self.fed += len(data)
            if self.after_feed is not None:
                self.after_feed(data, 0, len(data))
        self.parser.Parse(b"", True)

    def position(self, line: int, column: int) -> tuple[int, int]:
        """An expat-reported position (column 0-based) as a place in the document (column 1-based)."""
        shift = self._column_shift if line == self._column_line else 0
        return line + self.skipped_lines, column + shift + 1

    def _feed(self, view: memoryview, start: int, end: int) -> Base64Text | None:
        """Give ``view[start:end]`` to expat; return the payload if these bytes ended with its start tag."""
        self.awaiting = None
        for piece in range(start, end, PARSE_PIECE):
            self._parse(view, piece, min(piece + PARSE_PIECE, end))
        started, self.awaiting = self.awaiting, None
        return started

    def _parse(self, view: memoryview, start: int, end: int) -> None:
        """One expat call of at most :data:`PARSE_PIECE` bytes, keeping the cost of long tokens linear.

        expat 2.5 re-scans an unfinished token from its start on every call, and one start tag with
        tens of thousands of attributes costs it more than linear time. So while expat holds an
        unfinished token longer than :data:`DEFER_FLOOR`, new bytes are held back until they at least
        double it (the re-scans form a geometric series: the "reparse deferral" of expat 2.6), and if
        that token is a start tag, the attributes in the held-back bytes are counted: more than the
        limit refuses the tag before expat ever sees them.
        """
        limit = self.dialect.limits.token_bytes
        held = self.fed - max(self.parser.CurrentByteIndex, 0)
        if self._deferred or held > DEFER_FLOOR:
            if self._in_start_tag:
                self._attributes_seen += sum(1 for _ in _ATTRIBUTE.finditer(view[start:end]))
                if self._attributes_seen > self.dialect.limits.attributes:
                    self._guard_refusal(
                        f"a start tag longer than {DEFER_FLOOR // 1024} KiB has more than "
                        f"{self.dialect.limits.attributes} attributes"
                    )
            self._deferred += view[start:end]
            if held + len(self._deferred) > limit:
                self._too_long(limit)
            if len(self._deferred) < held:
                return
            view, start, end = memoryview(bytes(self._deferred)), 0, len(self._deferred)
            self._deferred.clear()
        self.parser.Parse(view[start:end], False)
        self.fed += end - start
        if self.after_feed is not None:
            self.after_feed(view, start, end)
        index = self.parser.CurrentByteIndex
        if self.fed - max(index, 0) > limit:
            self._too_long(limit)
        first = self.fed - (end - start)
        if index >= first:
            head = bytes(view[start + index - first : start + index - first + 2])
            self._in_start_tag = head[:1] == b"<" and head[1:2] not in (b"!", b"?", b"/")
            self._attributes_seen = 0

    def _guard_refusal(self, what: str) -> None:
        raise self.dialect.error(f"{self.dialect.subject} is not acceptable XML: line {self.line()}: {what}.")

    def _too_long(self, limit: int) -> None:
        raise self.dialect.oversize(
            f"{self.dialect.subject} has a tag, attribute, comment or processing instruction longer than "
            f"{limit // 1024} KiB (near line {self.line()}); only {self.dialect.payload_words} may be "
            "that large."
        )

    def _markup(self, buf: Buffer, view: memoryview, pos: int, end: int) -> int:
        """Feed expat up to just after a possible payload start tag; return where to go on."""
        if self._hot:
            gt = buf.find(b">", pos, end)
            lt = buf.find(b"<", pos, end if gt < 0 else gt)
            if gt < 0 or lt >= 0:
                self._hot = lt < 0
                stop = end if lt < 0 else lt
                self._content = self._feed(view, pos, stop)
                return stop
            self._content = self._feed(view, pos, gt + 1)
            if self._content is not None:
                self._hot = False
            else:
                self._misses += 1
                self._fast = self._misses <= MAX_MISSES
                self._hot = self._fast
            return gt + 1
        name = self.payload_name
        found = buf.find(name, pos, end) if self._fast else -1
        while found >= 0 and not self._may_start_tag(buf, found):
            found = buf.find(name, found + len(name), end)
        if found < 0:
            self._content = self._feed(view, pos, end)
            return end
        self._content = self._feed(view, pos, found)
        self._hot = True
        return found

    @staticmethod
    def _may_start_tag(buf: Buffer, name_at: int) -> bool:
        """Whether the name at ``name_at`` may be an element name in a start tag (not an end tag or text)."""
        lt = buf.rfind(b"<", max(name_at - _LOOKBACK, 0), name_at)
        return lt < 0 or _TAG_PREFIX.fullmatch(buf, lt + 1, name_at) is not None

    def _skip_text(self, buf: Buffer, pos: int, end: int) -> int:
        """Check and skip payload text up to the next ``<``; return where expat takes over again.

        The window's part of the text is judged whole: if any of it needs expat, all of it goes to
        expat, so expat's text callbacks (and thus which '=' message appears) start where they did.
        """
        content = self._content
        assert content is not None
        lt = buf.find(b"<", pos, end)
        stop = end if lt < 0 else lt
        spaces = content.take(buf, pos, stop)
        if spaces is None:
            if self._after_cr and buf.startswith(b"\n", pos):
                self.skipped_lines -= 1
            self._after_cr = False
            self._content = None
            return pos
        if pos < stop:
            self._count_lines(buf, pos, stop, spaces)
        if lt < 0:
            return end
        self._after_cr = False
        self._content = None
        return lt

    def _count_lines(self, buf: Buffer, start: int, stop: int, spaces: Buffer) -> None:
        """Record the line breaks of skipped ``buf[start:stop]`` (whose whitespace bytes, in order,
        are ``spaces``) as expat counts them: CR LF, lone CR and lone LF each end one line."""
        line_feeds = spaces.count(b"\n")
        returns = spaces.count(b"\r")
        breaks = line_feeds + returns - (_crlf_count(buf, start, stop, returns) if returns else 0)
        if self._after_cr and buf.startswith(b"\n", start):
            breaks -= 1
        self._after_cr = buf.endswith(b"\r", start, stop)
        self.skipped_lines += breaks
        line, column = self.parser.CurrentLineNumber, self.parser.CurrentColumnNumber
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
