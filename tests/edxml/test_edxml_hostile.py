"""Hostile and arbitrary input: refused cleanly, never leaking files, only ever with GatewayError."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from edxml_samples import INVALID, VALID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.edxml_kinds import message_kind

from gateway.edxml import parsing, read_document, read_status
from gateway.edxml.parsing import parse
from gateway.errors import GatewayError, MalformedEdxml
from gateway.safexml import Limits

SAMPLE_BYTES = [path.read_bytes() for path in sorted(VALID.iterdir())]


def test_xxe_does_not_leak_a_local_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42", encoding="utf-8")
    data = (VALID / "minimal.edxml").read_text(encoding="utf-8")
    data = data.replace(
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE edXML [<!ENTITY s SYSTEM "{secret.as_uri()}">]>\n',
    ).replace(">V/v kết nối", ">&s;V/v kết nối")
    with pytest.raises(MalformedEdxml) as caught:
        read_document(data.encode("utf-8"))
    assert "TOP-SECRET-42" not in str(caught.value)


def test_parameter_entities_refused() -> None:
    data = b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><edXML/>'
    with pytest.raises(MalformedEdxml, match="DOCTYPE"):
        read_document(data)


def test_billion_laughs_refused_quickly() -> None:
    with pytest.raises(MalformedEdxml, match="DOCTYPE"):
        read_document(INVALID / "billion-laughs.edxml")


def test_undeclared_entity_refused() -> None:
    with pytest.raises(MalformedEdxml, match="undefined entity"):
        read_document(b"<edXML>&lol9;</edXML>")


def test_deep_nesting_refused() -> None:
    with pytest.raises(MalformedEdxml, match="nested"):
        read_document(b"<a>" * 200 + b"</a>" * 200)


@pytest.mark.parametrize("data", [b"", b"   ", b"\xef\xbb\xbf", b"not xml", b"<edXML", b"<?xml version='1.0'?>"])
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedEdxml):
        read_document(data)


def test_missing_file_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedEdxml, match="cannot be read"):
        read_document(tmp_path / "absent.edxml")


def _only_gateway_errors(data: bytes) -> None:
    for reader in (read_document, read_status, message_kind):
        with contextlib.suppress(GatewayError):
            reader(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_only_raise_gateway_errors(data: bytes) -> None:
    _only_gateway_errors(data)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """A valid sample with a few bytes replaced, deleted or inserted."""
    data = bytearray(draw(st.sampled_from(SAMPLE_BYTES)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        byte = draw(st.sampled_from(list(b"<>/&;='\"x0 :\n\xc3\xff")))
        if action == "replace":
            data[position] = byte
        elif action == "delete":
            del data[position]
        else:
            data.insert(position, byte)
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_samples())
def test_mutated_samples_only_raise_gateway_errors(data: bytes) -> None:
    _only_gateway_errors(data)


@st.composite
def swapped_texts(draw: st.DrawFn) -> bytes:
    """A valid sample with one element's text replaced by arbitrary text (escaped)."""
    text = draw(st.sampled_from(SAMPLE_BYTES)).decode("utf-8")
    starts = [i for i, ch in enumerate(text) if ch == ">" and i + 1 < len(text) and text[i + 1] not in "\n<"]
    position = draw(st.sampled_from(starts))
    end = text.index("<", position)
    value = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30))
    value = value.replace("&", "&amp;").replace("<", "&lt;")
    return (text[: position + 1] + value + text[end:]).encode("utf-8")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(swapped_texts())
def test_arbitrary_field_values_only_raise_gateway_errors(data: bytes) -> None:
    _only_gateway_errors(data)


@pytest.mark.parametrize("encoding", ["TF-8", "no-such-codec", "utf-16"])
def test_unsupported_or_wrong_encoding_is_malformed(encoding: str) -> None:
    data = (VALID / "minimal.edxml").read_bytes().replace(b'encoding="UTF-8"', f'encoding="{encoding}"'.encode())
    with pytest.raises(MalformedEdxml):
        read_document(data)


@pytest.mark.parametrize(
    "encoded",
    [
        lambda text: text.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1", "replace"),
        lambda text: text.encode("utf-16"),
        lambda text: text.replace('encoding="UTF-8"', 'encoding="windows-1258"').encode("utf-8"),
    ],
    ids=["latin-1", "utf-16", "windows-1258-label"],
)
def test_documents_not_in_utf8_are_refused(encoded) -> None:
    text = (VALID / "minimal.edxml").read_text(encoding="utf-8")
    with pytest.raises(MalformedEdxml, match="UTF-8"):
        read_document(encoded(text))


def test_a_huge_attribute_is_refused_before_it_is_buffered() -> None:
    data = (VALID / "minimal.edxml").read_bytes()
    hostile = data.replace(b"<edXML:MessageHeader>", b'<edXML:MessageHeader x="' + b"a" * (3 << 20) + b'">', 1)
    with pytest.raises(MalformedEdxml, match="longer than 1024 KiB"):
        read_document(hostile)


def _nested(levels: int) -> bytes:
    return b"<a>" * levels + b"</a>" * levels


def _attributed(count: int) -> bytes:
    return b"<a " + b" ".join(b'x%d="v"' % i for i in range(count)) + b"/>"


def _children(count: int) -> bytes:
    return b"<a>" + b"<b/>" * count + b"</a>"


def _markup(characters: int) -> bytes:
    return b"<a>" + b"t" * (characters - 1) + b"</a>"


@pytest.mark.parametrize(
    ("build", "limits", "at_limit", "refusal"),
    [
        (_nested, Limits(depth=5), 5, "nested more than 5 levels deep"),
        (_attributed, Limits(attributes=3), 3, "has 4 attributes; at most 3"),
        (lambda n: b"<r>" + _attributed(1) * n + b"</r>", Limits(attributes_total=6), 6, "more than 6 attributes"),
        (lambda n: _children(n - 1), Limits(elements=8), 8, "more than 8 elements"),
        (_children, Limits(children=4), 4, "a has more than 4 child elements"),
        (_markup, Limits(markup=40), 40, "exceed"),
    ],
    ids=["depth", "attributes", "attributes in all", "elements", "children", "markup"],
)
def test_every_limit_holds_exactly_at_its_bound(
    build: Callable[[int], bytes], limits: Limits, at_limit: int, refusal: str
) -> None:
    """A document exactly at a bound parses; one more element, attribute or character is refused."""
    assert parse(build(at_limit), limits).root is not None
    with pytest.raises(MalformedEdxml, match=refusal):
        parse(build(at_limit + 1), limits)


def test_names_a_sender_makes_up_cannot_fill_the_name_cache() -> None:
    """Element names are translated through a cache: it keeps a bounded number of short names only."""
    long_name = b"n" + b"x" * parsing._CLARK_LONGEST
    groups = [b"<g>" + b"".join(b"<n%d/>" % (g * 500 + i) for i in range(500)) + b"</g>" for g in range(5)]
    parsing._CLARK_NAMES.clear()
    root = parse(b"<r><" + long_name + b"/>" + b"".join(groups) + b"</r>").root
    assert root[0].tag == long_name.decode(), "a name past the cache's bounds is still translated"
    assert root[5][-1].tag == "n2499", "names past the cache's count are still translated"
    assert len(parsing._CLARK_NAMES) <= parsing._CLARK_CACHED
    assert all(len(name) <= parsing._CLARK_LONGEST for name in parsing._CLARK_NAMES)
    assert long_name.decode() not in parsing._CLARK_NAMES
