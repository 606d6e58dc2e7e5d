"""The attachment fast path of the parser: base64 text checked as bytes gives what expat would have.

Attachment text bypasses expat (see :mod:`gateway.edxml.parsing`), so these tests pin down that
sizes, base64 verdicts, fallbacks (references, CDATA, comments, stray bytes), window boundaries and
the line and column numbers reported *after* skipped text are exactly what a plain expat parse gives.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from unittest import mock
from xml.parsers import expat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from support.cputime import cpu_growth

from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes, parsing, read_document
from gateway.edxml.parsing import CHUNK, EncodedContent, ParsedEdxml, parse
from gateway.errors import MalformedEdxml, SchemaInvalid
from gateway.safexml import Limits

NOW = datetime(2016, 4, 1, 8, 30, 0)
MESSAGE = DocumentMessage(
    sender=Organization("000.00.00.G22", "Văn phòng Chính phủ"),
    recipients=(Organization("000.00.00.H41", "Ủy ban nhân dân tỉnh Nghệ An"),),
    code_number="7816",
    code_notation="VPCP-TTĐT",
    promulgation_date=date(2016, 4, 1),
    type_code=1,
    type_name="Công văn",
    subject="V/v kết nối",
)
ATTACHMENT_PATH = "/edXML/AttachmentEncoded/Attachment[{}]/ContentTransferEncoded"
_TEXT = re.compile(rb"<ContentTransferEncoded>(.*?)</ContentTransferEncoded>", re.DOTALL)


def _document(*raws: bytes) -> bytes:
    """A valid edXML document carrying ``raws`` as attachments (single-line base64, as the writer emits)."""
    sources = [AttachmentSource(f"a{i}.bin", "application/octet-stream", data=raw) for i, raw in enumerate(raws)]
    return document_bytes(MESSAGE, sources, now=NOW)


def _with_texts(data: bytes, *texts: bytes) -> bytes:
    """``data`` with its attachment texts replaced, in order, by ``texts`` (raw XML bytes)."""
    replacements = iter(texts)
    return _TEXT.sub(lambda _: b"<ContentTransferEncoded>" + next(replacements) + b"</ContentTransferEncoded>", data)


def _wrapped(raw: bytes, width: int = 76, newline: bytes = b"\r\n") -> bytes:
    """Base64 in lines of ``width`` characters, as mail and .NET ``InsertLineBreaks`` write it."""
    text = base64.b64encode(raw)
    return newline.join(text[i : i + width] for i in range(0, len(text), width))


def _sizes(data: bytes) -> list[int]:
    return [attachment.size for attachment in read_document(data).attachments]


def _line_of(data: bytes, needle: bytes, start: int = 0) -> int:
    """1-based line of ``needle`` as XML counts lines (CR LF, lone CR and LF each end one)."""
    index = data.index(needle, start)
    return data[:index].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1


def _expat_lines(data: bytes) -> list[int]:
    """The line of every start tag as a plain expat parse (every byte through expat) reports it."""
    parser = expat.ParserCreate(namespace_separator=" ")
    lines: list[int] = []
    parser.StartElementHandler = lambda _name, _attrs: lines.append(parser.CurrentLineNumber)
    parser.Parse(data, True)
    return lines


def _expat_error(data: bytes) -> str:
    """Where a plain expat parse of the whole document fails, in the gateway's words."""
    parser = expat.ParserCreate(namespace_separator=" ")
    with pytest.raises(expat.ExpatError) as caught:
        parser.Parse(data, True)
    return f"line {caught.value.lineno}, column {caught.value.offset + 1}:"


@contextmanager
def _chunk(size: int) -> Iterator[None]:
    """Parse in windows of ``size`` bytes, to put window boundaries anywhere in a small document."""
    with mock.patch.object(parsing, "CHUNK", size):
        yield


@contextmanager
def _no_expat_text() -> Iterator[list[str]]:
    """Record attachment text that went through expat (the slow path) instead of the fast path."""
    seen: list[str] = []
    original = EncodedContent.feed

    def feed(self: EncodedContent, text: str) -> None:
        seen.append(text)
        original(self, text)

    with mock.patch.object(EncodedContent, "feed", feed):
        yield seen


