"""The streaming envelope reader: any split decodes the same, padding ends the data, the caller comes first.

The base64 decoder (``gateway.safexml.Base64Text`` with a sink) is driven both ways it is used: raw
bytes skipped past expat (``take``) and text expat reported (``feed``, for character references and
CDATA). ``stage_request`` is driven with in-memory bodies: what it decodes must be the document,
whatever the shape of its base64, and authentication must happen before any payload byte is decoded.
"""

from __future__ import annotations

import base64
import io
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import AuthenticationFailed, MalformedEdxml, MalformedRequest
from gateway.exchange.results import Caller
from gateway.safexml import Base64Text
from gateway.soap import streaming
from gateway.soap.credentials import HeaderCredentials
from gateway.soap.streaming import Payload, SimpleBody, stage_request

NS = "urn:edxml-gateway:soap:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PAYLOADS = {"sendDocument": Payload(NS, "sendDocument", "document")}
CALLER = Caller(1, "000.00.00.G22", "Văn phòng Chính phủ")


class _Staging(io.BytesIO):
    temp_path = None
    discarded = False

    def discard(self) -> None:
        self.discarded = True


def _refuse(problem: str) -> Exception:
    return MalformedEdxml(f"not base64: {problem}")


def decode(pieces: list[bytes], as_text: bool = False) -> bytes:
    out = _Staging()
    decoder = Base64Text(sink=out, refuse=_refuse)
    for piece in pieces:
        if as_text:
            decoder.feed(piece.decode("ascii"))
        else:
            assert decoder.take(piece, 0, len(piece)) is not None
    decoder.finish()
    return out.getvalue()


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=6),
    as_text=st.booleans(),
)
def test_any_split_decodes_like_one_piece(data: bytes, cuts: list[int], as_text: bool) -> None:
    text = base64.encodebytes(data)
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(pieces, as_text) == data


@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "text"])
@pytest.mark.parametrize(
    "pieces",
    [[b"QUI=", b"QUJD"], [b"QUJ"], [b"QU!D"], [b"Q=JD"], [b"QUI=QUJD"]],
    ids=["data-after-padding", "unfinished-quantum", "bad-character", "padding-inside", "padding-then-data"],
)
def test_invalid_base64_is_refused(pieces: list[bytes], as_text: bool) -> None:
    with pytest.raises(MalformedEdxml, match="base64"):
        decode(pieces, as_text)


ODD_BYTES = [b"=", b"==", b" ", b"\n", b"&", b"!", b"\xc3"]
"""Bytes that end, interrupt or spoil base64 text, inserted at random to drive ``take`` off its one-pass path."""


def _take_all(pieces: list[bytes], sink: bool, plain: bool) -> tuple[object, ...]:
    """What ``take`` makes of ``pieces``, with or without its one-pass path for plain base64."""
    out = _Staging()
    decoder = Base64Text(sink=out if sink else None)
    if not plain:
        decoder._take_plain = lambda *_args: False  # type: ignore[method-assign]
    taken = []
    for piece in pieces:
        try:
            spaces = decoder.take(bytearray(b"<" + piece + b">"), 1, len(piece) + 1)
        except MalformedEdxml as refused:
            return ("refused", str(refused))
        taken.append(None if spaces is None else bytes(spaces))
        if spaces is None:
            break
    decoder.finish()
    return tuple(taken), decoder.chars, decoder.padding, decoder.error, out.getvalue()


@settings(max_examples=1000, deadline=None)
@given(
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=6),
    inserts=st.lists(st.tuples(st.integers(min_value=0, max_value=600), st.sampled_from(ODD_BYTES)), max_size=2),
    sink=st.booleans(),
)
def test_plain_base64_in_one_pass_is_judged_as_byte_by_byte(
    data: bytes, cuts: list[int], inserts: list[tuple[int, bytes]], sink: bool
) -> None:
    text = base64.b64encode(data)
    for at, extra in inserts:
        at %= len(text) + 1
        text = text[:at] + extra + text[at:]
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert _take_all(pieces, sink, plain=True) == _take_all(pieces, sink, plain=False)


def test_large_payload_in_chunks() -> None:
    data = os.urandom(300_000)
    text = base64.b64encode(data)
    assert decode([text[i : i + 65_536] for i in range(0, len(text), 65_536)]) == data


# --- stage_request ----------------------------------------------------------------------------


def _envelope(document: bytes, header: bytes = b"<g:AuthHeader><g:agencyCode>A</g:agencyCode></g:AuthHeader>") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header>'.encode()
        + header
        + b"</s:Header><s:Body><g:sendDocument><g:document>"
        + document
        + b"</g:document></g:sendDocument></s:Body></s:Envelope>"
    )


