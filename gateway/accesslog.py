"""One log line per HTTP request: who called what, how it ended, how long it took.

The line carries only what the SOAP endpoint put in the WSGI environ (docs: INTERFACES item 1:
``gateway.agency``, ``gateway.operation``, ``gateway.fault_code``) and what the server knows
(method, path, status, bytes, duration, client address). It never carries request or response
bodies, headers, query strings or anything derived from them: documents and secrets travel in
bodies and headers, and an access log is read by more people than the documents are meant for.

Lines go to the ``gateway.access`` logger; ``configure_logging`` sends the ``gateway`` loggers to
stderr, which systemd puts in the journal.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger("gateway.access")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_/:@")
_MAX_FIELD = 200
_ALL_SAFE = re.compile(r"[a-zA-Z0-9.\-_/:@]*")
"""Matches exactly the strings made of ``_SAFE`` characters only."""


def _field(value: object) -> str:
    """A value as one token: ``-`` when absent, unsafe characters escaped, long values cut.

    Almost every value (codes, operation names, paths, numbers) is safe as it is; only the others
    are escaped character by character, which cost more than the rest of the line.
    """
    if value is None or value == "":
        return "-"
    text = str(value)[:_MAX_FIELD]
    if _ALL_SAFE.fullmatch(text):
        return text
    return "".join(c if c in _SAFE else f"%{ord(c):02X}" if ord(c) < 256 else "?" for c in text)


class AccessLog:
    """WSGI middleware writing one ``gateway.access`` line when each response is finished (or fails)."""

    def __init__(self, app: WsgiApp, logger: logging.Logger = log) -> None:
        self.app = app
        self.log = logger

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None}

        def recording_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state["status"] = status.split(" ", 1)[0]
            return (
                start_response(status, headers, exc_info) if exc_info is not None else start_response(status, headers)
            )

        try:
            body = self.app(environ, recording_start_response)
        except BaseException:
            self._write(environ, state["status"] or "500", started, 0)
            raise
        return _Finished(body, lambda sent: self._write(environ, state["status"] or "500", started, sent))

    def _write(self, environ: dict[str, Any], status: str, started: float, sent: int) -> None:
        self.log.info(
            "agency=%s operation=%s fault=%s status=%s duration_ms=%.1f method=%s path=%s bytes_in=%s "
            "bytes_out=%d client=%s",
            _field(environ.get("gateway.agency")),
            _field(environ.get("gateway.operation")),
            _field(environ.get("gateway.fault_code")),
            _field(status),
            (time.perf_counter() - started) * 1000,
            _field(environ.get("REQUEST_METHOD")),
            _field(environ.get("PATH_INFO")),
            _field(environ.get("CONTENT_LENGTH")),
            sent,
            _field(environ.get("REMOTE_ADDR")),
        )


class _Finished:
    """The response iterable, counting bytes and logging once when the server closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int], None]) -> None:
        self._body = body
        self._done: Callable[[int], None] | None = done
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if self._done is not None:
                done, self._done = self._done, None
                done(self._sent)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the gateway's loggers (access lines included) to stderr once per process: the journal under systemd."""
    root = logging.getLogger("gateway")
    if any(getattr(handler, "_gateway_stderr", False) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler._gateway_stderr = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