# --- sizes and verdicts -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 57, 1000, CHUNK - 7, CHUNK + 5, 2 * CHUNK + 1])
def test_single_line_base64_skips_expat_and_counts_the_size(size: int) -> None:
    raw = os.urandom(size)
    with _no_expat_text() as slow:
        assert _sizes(_document(raw)) == [size]
    assert slow == []


@pytest.mark.parametrize("newline", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
@pytest.mark.parametrize("width", [76, 64, 1])
def test_wrapped_base64_skips_expat_and_counts_the_size(newline: bytes, width: int) -> None:
    raw = os.urandom(CHUNK + 1234)
    data = _with_texts(_document(raw), newline + _wrapped(raw, width, newline) + newline + b"      ")
    with _no_expat_text() as slow:
        assert _sizes(data) == [len(raw)]
    assert slow == []


def test_several_attachments_each_get_their_own_size() -> None:
    raws = [os.urandom(n) for n in (10, CHUNK, 0, 3)]
    assert _sizes(_document(*raws)) == [len(raw) for raw in raws]


def test_character_references_fall_back_to_expat() -> None:
    raw = os.urandom(5000)
    text = _wrapped(raw, 76, b"&#13;\n")
    with _no_expat_text() as slow:
        assert _sizes(_with_texts(_document(raw), text)) == [len(raw)]
    assert slow


def test_a_reference_deep_in_a_long_text_falls_back_from_there_on() -> None:
    raw = os.urandom(2 * CHUNK)
    text = base64.b64encode(raw)
    middle = len(text) // 2 // 4 * 4
    referenced = text[:middle] + b"&#x41;" + text[middle + 1 :]
    assert _sizes(_with_texts(_document(raw), referenced)) == [len(raw)]
    referenced = text[:middle] + b"&#x2A;" + text[middle + 1 :]
    with pytest.raises(SchemaInvalid, match="ContentTransferEncoded contains characters that are not base64"):
        read_document(_with_texts(_document(raw), referenced))


@pytest.mark.parametrize(
    "shape",
    [
        lambda t: b"<![CDATA[" + t + b"]]>",
        lambda t: t[:400] + b"<![CDATA[" + t[400:800] + b"]]>" + t[800:],
        lambda t: t[:400] + b"<!-- a comment -->" + t[400:],
        lambda t: t[:400] + b"<?pi data?>\r\n" + t[400:],
    ],
    ids=["cdata", "cdata-inside", "comment", "processing-instruction"],
)
def test_cdata_comments_and_pis_inside_the_text_go_through_expat(shape) -> None:
    raw = os.urandom(3000)
    assert _sizes(_with_texts(_document(raw), shape(base64.b64encode(raw)))) == [len(raw)]


@pytest.mark.parametrize("text", [b"", b"  \r\n  "], ids=["empty", "blank"])
def test_empty_attachment_has_size_zero(text: bytes) -> None:
    assert _sizes(_with_texts(_document(b"x"), text)) == [0]


def test_self_closing_attachment_element_has_size_zero() -> None:
    element = b"<ContentTransferEncoded>eA==</ContentTransferEncoded>"
    data = _document(b"x").replace(element, b"<ContentTransferEncoded />")
    assert _sizes(data) == [0]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b"QUJD*!RA==", "contains characters that are not base64"),
        (b"QUJD\xc3\xa9RA==", "contains characters that are not base64"),
        (b"QUJD>RA==", "contains characters that are not base64"),
        (b"QUJD=RA==", "has '=' in the middle of the data"),
        (b"QUJD\r\nRA=\r\n=Q=", "has '=' in the middle of the data"),
        (b"QUJDRA=", "is truncated or has a wrong length"),
        (b"QUJDR===", "is truncated or has a wrong length"),
        (b"QUJDRA", "is truncated or has a wrong length"),
    ],
)
def test_bad_base64_names_the_attachment_and_its_line(text: bytes, words: str) -> None:
    data = _with_texts(_document(b"fine", b"bad"), b"ZmluZQ==", text)
    with pytest.raises(SchemaInvalid) as caught:
        read_document(data)
    line = _line_of(data, b"<ContentTransferEncoded>" + text)
    assert f"line {line}, {ATTACHMENT_PATH.format(2)}: ContentTransferEncoded {words}" in caught.value.message


