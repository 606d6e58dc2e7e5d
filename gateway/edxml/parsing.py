"""Hardened, streaming edXML parser: bytes or file in, small lxml tree out.

Why not ``lxml.etree.parse``: a 50 MB document is almost all one base64 text node, and libxml2
would hold it whole (and lxml copy it again to read it). Here expat streams the input and
``ContentTransferEncoded`` text is checked chunk by chunk, so the tree keeps every element,
attribute, line number and text *except* attachment contents; their decoded size and base64
validity are recorded in :class:`ParsedEdxml.contents`. Memory stays near the header size.

The tree is built one of two ways. A plain document (as edXML software writes it) is surveyed by
expat, every bound checked and the header markup kept, and libxml2 builds the header from that
markup; :class:`_TreeBuilder` builds every other tree element by element from expat's callbacks,
and gives every refusal. Both give the same tree (tests/edxml/test_edxml_libxml2_build.py).

Everything that makes this safe and fast is shared with the SOAP envelope reader and lives in
:mod:`gateway.safexml`: the parser (UTF-8 only, DOCTYPE and entities refused, so no XXE or billion
laughs), the :class:`~gateway.safexml.Limits` every element is counted against before lxml builds it
(:data:`~gateway.safexml.EDXML_LIMITS`: 20,000 elements, 64 attributes each, 1,000 children per
element, 8 MiB of header markup), the base64 checker and the feeder that lets attachment text
bypass expat. All parse failures become :class:`~gateway.errors.MalformedEdxml` with a line and
column a clerk can look up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

from lxml import etree

from gateway import safexml
from gateway.edxml.ns import PREFIXES
from gateway.errors import MalformedEdxml
from gateway.safexml import CHUNK, EDXML_LIMITS, Base64Text, Buffer, Limits

ENCODED_CONTENT = "ContentTransferEncoded"
_ENCODED_NAME = " " + ENCODED_CONTENT

EncodedContent = Base64Text
"""What streaming learnt about one ``ContentTransferEncoded``: decoded size, or why it is not base64."""

Input = Path | bytes | bytearray | memoryview
"""An edXML document: a file, or its bytes in memory."""


def dialect(limits: Limits = EDXML_LIMITS) -> safexml.Dialect:
    """How edXML refusals are worded: MalformedEdxml, "The edXML ..."."""
    return safexml.Dialect(
        subject="The edXML",
        error=MalformedEdxml,
        oversize=MalformedEdxml,
        payload_words="attachment contents",
        doctype_reason=(
            "edXML never needs one, and DOCTYPEs can hide entity tricks that read server files or exhaust "
            "memory, so the gateway refuses them."
        ),
        utf8_advice="QCVN 102 documents must be encoded in UTF-8. Save the file as UTF-8 and send it again.",
        limits=limits,
    )


_DIALECT = dialect()


@dataclass
class ParsedEdxml:
    """A parsed edXML message: the tree (attachment contents left empty) and their stream summaries."""

    root: etree._Element
    contents: dict[etree._Element, EncodedContent] = field(default_factory=dict)


class _Open:
    """An element expat has opened and not yet closed, with the text it has collected so far."""

    __slots__ = ("children", "element", "encoded", "parts", "tail_parts")

    def __init__(self, element: etree._Element, encoded: EncodedContent | None) -> None:
        self.element = element
        self.encoded = encoded
        self.parts: list[str] = []
        self.tail_parts: list[str] = []
        self.children = 0
        """Counted here because ``len()`` of an lxml element walks its children: quadratic with many."""


def _is_attachment(expat_name: str) -> bool:
    """Whether expat's ``"uri local"`` name is a ``ContentTransferEncoded``, in any namespace or none."""
    return expat_name.endswith(_ENCODED_NAME) or expat_name == ENCODED_CONTENT


def _expat_reader(
    rules: safexml.Dialect, after_feed: Callable[[memoryview, int, int], None] | None = None
) -> tuple[Any, safexml.PayloadFeeder, safexml.Guard]:
    """The hardened expat parser, the feeder that lets attachment text bypass it, and the guard of
    every bound: what both builds read a document with."""
    parser = safexml.create_parser(rules)
    feeder = safexml.PayloadFeeder(parser, rules, ENCODED_CONTENT.encode("ascii"), after_feed)
    return parser, feeder, safexml.Guard(rules, feeder.line)


