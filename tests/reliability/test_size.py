"""A 50 MB edXML document goes in and out of a real gateway worker in bounded memory; oversize is a 413 fault.

The gateway runs as ``serve --production --workers 1`` in its own process; the worker's peak RSS
(``VmHWM``, reset between phases) is read before and after one streamed send and one streamed
fetch. Peak growth must stay under 4x the document size for each request in flight (the
requirement; without the streaming path Spyne alone costs about 11x, stack-notes §1.7). The fetch
is hashed as it arrives and must be the sent bytes exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import (
    MEMORY_BUDGET,
    NGHE_AN,
    VPCP,
    GatewayFactory,
    StreamingSendBody,
    assert_still_serves,
    envelope,
    measure_send_and_fetch,
    parse_reply,
    post,
    raw_http,
    split_http,
    write_big_document,
)

DOCUMENT_SIZE = 50_000_000


@pytest.mark.slow
def test_fifty_megabyte_document_in_bounded_memory(tmp_path: Path, gateway_process: GatewayFactory) -> None:
    document = tmp_path / "big.edxml"
    write_big_document(document, DOCUMENT_SIZE)
    gateway = gateway_process(workers=1, env={"GATEWAY_MAX_DOCUMENT_BYTES": str(80 * 1024 * 1024)})
    figures = measure_send_and_fetch(gateway, document)
    print("\n" + figures.report())
    assert figures.size >= DOCUMENT_SIZE
    assert figures.send_ratio < MEMORY_BUDGET, figures.report()
    assert figures.fetch_ratio < MEMORY_BUDGET, figures.report()
    assert not any((gateway.blob_dir / "tmp").iterdir()), "the staged document outlived the request"


LIMIT = 2 * 1024 * 1024


def _chunked(head: bytes, body: bytes) -> bytes:
    """``body`` as HTTP/1.1 chunked transfer coding, so the gateway cannot know its size in advance."""
    out = bytearray(head)
    for start in range(0, len(body), 65536):
        piece = body[start : start + 65536]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def test_configured_maximum_is_a_413_fault(tmp_path: Path, gateway_process: GatewayFactory) -> None:
    gateway = gateway_process(workers=1, env={"GATEWAY_MAX_DOCUMENT_BYTES": str(LIMIT)})
    document = tmp_path / "over.edxml"
    write_big_document(document, LIMIT + 100_000)

    streamed = post(gateway.url, StreamingSendBody(document, VPCP, gateway.secrets[VPCP]), action="sendDocument")
    assert (streamed.status, streamed.fault_code) == (413, "Client.TooLarge"), streamed.fault_string
    assert "MiB" in (streamed.fault_string or "")

    announced = (
        "POST /soap HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: sendDocument\r\n"
        f"Content-Length: {10 * LIMIT}\r\n\r\n"
    ).encode()
    status, body = split_http(raw_http("127.0.0.1", gateway.port, announced, b"", shut_write=False))
    assert parse_reply(status, body).fault_code == "Client.TooLarge", "refused on Content-Length, before reading"

    unannounced = (
        b"POST /soap HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: sendDocument\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    payload = b"".join(StreamingSendBody(document, VPCP, gateway.secrets[VPCP]))
    status, body = split_http(raw_http("127.0.0.1", gateway.port, _chunked(unannounced, payload), b""))
    assert parse_reply(status, body).fault_code == "Client.TooLarge", "refused while streaming a chunked body"

    under = post(gateway.url, envelope("getPendingDocuments", "", NGHE_AN, gateway.secrets[NGHE_AN]))
    assert under.fault_code is None
    assert_still_serves(gateway.url, gateway.secrets)
