"""Property: whatever bytes arrive, the SOAP path answers SOAP with a documented code and cleans up.

Hypothesis drives ``stage_request`` and the whole ``SoapEndpoint`` WSGI app in-process with random
bytes and with valid envelopes mutated by inserted DTD/entity/CDATA/comment/PI fragments, cuts,
byte flips and lying Content-Lengths. The answer must always be a successful SOAP response or a
SOAP fault whose code is in the README's table (HTTP 500, or 413 for TooLarge), never an
exception or a non-SOAP 5xx, and no staging file may outlive its request.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (
    DOCUMENTED_CODES,
    NGHE_AN,
    VPCP,
    envelope,
    letter,
    parse_reply,
    prepare_store,
    send_envelope,
)

from gateway.app import Router, create_app
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.soap.endpoint import PAYLOADS
from gateway.soap.streaming import stage_request
from gateway.store.blobs import memory_staged

FRAGMENTS = [
    b'<!DOCTYPE x [<!ENTITY e "vvvvvvvvvv">]>',
    b'<!DOCTYPE s:Envelope SYSTEM "http://127.0.0.1:9/x.dtd">',
    b'<!ENTITY e SYSTEM "file:///etc/passwd">',
    b"&e;",
    b"&lt;",
    b"&#0;",
    b"&#x10FFFF;",
    b"<![CDATA[QUJD]]>",
    b"<![CDATA[",
    b"<!-- comment -->",
    b"<?pi data?>",
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b"<x>",
    b"</x>",
    b"<",
    b">",
    b"\x00",
    b"\xff\xfe",
    b"\xc3\x28",
    b"====",
    b'<g:document xmlns:g="urn:edxml-gateway:soap:v1">QUJD</g:document>',
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Router, dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    gateway_settings = Settings(data_dir=root, database_url=f"sqlite:///{root / 'gw.sqlite3'}")
    secrets = prepare_store(gateway_settings)
    router = create_app(gateway_settings)
    assert gateway_settings.blob_dir is not None
    try:
        yield router, secrets, gateway_settings.blob_dir / "tmp"
    finally:
        router.gateway.db.dispose()


@st.composite
def requests_(draw: st.DrawFn, secrets: dict[str, str]) -> tuple[bytes, str, str | None]:
    """(body, SOAPAction, Content-Length header) from random bytes or a mutated valid envelope."""
    operation = draw(st.sampled_from(["getPendingDocuments", "sendDocument", "getDocument", "random"]))
    if operation == "random":
        body = draw(st.binary(max_size=3000))
    elif operation == "sendDocument":
        body = send_envelope(letter(VPCP, [NGHE_AN]), VPCP, secrets[VPCP])
    elif operation == "getDocument":
        body = envelope("getDocument", "<g:itemId>abc</g:itemId>", NGHE_AN, secrets[NGHE_AN])
    else:
        body = envelope("getPendingDocuments", "<g:maxItems>1</g:maxItems>", NGHE_AN, secrets[NGHE_AN])
    data = bytearray(body)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "flip", "cut", "relabel"]))
        at = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS) | st.binary(min_size=1, max_size=20))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 30))]
        elif kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "relabel":
            label = draw(st.sampled_from([b"ISO-8859-1", b"UTF-16", b"US-ASCII", b"windows-1258"]))
            data = bytearray(bytes(data).replace(b"UTF-8", label, 1))
    action = draw(st.sampled_from(["", operation, "getAgencies", f"urn:edxml-gateway:soap:v1/{operation}"]))
    length = draw(st.sampled_from(["exact", "none", "longer", "shorter", "garbage"]))
    header = {
        "exact": str(len(data)),
        "none": None,
        "longer": str(len(data) + 10),
        "shorter": str(max(0, len(data) - 10)),
        "garbage": "12abc",
    }[length]
    return bytes(data), action, header


def _call(router: Router, body: bytes, action: str, length: str | None) -> tuple[int, bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/soap",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "text/xml; charset=utf-8",
        "HTTP_SOAPACTION": action,
    }
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    captured: list[str] = []

    def start_response(status: str, _headers: list[tuple[str, str]], _exc: Any = None) -> Any:
        captured.append(status)
        return lambda _data: None

    result = router(environ, start_response)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(captured[0].split(" ", 1)[0]), payload


def test_whole_endpoint_always_answers_soap(app: tuple[Router, dict[str, str], Path]) -> None:
    router, secrets, staging = app

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=requests_(secrets))
    def check(request: tuple[bytes, str, str | None]) -> None:
        body, action, length = request
        status, payload = _call(router, body, action, length)
        reply = parse_reply(status, payload)
        assert reply.fault_code is None or reply.fault_code in DOCUMENTED_CODES
        assert reply.fault_code != "Server.Internal", reply.fault_string
        assert not list(staging.glob("*")), "a staging file outlived its request"

    check()


def test_stage_request_raises_only_gateway_errors(app: tuple[Router, dict[str, str], Path]) -> None:
    router, secrets, staging = app

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=requests_(secrets))
    def check(request: tuple[bytes, str, str | None]) -> None:
        body, action, length = request
        declared = int(length) if length and length.isdigit() else None
        held = memory_staged()
        try:
            staged = stage_request(
                io.BytesIO(body),
                declared,
                1 << 20,
                PAYLOADS,
                router.gateway.exchange.begin_staging,
                action,
                authenticate=router.soap._authenticate,
            )
        except GatewayError as error:
            assert error.code in DOCUMENTED_CODES
            assert not list(staging.glob("*")), "a refused request left its staging file"
            assert memory_staged() == held, "a refused request kept its staged bytes in memory"
            return
        leftovers = set(staging.glob("*"))
        on_disk = staged.staged is not None and isinstance(staged.staged.source, Path)
        assert leftovers == ({staged.staged.source} if on_disk else set())
        if staged.staged:
            staged.staged.discard()
        assert memory_staged() == held

    check()
