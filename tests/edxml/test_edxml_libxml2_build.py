"""The header built by libxml2 is the tree the expat builder gives, or the builder builds it.

``parse()`` surveys a plain document with expat and lets libxml2 build its header; anything the
survey gives up on, and every document it or libxml2 refuses, goes to the expat builder, whose
refusals senders see (gateway/edxml/parsing.py; docs/performance.md, "The header built by
libxml2"). These tests hold the two builds equal, element by element (tag, attributes, text, tail,
line, attachment summary), on every sample and on generated variants of the writer's documents,
and check that each case the survey gives up on is built by the builder.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from edxml_samples import INVALID, VALID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.letters import letter_message

from gateway.edxml import AttachmentSource, document_bytes, parsing, read_document
from gateway.edxml.ns import DSIG, QCVN
from gateway.edxml.parsing import ParsedEdxml, parse
from gateway.errors import ClientError, MalformedEdxml
from gateway.safexml import Limits

RULES = parsing.dialect()
NOW = datetime(2016, 4, 1, 8, 30, 0)
MESSAGE = replace(
    letter_message("000.00.00.G22", ["000.00.00.H41", "000.00.00.H14"]),
    subject="V/v kết nối & liên thông <phần mềm>",  # escaped by the writer, read back by both builds
)
SAMPLES = sorted([*VALID.glob("*.edxml"), *INVALID.glob("*.edxml")])
TAG = re.compile(rb"<(/?)([A-Za-z_][\w.:-]*)")


def _document(*raws: bytes) -> bytes:
    sources = [AttachmentSource(f"a{i}.bin", "application/octet-stream", data=raw) for i, raw in enumerate(raws)]
    return document_bytes(MESSAGE, sources, now=NOW)


def _shape(parsed: ParsedEdxml) -> list[tuple[Any, ...]]:
    """Everything of a tree the reader can see, element by element in document order."""
    shape = []
    for element in parsed.root.iter():
        content = parsed.contents.get(element)
        summary = None if content is None else (content.size, content.error, content.line)
        shape.append((element.tag, dict(element.attrib), element.text, element.tail, element.sourceline, summary))
    return shape


def _by_libxml2(data: bytes | Path, rules: Any = RULES) -> ParsedEdxml | None:
    return parsing._built_by_libxml2(data, rules)


def _assert_same_build(data: bytes | Path, rules: Any = RULES) -> bool:
    """Both builds agree (or both refuse, with the builder's words); True if libxml2 built it."""
    try:
        expected = parsing._built_by_expat(data, rules)
    except MalformedEdxml as refused:
        assert _by_libxml2(data, rules) is None
        with pytest.raises(MalformedEdxml) as caught:
            parse(data) if rules is RULES else parse(data, rules.limits)
        assert str(caught.value) == str(refused)
        return False
    built = _by_libxml2(data, rules)
    if built is not None:
        assert _shape(built) == _shape(expected)
    assert _shape(parse(data) if rules is RULES else parse(data, rules.limits)) == _shape(expected)
    return built is not None


def _read(data: bytes | Path) -> tuple[str, Any]:
    """What read_document answers: the message, or the refusal's type, words and listed issues."""
    try:
        return "read", read_document(data)
    except ClientError as refused:
        return type(refused).__name__, (str(refused), getattr(refused, "issues", None))


# --- the samples ------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_every_sample_builds_the_same_tree_both_ways(sample: Path) -> None:
    _assert_same_build(sample)
    _assert_same_build(sample.read_bytes())


def test_the_plain_samples_are_built_by_libxml2() -> None:
    """Guards the saving itself: if the survey gave up on everything, the other tests would still pass."""
    built = {sample.name for sample in SAMPLES if _by_libxml2(sample) is not None}
    assert {"full.edxml", "minimal.edxml", "recall.edxml", "signature-xmldsig.edxml"} <= built
    assert _by_libxml2(_document(os.urandom(3000), b"")) is not None


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_read_document_answers_the_same_without_the_libxml2_build(sample: Path) -> None:
    """Validation issues (line, path, words), refusals and the read message, with and without it."""
    with_it = _read(sample)
    with mock.patch.object(parsing, "_built_by_libxml2", lambda _source, _rules: None):
        without = _read(sample)
    assert with_it == without


# --- generated variants -----------------------------------------------------------------------


def _respaced(data: bytes, draw: st.DrawFn) -> bytes:
    """The document with the whitespace between its tags redrawn (newlines of every kind, none, tabs)."""
    pieces = re.split(rb">\s*<", data)
    spacing = st.sampled_from([b"", b"\n", b"\r\n", b"\r", b"\n\t\t", b"  ", b"\n\n  \r\n"])
    joints = [b">" + draw(spacing) + b"<" for _ in pieces[1:]]
    return b"".join(piece + joint for piece, joint in zip(pieces, [*joints, b""], strict=True))


def _prefixed(data: bytes, style: str) -> bytes:
    """Every QCVN element with ``style``: the writer's mix, all default, or all ``edXML:``."""
    if style == "mixed":
        return data
    prefix = b"" if style == "default" else b"edXML:"
    body = TAG.sub(lambda m: b"<" + m.group(1) + prefix + m.group(2).split(b":")[-1], data)
    body = body.replace(f' xmlns:edXML="{QCVN}"'.encode(), b"")
    root = f'<{prefix.decode()}edXML xmlns{":edXML" if prefix else ""}="{QCVN}">'.encode()
    return re.sub(rb"<(edXML:)?edXML [^>]*>", root, body, count=1)


@st.composite
def variants(draw: st.DrawFn) -> bytes:
    """The writer's document reshaped as other senders' software writes the same content."""
    raw = draw(st.binary(max_size=300))
    data = _document(raw, b"x")
    data = _prefixed(data, draw(st.sampled_from(["mixed", "default", "prefixed"])))
    text = base64.b64encode(raw)
    width = draw(st.sampled_from([0, 4, 76]))
    if width:
        newline = draw(st.sampled_from([b"\n", b"\r\n", b"&#13;\n"]))
        wrapped = newline.join(text[i : i + width] for i in range(0, len(text), width))
        data = data.replace(text, wrapped, 1)
    data = _respaced(data, draw)
    extra = draw(st.sampled_from(["", "comment", "cdata", "pi", "reference", "attribute", "signature"]))
    if extra == "comment":
        data = data.replace(b"Subject>", b"Subject><!-- a\n comment -->", 1)
    elif extra == "cdata":
        data = data.replace(b">7816<", b"><![CDATA[78]]>16<", 1)
    elif extra == "pi":
        data = data.replace(b"?>", b"?><?pi one\ntwo?>\n", 1)
    elif extra == "reference":
        data = data.replace("Nghệ".encode(), b"Ngh&#7879;", 1).replace(b"Ch", b"&#x43;h", 1)
    elif extra == "attribute":
        data = data.replace(b"Subject>", b'Subject xml:lang="vi" note="a&#10;b  c">', 1)
    elif extra == "signature":
        unprefixed = f'<Signature xmlns="{DSIG}"><SignedInfo/></Signature></edXMLHeader>'
        data = data.replace(b"</edXMLHeader>", unprefixed.encode(), 1)
        prefixed = f'<ds:Signature xmlns:ds="{DSIG}"/></edXML:edXMLHeader>'
        data = data.replace(b"</edXML:edXMLHeader>", prefixed.encode(), 1)
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variants(), st.integers(1, 400))
def test_generated_variants_build_the_same_tree_both_ways(data: bytes, window: int) -> None:
    with mock.patch.object(parsing, "CHUNK", window):
        _assert_same_build(data)
    assert _read(data) == _read_without_libxml2(data)


