"""CPU before authentication (issue 10.3): a stranger's request costs a few KiB of parsing, nothing more.

Writing sendDocument's base64 as character references (``&#65;`` per byte) made an 85 MB body with
wrong credentials cost 55 s of CPU before AuthenticationFailed, and the whole body was decoded to
disk before the credentials were checked. Now the envelope reader authenticates when it reaches
``<Body>``, before any payload byte is decoded, and answers without reading the rest; expat hands
character data over in large pieces, so references cost time linear in their number.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Callable

import pytest
from security_support import VPCP, Reply, Server, auth_header, envelope_parts, growth_ratio, parse_reply, post

DECLARED = 60_000_000
"""Content-Length announced by the unauthenticated request, of which only the start is ever sent."""


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP response, read up to its Content-Length (the connection may stay open or be reset after)."""
    received = bytearray()
    while b"\r\n\r\n" not in received:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            pytest.fail(f"the connection was reset before a whole response head arrived: {bytes(received)!r}")
        assert chunk, f"the connection closed before a response: {bytes(received)!r}"
        received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    body = bytearray(body)
    while len(body) < length:
        with contextlib.suppress(ConnectionResetError):
            chunk = sock.recv(65536)
            if chunk:
                body += chunk
                continue
        break
    return int(head.split(b" ", 2)[1]), bytes(body)


def test_unauthenticated_sixty_megabytes_are_refused_from_the_first_kilobytes(server: Server) -> None:
    """Both servers stream the body to the gateway: the refusal comes while most of it is still unsent."""
    head, _ = envelope_parts("sendDocument", auth_header(VPCP, "not-the-secret"))
    start = head + b"<g:document>" + b"&#65;" * 12_000
    request = (
        "POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n"
        f'SOAPAction: "sendDocument"\r\nContent-Length: {DECLARED}\r\n\r\n'
    ).encode() + start
    already = set(server.staging_dir.glob("*"))  # other tests of the module share this server
    before = server.cpu_seconds()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        try:
            status, body = _read_response(sock)
        except TimeoutError:
            pytest.fail(f"{server.kind}: no answer within 30 s of the first {len(start):,} bytes of {DECLARED:,}")
    reply = parse_reply(status, body)
    spent = server.cpu_seconds() - before
    print(f"\n{server.kind}: refused after {len(start):,} of {DECLARED:,} bytes, gateway CPU {spent:.3f} s")
    assert (status, reply.fault_code) == (500, "Client.AuthenticationFailed"), reply
    started = set(server.staging_dir.glob("*")) - already
    assert not started, f"a staging file was started for an unauthenticated request: {started}"


def _as_references(data: bytes) -> bytes:
    """Base64 of ``data`` with every character written as a decimal character reference."""
    return b"".join(b"&#%d;" % char for char in base64.b64encode(data))


def test_character_references_cost_linear_time(server: Server) -> None:
    head, tail = envelope_parts("sendDocument", auth_header(VPCP, server.secrets[VPCP]))

    def make(size: int) -> Callable[[], Reply]:
        # Not XML once decoded: a MalformedEdxml refusal. The first four bytes are fixed, since a zero
        # byte among them is read as UTF-16/32 (one random fourth byte in 256; it failed a full run on 3.13).
        body = head + b"<g:document>" + _as_references(b"<x y" + os.urandom(size)) + b"</g:document>" + tail

        def request() -> Reply:
            reply = post(server.url, body, "sendDocument")
            assert reply.fault_code == "Client.MalformedEdxml", reply
            assert "not well-formed XML" in reply.fault_string
            return reply

        return request

    ratio = growth_ratio(server, make, 1_500_000, rounds=2)
    assert ratio < 3, f"doubling the references multiplied the gateway's CPU time by {ratio:.1f}"