def test_padding_split_across_windows_is_fine_and_data_after_it_is_not() -> None:
    """Which of the two '=' messages appears depends on where a window ends, as it did with expat's buffer."""
    head = b'<r><x:ContentTransferEncoded xmlns:x="urn:x">'
    for text, error in [(b"QUJDRA==", None), (b"QUJDRA=\n=", None), (b"QUJDRA=" + b" " * 9 + b"=QUJD", "'='")]:
        for window in range(1, len(head) + len(text) + 1):
            with _chunk(window):
                parsed = parse(head + text + b"</x:ContentTransferEncoded></r>")
            (content,) = parsed.contents.values()
            if error is None:
                assert (content.error, content.size) == (None, 4), (text, window)
            else:
                assert content.error is not None and error in content.error, (text, window)


def test_invalid_utf8_in_the_text_is_still_not_well_formed() -> None:
    data = _with_texts(_document(b"abc"), b"YWJj\xff")
    with pytest.raises(MalformedEdxml) as caught:
        read_document(data)
    assert _expat_error(data) in caught.value.message


def test_cdata_end_in_the_text_is_still_not_well_formed() -> None:
    data = _with_texts(_document(b"abc"), b"YWJj]]>")
    with pytest.raises(MalformedEdxml) as caught:
        read_document(data)
    assert _expat_error(data) in caught.value.message


# --- window boundaries ------------------------------------------------------------------------


def test_every_window_boundary_around_the_attachment() -> None:
    raw = os.urandom(300)
    text = _wrapped(raw, 40, b"\r\n")
    data = (
        b'<?xml version="1.0"?>\n<r xmlns:x="urn:x"><a/>\n <x:ContentTransferEncoded id="1">'
        + text
        + b"</x:ContentTransferEncoded>\n<x:ContentTransferEncoded>AAAA</x:ContentTransferEncoded><b>t</b></r>"
    )
    expected = [_line_of(data, needle) for needle in (b"<r ", b"<a/>", b"<x:Content", b"<x:Content", b"<b>")]
    expected[3] = _line_of(data, b"<x:Content", data.index(b"</x:Content"))
    for window in [*range(1, 90), *range(len(data) - 60, len(data) + 1, 3)]:
        with _chunk(window), _no_expat_text() as slow:
            parsed = parse(data)
        assert [content.size for content in parsed.contents.values()] == [len(raw), 3], window
        assert all(content.error is None for content in parsed.contents.values()), window
        assert [element.sourceline for element in parsed.root.iter()] == expected, window
        assert slow == [], window