def _read_without_libxml2(data: bytes) -> tuple[str, Any]:
    with mock.patch.object(parsing, "_built_by_libxml2", lambda _source, _rules: None):
        return _read(data)


@pytest.mark.parametrize("style", ["mixed", "default", "prefixed"])
def test_each_namespace_style_of_the_known_uris_is_built_by_libxml2(style: str) -> None:
    data = _prefixed(_document(b"abc"), style)
    assert _assert_same_build(data)


# --- what goes to the builder -----------------------------------------------------------------

GIVE_UP: dict[str, Callable[[bytes], bytes]] = {
    "another namespace": lambda d: d.replace(b"<edXML ", b'<edXML xmlns:v="urn:vendor" ', 1),
    "ds bound to QCVN": lambda d: d.replace(b"<edXML ", f'<edXML xmlns:ds="{QCVN}" '.encode(), 1),
    "default namespace undeclared": lambda d: d.replace(b"<edXML:Subject>", b'<edXML:Subject xmlns="">', 1),
    "a name outside ASCII": lambda d: d.replace(b"</edXML:Subject>", "</edXML:Subject><edXML:Ghi_chú/>".encode(), 1),
    "an attribute name outside ASCII": lambda d: d.replace(
        b"<edXML:Subject>", "<edXML:Subject ghi_chú='1'>".encode(), 1
    ),
    # The gateway reads every document as UTF-8 (docs/xml-hardening.md); libxml2 believes the declaration.
    "UTF-8 declared as US-ASCII": lambda d: d.replace(b'encoding="UTF-8"', b'encoding="US-ASCII"', 1),
    "text after a child element": lambda d: d.replace(b"</edXML:From>", b"</edXML:From>stray", 1),
    "an element inside an attachment": lambda d: d.replace(
        b"<ContentTransferEncoded>", b"<ContentTransferEncoded><x/>", 1
    ),
}


@pytest.mark.parametrize("case", sorted(GIVE_UP))
def test_what_the_libxml2_build_cannot_reproduce_goes_to_the_builder(case: str) -> None:
    plain = _document(b"abcdef")
    data = GIVE_UP[case](plain)
    assert data != plain
    assert _by_libxml2(data) is None
    assert not _assert_same_build(data)


def test_markup_longer_than_one_elements_text_may_be_goes_to_the_builder() -> None:
    data = _document(b"abc")
    limits = Limits(text=len(data) // 2)
    assert _by_libxml2(data, parsing.dialect(limits)) is None
    assert _by_libxml2(data, parsing.dialect(Limits(text=len(data)))) is not None
    assert not _assert_same_build(data, parsing.dialect(limits))


def test_text_over_its_bound_is_refused_in_the_builders_words() -> None:
    """The survey counts no text: a long Subject must still get the builder's refusal, not libxml2's tree."""
    data = _document(b"abc").replace(b"<edXML:Subject>", b"<edXML:Subject>" + b"x" * 5000, 1)
    limits = Limits(text=4096, markup=1 << 20)
    with pytest.raises(MalformedEdxml, match="the text of Subject is longer than 4,096 characters"):
        parse(data, limits)


def test_markup_over_its_bound_with_text_counted_is_refused_in_the_builders_words() -> None:
    data = _document(b"abc")
    names_only = len(data) // 2  # over the markup bound only once text is counted
    with pytest.raises(MalformedEdxml, match="markup and text"):
        parse(data, Limits(markup=names_only))


def test_threads_each_build_with_their_own_libxml2_parser() -> None:
    documents = [_document(os.urandom(n)) for n in range(40, 80)]
    expected = [_shape(parsing._built_by_expat(data, RULES)) for data in documents]
    with ThreadPoolExecutor(max_workers=4) as pool:
        built = list(pool.map(lambda data: _shape(parse(data)), documents * 3))
    assert built == expected * 3