class _Trickle(io.BytesIO):
    """A request body that hands out at most ``step`` bytes per read, like a slow network."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self.step = step

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.step if size is None or size < 0 else min(size, self.step))


def _stage(body: bytes, step: int = 1 << 30, seen: list[HeaderCredentials] | None = None) -> tuple[bytes, bytes]:
    out = _Staging()

    def authenticate(credentials: HeaderCredentials) -> Caller:
        if seen is not None:
            seen.append(credentials)
        assert not out.getvalue(), "a payload byte was decoded before authentication"
        return CALLER

    staged = stage_request(
        _Trickle(body, step), len(body), 1 << 30, PAYLOADS, lambda: out, "sendDocument", authenticate=authenticate
    )
    assert staged.caller == CALLER and staged.operation == "sendDocument"
    return staged.body, out.getvalue()


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 30])
@pytest.mark.parametrize(
    "shape",
    [
        lambda t: t,
        lambda t: b"\r\n".join(t[i : i + 76] for i in range(0, len(t), 76)),
        lambda t: b"&#13;\n".join(t[i : i + 76] for i in range(0, len(t), 76)),
        lambda t: b"".join(b"&#%d;" % c for c in t),
        lambda t: t[:100] + b"<![CDATA[" + t[100:200] + b"]]>" + t[200:],
    ],
    ids=["one-line", "crlf-wrapped", "references-wrapped", "all-references", "cdata"],
)
def test_every_shape_decodes_and_the_slim_body_is_empty(shape, step: int) -> None:
    data = os.urandom(3000 if step == 1 else 300_000)
    slim, decoded = _stage(_envelope(shape(base64.b64encode(data))), step)
    assert decoded == data
    assert slim == _envelope(b"")


def test_credentials_are_collected_from_a_username_token() -> None:
    token = (
        b'<w:Security xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" '
        b'xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">'
        b"<u:Timestamp><u:Created>2001-01-01T00:00:00Z</u:Created></u:Timestamp>"
        b"<w:UsernameToken><w:Username> 000.00.00.G22 </w:Username>"
        b'<w:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0'
        b'#PasswordDigest">c2VjcmV0</w:Password><w:Nonce>bm9uY2U=</w:Nonce>'
        b"<u:Created>2026-12-01T08:30:00Z</u:Created></w:UsernameToken></w:Security>"
    )
    seen: list[HeaderCredentials] = []
    _stage(_envelope(b"QUJD", token), seen=seen)
    assert seen == [HeaderCredentials("000.00.00.G22", "c2VjcmV0", "digest", "bm9uY2U=", "2026-12-01T08:30:00Z")]


def test_authentication_failure_stops_before_the_payload() -> None:
    body = _envelope(base64.b64encode(os.urandom(3 << 20)))
    stream = io.BytesIO(body)
    staged: list[_Staging] = []

    def refuse(_credentials: HeaderCredentials) -> Caller:
        raise AuthenticationFailed("no")

    def begin() -> _Staging:
        staged.append(_Staging())
        return staged[-1]

    with pytest.raises(AuthenticationFailed):
        stage_request(stream, len(body), 1 << 30, PAYLOADS, begin, authenticate=refuse)
    assert staged == []
    assert stream.tell() <= 16 * 1024, f"read {stream.tell()} bytes before refusing"


def test_a_caller_not_yet_known_holds_no_read_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 1 MiB read buffer (written in full, so paged in) is borrowed only once the caller is authenticated:
    a thousand slow connections stuck before ``<Body>`` (tests/deploy/test_slow_clients.py) must not hold one
    each. A borrowed buffer goes back to the spare list, so the list shows whether one was taken."""
    monkeypatch.setattr(streaming, "_SPARE_BUFFERS", [])
    body = _envelope(base64.b64encode(os.urandom(3 << 20)))

    def refuse(_credentials: HeaderCredentials) -> Caller:
        raise AuthenticationFailed("no")

    with pytest.raises(AuthenticationFailed):
        stage_request(io.BytesIO(body), len(body), 1 << 30, PAYLOADS, _Staging, authenticate=refuse)
    assert streaming._SPARE_BUFFERS == []
    _stage(body)
    assert len(streaming._SPARE_BUFFERS) == 1
    _stage(body)
    assert len(streaming._SPARE_BUFFERS) == 1  # the same buffer, reused


@pytest.mark.parametrize(
    "body",
    [
        _envelope(b"QUJD").replace(
            b"<g:sendDocument>", b"<g:sendDocument " + b" ".join(b'a%d="x"' % i for i in range(65)) + b">"
        ),
        _envelope(b"QUJD").replace(b"<s:Header>", b"<s:Header>" + b"<x/>" * 2001),
        _envelope(b"QUJD").replace(b"</s:Header>", b"</s:Header><s:Body/>"),
    ],
    ids=["attributes", "elements", "two-bodies"],
)
def test_envelope_limits_are_refused_with_a_line(body: bytes) -> None:
    with pytest.raises(MalformedRequest, match="line 1"):
        _stage(body)


_SEND = f"{NS} sendDocument"


@pytest.mark.parametrize("step", [1, 1 << 30])
@pytest.mark.parametrize(
    ("inner", "simple"),
    [
        (b"<g:document>QUJD</g:document>", True),
        (b"\n  <g:document>\r\nQUJD\r\nRUZH\n</g:document>\n", True),
        (b"<g:document>QUJD&#13;\nRUZH</g:document>", True),
        (b"<g:document/>", True),
        (b"", True),
        (b"<g:document>QUJD</g:document><g:document>QUJD</g:document>", False),
        (b"<g:document>QUJD</g:document><g:document/>", False),
        (b"<g:document>QUJD</g:document><g:other>1</g:other>", False),
        (b"<g:other>1</g:other><g:document>QUJD</g:document>", False),
        (b"<g:document>QUJD</g:document>x", False),
        (b'<g:document g:a="1">QUJD</g:document>', False),
        (b"<g:document><![CDATA[QUJD]]></g:document>", False),
        (b"<g:document>QU<!-- c -->JD</g:document>", False),
        (b"<?pi?><g:document>QUJD</g:document>", False),
        (b'<document xmlns="urn:elsewhere">QUJD</document>', False),
    ],
)
def test_a_send_body_is_simple_only_when_it_holds_just_the_document(inner: bytes, simple: bool, step: int) -> None:
    body = _envelope(b"").replace(b"<g:document></g:document>", inner)
    staged = stage_request(
        _Trickle(body, step), len(body), 1 << 30, PAYLOADS, _Staging, "sendDocument", authenticate=lambda _c: CALLER
    )
    assert staged.simple == (SimpleBody(_SEND, ()) if simple else None)
