"""The production server's request body read straight from the socket (gateway/server.py ``socket_readinto``).

gunicorn's own parser reads each request here from a real socket pair, so these tests also fail
when a gunicorn upgrade changes the internals the direct reader relies on (it would then fall back
to copying, silently slower).
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

from gateway.server import BodyDeadline, socket_readinto


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = socket.socketpair()
    server.settimeout(10)
    yield client, server
    client.close()
    server.close()


def _request(body: bytes, *, length: int | None = None, extra: bytes = b"") -> bytes:
    size = len(body) if length is None else length
    return b"POST /soap HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n" % size + body + extra


def _send_later(client: socket.socket, data: bytes, *, close: bool = False) -> threading.Thread:
    """Send from a thread: a body larger than the socket buffers would block a send before the reads."""

    def send() -> None:
        client.sendall(data)
        if close:
            client.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _read_all(readinto: object, total: int, size: int) -> bytes:
    assert callable(readinto)
    buffer = bytearray(size)
    out = bytearray()
    while True:
        got = readinto(memoryview(buffer))
        if not got:
            return bytes(out)
        out += buffer[:got]
        assert len(out) <= total


def test_reads_what_gunicorn_read_ahead_then_the_socket_and_leaves_the_next_request(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = pair
    body = bytes(range(256)) * 20_000  # 5 MB: read ahead with the headers, then many recv_into calls
    following = _request(b"<next/>")
    sender = _send_later(client, _request(body) + following)
    parser = RequestParser(Config(), server, ("127.0.0.1", 0))
    request = next(parser)
    readinto = socket_readinto(request.body)
    assert readinto is not None, "this gunicorn's body reader has changed: the direct path no longer applies"
    assert _read_all(readinto, len(body), 1 << 20) == body
    sender.join()
    assert next(parser).body.read() == b"<next/>"


def test_mixes_with_read_and_lets_gunicorn_drain_only_the_rest(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    body = b"a" * 300_000 + b"b" * 300_000
    sender = _send_later(client, _request(body) + _request(b"second"))
    parser = RequestParser(Config(), server, ("127.0.0.1", 0))
    request = next(parser)
    readinto = socket_readinto(request.body)
    assert readinto is not None
    assert request.body.read(1000) == b"a" * 1000
    buffer = bytearray(100_000)
    assert readinto(memoryview(buffer)) == 100_000
    assert bytes(buffer) == b"a" * 100_000
    # the application stops here; gunicorn drains the remaining 499,000 bytes before the next request
    assert next(parser).body.read() == b"second"
    sender.join()


def test_a_body_cut_short_returns_what_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    sender = _send_later(client, _request(b"x" * 70_000, length=100_000), close=True)
    request = next(RequestParser(Config(), server, ("127.0.0.1", 0)))
    readinto = socket_readinto(request.body)
    assert _read_all(readinto, 100_000, 1 << 20) == b"x" * 70_000
    sender.join()


def test_other_bodies_have_no_direct_path(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    chunked = b"POST /soap HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    sender = _send_later(client, chunked)
    request = next(RequestParser(Config(), server, ("127.0.0.1", 0)))
    assert socket_readinto(request.body) is None
    assert socket_readinto(object()) is None
    sender.join()


def test_the_deadline_input_reads_into_buffers_from_any_wsgi_input() -> None:
    """Without a direct path or an inner ``readinto``, ``readinto`` copies what ``read`` returns."""

    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, size: int = -1) -> bytes:
            piece, self.data = self.data[: min(size, 7)], self.data[min(size, 7) :]
            return piece

    seen: dict[str, object] = {}

    def app(environ: dict[str, object], _start: object) -> list[bytes]:
        seen["input"] = environ["wsgi.input"]
        return []

    BodyDeadline(app, 30)({"wsgi.input": ReadOnly(b"0123456789" * 3)}, None)
    wsgi_input = seen["input"]
    buffer = bytearray(20)
    assert wsgi_input.readinto(memoryview(buffer)) == 7  # type: ignore[attr-defined]  # read's own piece
    assert bytes(buffer[:7]) == b"0123456"


def test_the_deadline_input_fills_buffers_through_an_inner_readinto() -> None:
    seen: dict[str, object] = {}

    def app(environ: dict[str, object], _start: object) -> list[bytes]:
        seen["input"] = environ["wsgi.input"]
        return []

    class Trickle(io.RawIOBase):
        """A stream whose ``readinto`` gives at most 3 bytes a call, as a socket may."""

        def __init__(self, data: bytes) -> None:
            self.data = data

        def readinto(self, buffer: Any) -> int:
            size = min(3, len(buffer))
            piece, self.data = self.data[:size], self.data[size:]
            buffer[: len(piece)] = piece
            return len(piece)

    BodyDeadline(app, 30)({"wsgi.input": Trickle(b"abcdefghij")}, None)
    wsgi_input = seen["input"]
    buffer = bytearray(8)
    assert wsgi_input.readinto(memoryview(buffer)) == 8  # type: ignore[attr-defined]
    assert bytes(buffer) == b"abcdefgh"
    assert wsgi_input.readinto(memoryview(buffer)) == 2  # type: ignore[attr-defined]
    assert wsgi_input.readinto(memoryview(buffer)) == 0  # type: ignore[attr-defined]