@pytest.mark.parametrize("where", ["in-name", "before-gt", "after-gt", "in-text", "at-lt", "after-lt", "between-cr-lf"])
def test_the_one_mib_window_boundary_at_awkward_places(where: str) -> None:
    raw = os.urandom(CHUNK // 2)
    text = _wrapped(raw)
    padded = _document(raw)
    opening = padded.index(b"<ContentTransferEncoded>")
    offsets = {
        "in-name": opening + 10,
        "before-gt": opening + len(b"<ContentTransferEncoded"),
        "after-gt": opening + len(b"<ContentTransferEncoded>"),
        "in-text": opening + len(b"<ContentTransferEncoded>") + 1000,
        "at-lt": opening + len(b"<ContentTransferEncoded>") + len(text),
        "after-lt": opening + len(b"<ContentTransferEncoded>") + len(text) + 1,
        "between-cr-lf": opening + len(b"<ContentTransferEncoded>") + 77,
    }
    unpadded = _with_texts(padded, text)
    data = unpadded.replace(b"<AttachmentEncoded>", b" " * (CHUNK - offsets[where]) + b"<AttachmentEncoded>", 1)
    assert data[CHUNK:] == unpadded[offsets[where] :]
    broken = data.replace(b"</AttachmentEncoded>", b"</AttachmentEncode>")
    with _no_expat_text() as slow:
        assert _sizes(data) == [len(raw)]
    assert slow == []
    with pytest.raises(MalformedEdxml) as caught:
        read_document(broken)
    assert _expat_error(broken) in caught.value.message


# --- positions after skipped text -------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
def test_an_error_after_a_multi_line_attachment_reports_the_exact_line(newline: bytes) -> None:
    raw = os.urandom(CHUNK + 4321)
    data = _with_texts(_document(raw, b"second"), _wrapped(raw, 76, newline), b"c2Vjb25k!")
    with pytest.raises(SchemaInvalid) as caught:
        read_document(data)
    line = _line_of(data, b"c2Vjb25k!")
    assert line > (len(raw) * 4 // 3) // 76
    assert f"line {line}, {ATTACHMENT_PATH.format(2)}: ContentTransferEncoded contains" in caught.value.message


@pytest.mark.parametrize("newline", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
def test_malformed_xml_after_a_multi_line_attachment_reports_line_and_column(newline: bytes) -> None:
    raw = os.urandom(CHUNK + 4321)
    data = _with_texts(_document(raw), _wrapped(raw, 76, newline)).replace(b"</Attachment>", b"</Attachmen>")
    with pytest.raises(MalformedEdxml) as caught:
        read_document(data)
    assert _expat_error(data) in caught.value.message
    assert f"line {_line_of(data, b'</Attachmen>')}," in caught.value.message


@pytest.mark.parametrize("lines", [1, 3], ids=["same-line", "after-newline"])
def test_malformed_xml_on_the_line_where_skipped_text_ends_reports_the_column(lines: int) -> None:
    raw = os.urandom(CHUNK)
    text = _wrapped(raw, len(raw) * 4 // 3 // lines + 4, b"\n")
    data = _with_texts(_document(raw, b"x"), text, b"eA==").replace(
        b"</ContentTransferEncoded>\n    </Attachment>", b"</ContentTransferEncoded></Attachment><a b>", 1
    )
    with pytest.raises(MalformedEdxml) as caught:
        read_document(data)
    assert _expat_error(data) in caught.value.message


def test_an_unclosed_attachment_reports_where_the_file_ends() -> None:
    raw = os.urandom(CHUNK)
    data = _with_texts(_document(raw), _wrapped(raw, 76, b"\n"))
    data = data[: data.index(b"</ContentTransferEncoded>")]
    with pytest.raises(MalformedEdxml) as caught:
        read_document(data)
    assert _expat_error(data) in caught.value.message


# --- guards still hold ------------------------------------------------------------------------


def test_a_huge_attribute_on_the_attachment_start_tag_is_refused() -> None:
    huge = b'<ContentTransferEncoded x="' + b"a" * (3 << 20) + b'">'
    data = _document(b"abc").replace(b"<ContentTransferEncoded>", huge)
    with pytest.raises(MalformedEdxml, match="longer than 1024 KiB"):
        read_document(data)


def test_start_tag_look_alikes_in_comments_and_text_change_nothing() -> None:
    raw = os.urandom(100)
    look_alikes = b"<!-- <ContentTransferEncoded> -->" * 2000 + b"<![CDATA[<ContentTransferEncoded>]]>"
    data = _document(raw).replace(b"<AttachmentName>", look_alikes + b"<AttachmentName>", 1)
    parsed = parse(data)
    assert [content.size for content in parsed.contents.values()] == [len(raw)]
    assert _sizes(_document(raw).replace(b"V/v k", b"ContentTransferEncoded&gt; V/v k")) == [len(raw)]


def test_attributes_holding_gt_before_the_text_are_handled() -> None:
    raw = os.urandom(100)
    data = b'<r><ContentTransferEncoded a=">" b="x>y">' + _wrapped(raw) + b"</ContentTransferEncoded></r>"
    with _no_expat_text() as slow:
        assert [content.size for content in parse(data).contents.values()] == [len(raw)]
    assert slow == []


def test_many_siblings_parse_in_linear_time() -> None:
    """``len()`` of an lxml element walks its children; asking it per child took 26 s for 100 000.

    The production limits refuse that many elements, so they are raised here to see the parser's
    own cost grow: doubling the siblings must not much more than double it.
    """
    roomy = Limits(elements=1_000_000, children=1_000_000, markup=1 << 30)
    element = b"<ContentTransferEncoded>QUJD</ContentTransferEncoded>"
    small, large = (b"<r>" + element * n + b"</r>" for n in (40_000, 80_000))
    assert len(parse(small, roomy).contents) == 40_000
    ratio = cpu_growth(lambda: parse(small, roomy), lambda: parse(large, roomy))
    print(f"CPU 2n/n for siblings: {ratio:.2f}")
    assert ratio < 3, f"doubling the siblings multiplied the parse's CPU time by {ratio:.1f}"
    with pytest.raises(MalformedEdxml, match="r has more than 1,000 child elements"):
        parse(small)


def test_bytes_bytearray_memoryview_and_file_agree(tmp_path) -> None:
    raw = os.urandom(CHUNK + 99)
    data = _with_texts(_document(raw), _wrapped(raw))
    path = tmp_path / "doc.edxml"
    path.write_bytes(data)
    for source in (data, bytearray(data), memoryview(data), path):
        assert [content.size for content in parse(source).contents.values()] == [len(raw)]


# --- against a reference ----------------------------------------------------------------------


def _reference_size(text: bytes) -> int | None:
    """Decoded size by the standard library's strict decoder, or None if it refuses the text.

    The gateway also refuses a length that is not a multiple of 4 (``AAAA=``), which that decoder lets by.
    """
    compact = text.translate(None, b" \t\r\n")
    try:
        decoded = binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error:
        return None
    return None if len(compact) % 4 else len(decoded)


@st.composite
def attachment_texts(draw: st.DrawFn) -> bytes:
    """Base64 of random bytes in the shapes senders write, sometimes damaged, as raw XML text."""
    tokens = [bytes([char]) for char in base64.b64encode(draw(st.binary(max_size=120)))]
    damage = draw(st.sampled_from([b"", b"", b"drop", b"=", b"*", b"&#x41;", b"&#x2a;", b"\xc3\xa9"]))
    at = draw(st.integers(0, len(tokens)))
    tokens[max(at - 1, 0) : at] = [] if damage == b"drop" else [*tokens[max(at - 1, 0) : at], damage]
    width = draw(st.sampled_from([0, 1, 4, 7, 76])) or len(tokens) or 1
    lines = [b"".join(tokens[i : i + width]) for i in range(0, len(tokens), width)]
    if lines and draw(st.booleans()):
        index = draw(st.integers(0, len(lines) - 1))
        lines[index] = draw(st.sampled_from([b"<![CDATA[%s]]>", b"<!--\n-->%s", b"%s<?pi?>"])) % lines[index]
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r", b"&#13;\n", b"&#10;", b" "]))
    return draw(st.sampled_from([b"", b"\n", b"\r\n  "])) + newline.join(lines) + draw(st.sampled_from([b"", b"\n  "]))


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    parts = [b'<?xml version="1.0" encoding="UTF-8"?>\n<r xmlns:e="urn:e">\n']
    for index in range(draw(st.integers(1, 3))):
        prefix = draw(st.sampled_from([b"", b"e:"]))
        parts.append(b"<a><n>%d</n>\n<%sContentTransferEncoded>" % (index, prefix))
        parts.append(draw(attachment_texts()))
        parts.append(b"</%sContentTransferEncoded>%s</a>\n" % (prefix, draw(st.sampled_from([b"", b"\r\n", b"\r"]))))
    parts.append(b"<end>fin</end></r>\n")
    return b"".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.integers(1, 200))
def test_fast_path_agrees_with_expat_lxml_and_the_standard_base64_decoder(data: bytes, window: int) -> None:
    """Lines as plain expat counts them (libxml2 does not count a lone CR), contents as lxml reads them."""
    reference = etree.fromstring(data)
    with _chunk(window):
        parsed: ParsedEdxml = parse(data)
    ours = list(parsed.root.iter())
    theirs = list(reference.iter(etree.Element))
    assert [e.tag for e in ours] == [e.tag for e in theirs]
    assert [e.sourceline for e in ours] == _expat_lines(data)
    for mine, reference_element in zip(ours, theirs, strict=True):
        if mine in parsed.contents:
            content = parsed.contents[mine]
            expected = _reference_size("".join(reference_element.itertext()).encode())
            assert (content.error is None) == (expected is not None), content.error
            if expected is not None:
                assert content.size == expected
            assert content.line == mine.sourceline
        elif len(mine) == 0:
            assert (mine.text or "") == (reference_element.text or "")