class _TreeBuilder:
    """Expat callbacks that build the lxml tree, keeping line numbers for error messages.

    Every element passes the :class:`~gateway.safexml.Guard` before lxml sees it: lxml's cost for
    one element grows with the square of its attributes (40,000 took seconds), and a tree costs
    hundreds of bytes per element, so the bounds must hold before anything is built.
    """

    def __init__(self, feeder: safexml.PayloadFeeder, guard: safexml.Guard) -> None:
        self._feeder = feeder
        self._guard = guard
        self._stack: list[_Open] = []
        self.root: etree._Element | None = None
        self.contents: dict[etree._Element, EncodedContent] = {}

    def line(self) -> int:
        return self._feeder.line()

    def start(self, name: str, attrs: dict[str, str]) -> None:
        # Called for every element: written for few calls and no work an element without attributes
        # does not need (docs/performance.md, "Staging small documents in memory, and a cheaper
        # header build").
        self._guard.start(name, attrs)
        tag = _clark(name)
        line = self._feeder.line()
        try:
            element = self._attach(tag, {_clark(key): value for key, value in attrs.items()} if attrs else None)
        except ValueError as exc:
            raise MalformedEdxml(f"The edXML is not acceptable XML: line {line}: {exc}.") from None
        element.sourceline = line  # type: ignore[misc]  # read-write in lxml; types-lxml stubs it read-only
        encoded = None
        if _is_attachment(name):
            encoded = self.contents[element] = EncodedContent(line=line)
        self._feeder.awaiting = encoded
        self._stack.append(_Open(element, encoded))

    def _attach(self, tag: str, attrib: dict[str, str] | None) -> etree._Element:
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
        self._feeder.awaiting = None
        self._guard.end()
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
                self._guard.text(len(text))
                top.tail_parts.append(text)
            return
        self._guard.text(len(text))
        top.parts.append(text)


_CLARK_NAMES: dict[str, str] = {}
"""Names already translated by :func:`_clark`: at most :data:`_CLARK_CACHED` of them, none longer than
:data:`_CLARK_LONGEST` characters, so names a sender makes up cannot make it hold much memory."""
_CLARK_CACHED = 1024
_CLARK_LONGEST = 256


def _clark(expat_name: str) -> str:
    """Expat's ``"uri local"`` to lxml's ``"{uri}local"``."""
    known = _CLARK_NAMES.get(expat_name)
    if known is not None:
        return known
    uri, sep, local = expat_name.rpartition(" ")
    clark = f"{{{uri}}}{local}" if sep else local
    if len(expat_name) <= _CLARK_LONGEST and len(_CLARK_NAMES) < _CLARK_CACHED:
        _CLARK_NAMES[expat_name] = clark
    return clark


_KNOWN_URIS = frozenset(PREFIXES.values())


class _NotPlain(Exception):
    """Raised from the survey's callbacks: the document needs :class:`_TreeBuilder`."""


class _Survey:
    """Expat callbacks for the libxml2 build: every bound checked, attachments summarised, no tree.

    It keeps the markup expat was given (attachment text skipped) for libxml2, each element's line
    and which elements are attachments, so that the tree libxml2 builds can be given what
    :class:`_TreeBuilder` gives its own. It gives up (:class:`_NotPlain`) where the two trees could
    differ: a namespace other than edXML's three or bound to another of their prefixes (the builder
    names elements with :data:`~gateway.edxml.ns.PREFIXES`), a name outside ASCII (lxml's checks of
    names are not expat's), an element inside an attachment, and markup longer than one element's
    text may be (:attr:`Limits.text`), so that text, which this pass does not count, stays within
    every bound. Other text is judged after the build (:meth:`tree`).
    """

    __slots__ = ("_guard", "_parser", "_room", "feeder", "lines", "markup", "open", "payloads")

    def __init__(self, rules: safexml.Dialect) -> None:
        parser, self.feeder, self._guard = _expat_reader(rules, self.keep)
        self._parser = parser
        self._room = rules.limits.text
        self.markup = bytearray()
        self.lines: list[int] = []
        self.payloads: dict[int, EncodedContent] = {}
        """Attachment summaries by the element's place in document order."""
        self.open: EncodedContent | None = None
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.StartNamespaceDeclHandler = self.namespace

    def keep(self, view: memoryview, start: int, end: int) -> None:
        if len(self.markup) + end - start > self._room:
            raise _NotPlain
        self.markup += view[start:end]

    def namespace(self, prefix: str | None, uri: str | None) -> None:
        if uri not in _KNOWN_URIS or (prefix is not None and PREFIXES.get(prefix, uri) != uri):
            raise _NotPlain

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self._guard.start(name, attrs)
        if self.open is not None or not name.isascii() or (attrs and not all(key.isascii() for key in attrs)):
            raise _NotPlain
        line = self.feeder.line()
        encoded = None
        if _is_attachment(name):
            encoded = self.open = self.payloads[len(self.lines)] = EncodedContent(line=line)
            self._parser.CharacterDataHandler = encoded.feed
        self.feeder.awaiting = encoded
        self.lines.append(line)

    def end(self, _name: str) -> None:
        self.feeder.awaiting = None
        self._guard.end()
        if self.open is not None:
            self.open.finish()
            self.open = None
            self._parser.CharacterDataHandler = None

    def fits(self) -> bool:
        """Whether names, attributes and all the markup's text together stay within :attr:`Limits.markup`."""
        return self._guard.markup + len(self.markup) <= self._guard.limits.markup

    def tree(self, root: etree._Element) -> ParsedEdxml | None:
        """``root`` given the builder's lines, attachment summaries and text; None if it is not the builder's.

        The builder keeps an element's text when it has no child elements, or when it is more than
        whitespace; whitespace between elements is dropped. Text after a child element that is more
        than whitespace (mixed content, which edXML never has) the builder keeps in a way that
        depends on how expat split it: such a tree goes back to the builder.
        """
        lines, payloads = self.lines, self.payloads
        contents: dict[etree._Element, EncodedContent] = {}
        count = len(lines)
        index = 0
        for element in root.iter():
            if index == count:
                return None
            element.sourceline = lines[index]  # type: ignore[misc]  # read-write in lxml, as in _TreeBuilder
            tail = element.tail
            if tail is not None:
                if tail.strip():
                    return None
                element.tail = None
            encoded = payloads.get(index)
            if encoded is not None:
                element.text = ""
                contents[element] = encoded
            elif len(element):
                text = element.text
                if text is not None and not text.strip():
                    element.text = None
            index += 1
        return ParsedEdxml(root, contents) if index == count else None


def _libxml2_parser() -> etree.XMLParser:
    """libxml2 as the survey leaves it to build: no DTD, entity or network; comments and PIs dropped.

    A new one per document (0.3 µs): lxml's parsers must not be shared between threads.
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _built_by_libxml2(source: Input, rules: safexml.Dialect) -> ParsedEdxml | None:
    """The tree of a plain document, built by libxml2 after expat's survey; None for the builder to do."""
    survey = _Survey(rules)
    try:
        _feed_all(source, rules, survey.feeder)
    except (MalformedEdxml, _NotPlain):
        return None
    if not survey.lines or not survey.fits():
        return None
    try:
        root = etree.fromstring(bytes(survey.markup), _libxml2_parser())
    except etree.XMLSyntaxError:
        return None
    return survey.tree(root)


def _windows(source: Input) -> Iterator[tuple[Buffer, int, int]]:
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


def parse(source: Input, limits: Limits = EDXML_LIMITS) -> ParsedEdxml:
    """Parse edXML from a file or bytes; never loads DTDs or entities, never holds attachment text.

    A plain document (the common case: see :class:`_Survey`) is surveyed by expat, which checks it
    against every bound, and its header is then built by libxml2: 0.11-0.13 ms less per document
    than building it through expat's callbacks (docs/performance.md, "The header built by
    libxml2"). Anything else, and every document the survey or libxml2 would refuse, goes through
    :class:`_TreeBuilder`, whose refusals are the ones a sender sees. ``limits`` exists for tests
    that measure how cost grows past the production bounds.
    """
    rules = _DIALECT if limits is EDXML_LIMITS else dialect(limits)
    return _built_by_libxml2(source, rules) or _built_by_expat(source, rules)


def _built_by_expat(source: Input, rules: safexml.Dialect) -> ParsedEdxml:
    """The tree built element by element from expat's callbacks, each bound checked before lxml builds."""
    parser, feeder, guard = _expat_reader(rules)
    builder = _TreeBuilder(feeder, guard)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    _feed_all(source, rules, feeder)
    if builder.root is None:
        raise MalformedEdxml("The edXML is empty: it contains no element.")
    return ParsedEdxml(builder.root, builder.contents)


def _feed_all(source: Input, rules: safexml.Dialect, feeder: safexml.PayloadFeeder) -> None:
    """Give the whole document to ``feeder``; every failure becomes MalformedEdxml with its place."""
    try:
        first = True
        for buf, start, end in _windows(source):
            if first:
                safexml.check_first_bytes(bytes(buf[start : start + 4]), rules)
                first = False
            feeder.window(buf, start, end)
        feeder.finish()
    except expat.ExpatError as exc:
        line, column = feeder.position(exc.lineno, exc.offset)
        raise safexml.syntax_error(exc, rules, line, column) from None
    except (LookupError, UnicodeError) as exc:
        raise MalformedEdxml(
            f"The edXML cannot be decoded: line {feeder.line()}: the declared encoding is not "
            f"supported or does not match the bytes ({exc}); use UTF-8."
        ) from None
    except OSError as exc:
        raise MalformedEdxml(f"The edXML file cannot be read: {exc.strerror or exc}.") from None
