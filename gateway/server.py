"""The two ways ``edxml-gateway serve`` runs the WSGI application, both safe to face slow clients.

A client that sends its headers a byte at a time, or announces a longer body than it sends, must
not take a worker away from everyone else (README "Deploying"). Both servers therefore hold idle
connections as greenlets (gevent), bound how many they hold, and give up on a request whose
headers or body do not arrive in time: headers must be complete ``header_timeout`` seconds after
the connection was accepted (or after the previous response on a kept-alive connection); every
socket operation gives up after ``body_timeout`` seconds without progress; the whole body must be
in ``body_timeout`` seconds after the headers (:class:`BodyDeadline`). Both hand the body to the
application as it arrives, so the SOAP endpoint refuses an unknown caller at ``<Body>`` without
reading the rest of the upload (tests/security/test_auth_first.py).

* ``run_production``: gunicorn with :class:`GatewayGeventWorker`, at most ``WORKER_CONNECTIONS``
  connections per worker process.
* ``run_development``: gevent's ``pywsgi.WSGIServer`` in the ``serve`` process itself, at most
  ``DEVELOPMENT_CONNECTIONS`` connections. It does not monkey-patch: ``serve`` has already
  imported the application, opened the database and created its locks before the server starts,
  and patching then would leave them half real, half cooperative. Unpatched, only the server's
  own sockets are cooperative: a request yields to the others only while it waits for its body or
  its client, when the gateway holds no lock, transaction or pooled connection, and everything else
  (SQLite or PostgreSQL, files, CPU) runs to completion before the next request is served. That
  serialises the application, which suits one developer's process; production has worker processes.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

from gateway.accesslog import configure_logging
from gateway.config import Settings
from gateway.errors import MalformedRequest
from gateway.store import blocking

log = logging.getLogger("gateway.server")

StartResponse = Callable[..., Any]
_T = TypeVar("_T")
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

WORKER_CONNECTIONS = 1000
"""Connections one gevent worker holds at once (gunicorn's default); more wait in the listen backlog."""
DEVELOPMENT_CONNECTIONS = 2000
"""Connections the development server holds at once; beyond it, it stops accepting until one closes."""
DEVELOPMENT_BACKLOG = 1024
"""Connections the kernel queues for the development server while it is busy or full."""
DEVELOPMENT_STOP_SECONDS = 2
"""Seconds the development server gives requests in flight on Ctrl+C or SIGTERM before ending them."""
DRAIN_CHUNK = 65536
"""Bytes read at a time when draining a body the application left unread."""
FILE_DESCRIPTORS = 65536
"""Open-file limit asked for at start (capped by the hard limit): every held connection is one."""


class BodyTooSlow(MalformedRequest):
    """The request body did not arrive in time; nothing was stored."""


class _DeadlineInput:
    """``wsgi.input`` that fails with :class:`BodyTooSlow` once the body is late or the socket fails.

    ``guard(seconds)`` wraps each blocking read (a gevent timeout in the production worker); a read
    error from the server (socket timeout, reset) becomes the same fault, which the SOAP endpoint
    answers like any malformed request instead of a crash.
    """

    def __init__(self, inner: Any, timeout: float, guard: Callable[[float], Any]) -> None:
        self._inner = inner
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._guard = guard
        self._readinto: Callable[[memoryview], int] | None = socket_readinto(inner) or _filling_readinto(inner)

    def _late(self) -> BodyTooSlow:
        return BodyTooSlow(
            f"The request body did not arrive within {self._timeout:g} s; nothing was stored. Send it again "
            "over a faster link, or ask the operator to raise GATEWAY_BODY_TIMEOUT."
        )

    def _call(self, method: Callable[..., _T], *args: Any) -> _T:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self._late()
        try:
            with self._guard(remaining):
                return method(*args)
        except _GuardExpired:
            raise self._late() from None
        except OSError as error:
            raise BodyTooSlow(
                f"The request body could not be read ({type(error).__name__}); nothing was stored. Send it again."
            ) from None

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._call(self._inner.read, size)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Read into ``buffer``; returns the bytes written, 0 at the body's end.

        Straight from the socket for gunicorn (see :func:`socket_readinto`), filling the buffer
        through the inner ``readinto`` where there is one, else by copying what ``read`` returns.
        """
        if self._readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        return self._call(self._readinto, buffer)

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self._call(self._inner.readline, size)
        return line

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def _filling_readinto(stream: Any) -> Callable[[memoryview], int] | None:
    """``readinto`` that fills the whole buffer unless the stream ends, from ``stream.readinto`` if it has one."""
    inner = getattr(stream, "readinto", None)
    if inner is None:
        return None

    def readinto(buffer: memoryview) -> int:
        filled = 0
        while filled < len(buffer):
            got = inner(buffer[filled:])
            if not got:
                break
            filled += got
        return filled

    return readinto


def socket_readinto(body: Any) -> Callable[[memoryview], int] | None:
    """``readinto`` for gunicorn's body of a request with a Content-Length, reading the socket directly.

    gunicorn's reader passes every received MiB through three ``BytesIO`` buffers, copying it four
    times after ``recv``: 0.64-0.74 ms of CPU per 1.8 MB body, against 0.16-0.21 ms for ``recv_into``
    one reused buffer (docs/performance.md, "Where a send's CPU goes"). Bytes gunicorn already holds
    (read ahead with the headers, or left by an earlier ``read``) are handed out first, and its
    count of the body's remaining bytes is kept, so it drains only what the application left unread
    and a pipelined next request stays where gunicorn expects it. None for any other body (chunked,
    another server, a gunicorn whose internals differ): the caller then copies from ``read``.
    """
    try:
        from gunicorn.http.body import Body, LengthReader
        from gunicorn.http.unreader import SocketUnreader
    except ImportError:
        return None
    reader = getattr(body, "reader", None)
    if not (
        isinstance(body, Body)
        and isinstance(reader, LengthReader)
        and isinstance(reader.unreader, SocketUnreader)
        and hasattr(reader.unreader, "take_buffered")
        and hasattr(body.buf, "tell")
    ):
        return None
    unreader = reader.unreader

    def readinto(buffer: memoryview) -> int:
        want = min(len(buffer), reader.length)
        if want <= 0:
            return 0
        if body.buf.tell():
            data = body.read(want)
            buffer[: len(data)] = data
            return len(data)
        filled = 0
        try:
            held = unreader.take_buffered()
            if held:
                filled = min(len(held), want)
                buffer[:filled] = held[:filled]
                if len(held) > filled:
                    unreader.unread(held[filled:])
            while filled < want:
                got = unreader.sock.recv_into(buffer[filled:want])
                if not got:
                    break
                filled += got
        except BaseException:
            # Where the next request starts is unknown: gunicorn closes the connection (types-gunicorn
            # predates the attribute).
            body.failed = True  # type: ignore[attr-defined]
            raise
        finally:
            reader.length -= filled
        return filled

    return readinto


class _DeadlineWorker(Protocol):
    """The gunicorn worker class of ``_worker_class``, with its two deadlines (set before forking)."""

    header_timeout: float
    body_timeout: float


class _GuardExpired(Exception):
    """Raised by a read guard when the body deadline passes during a blocking read."""


def _gevent_guard(seconds: float) -> Any:
    import gevent

    return gevent.Timeout(seconds, _GuardExpired)


class BodyDeadline:
    """WSGI middleware giving each request body ``timeout`` seconds from the moment the app starts reading."""

    def __init__(self, app: WsgiApp, timeout: float, guard: Callable[[float], Any] | None = None) -> None:
        self.app = app
        self.timeout = timeout
        self.guard = guard or (lambda _seconds: contextlib.nullcontext())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], self.timeout, self.guard)
        return self.app(environ, start_response)


def raise_file_limit(wanted: int = FILE_DESCRIPTORS) -> int:
    """Raise the soft open-file limit towards ``wanted`` (a systemd default is 1024); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as error:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, error)
            return soft
        return target
    return soft


# -- development: gevent's WSGI server, without monkey-patching -----------------------------------


def _server_name(host: str) -> str:
    """``SERVER_NAME`` for requests without a Host header: the machine's name when bound to every address."""
    return socket.gethostname() if host in ("", "0.0.0.0", "::") else host


def build_development_server(settings: Settings, host: str, port: int, app: WsgiApp | None = None) -> Any:
    """The gevent ``WSGIServer`` ``run_development`` runs (not started); ``app`` defaults to the gateway."""
    from gevent import Timeout
    from gevent.pool import Pool
    from gevent.pywsgi import Input, LoggingLogAdapter, WSGIHandler, WSGIServer

    from gateway.app import create_app

    header_timeout, body_timeout = settings.header_timeout, settings.body_timeout

    class DrainedLater(Input):
        """A request body that does not delay the response: what the application left unread is
        drained by :class:`DeadlineHandler` after the response, under the next header deadline."""

        __slots__ = ()

        def _discard(self) -> None:
            """gevent reads the rest of the body here, before the connection can be closed: not yet."""

    class DeadlineHandler(WSGIHandler):
        """One connection: headers within ``header_timeout``, unread bodies drained like gunicorn's.

        The header deadline starts when a request is awaited (after accept, or after the previous
        response) and ends once the headers are in; on expiry the connection closes silently, as
        in the production worker. A body the application did not read (a refused caller's upload)
        is drained before the next request under that same deadline, as gunicorn does, so the
        refusal goes out before any more of the body is read.
        """

        _header_deadline: Timeout | None = None

        def handle_one_request(self) -> tuple[str, bytes] | Literal[True] | None:
            deadline = self._header_deadline = Timeout(header_timeout)
            deadline.start()
            try:
                return super().handle_one_request() if self._drain_previous_body() else None
            except Timeout as expired:
                if expired is not deadline:
                    raise
                return None
            finally:
                deadline.close()

        def _drain_previous_body(self) -> bool:
            """Read what the last request left of its body; False when the connection cannot go on."""
            previous, self.wsgi_input = self.wsgi_input, None
            if previous is None:
                return True
            previous.send_100_continue_enabled = False  # never ask for a body only to drop it
            try:
                while previous.read(DRAIN_CHUNK):
                    pass
            except OSError:  # the client went away, or broke the chunked framing
                return False
            return True

        def get_environ(self) -> dict[str, Any]:
            if self._header_deadline is not None:
                self._header_deadline.close()  # headers are in; the body has BodyDeadline and the socket timeout
            environ = super().get_environ()
            read = self.wsgi_input
            if read is not None and environ["wsgi.input"] is read:
                self.wsgi_input = environ["wsgi.input"] = DrainedLater(
                    read.rfile, read.content_length, read.socket, read.chunked_input
                )
            return environ

        def handle_error(
            self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
        ) -> None:
            if isinstance(v, TimeoutError):  # the client stopped reading the response for body_timeout
                log.info("closed a connection whose client stopped reading for %g s", body_timeout)
                self.close_connection = True
                return
            super().handle_error(t, v, tb)

    class DevelopmentServer(WSGIServer):
        """Every socket operation gives up after ``body_timeout`` without progress, as in the production worker."""

        def handle(self, sock: Any, address: Any) -> None:
            sock.settimeout(body_timeout)
            super().handle(sock, address)

    raise_file_limit()
    application = BodyDeadline(app or create_app(settings), body_timeout, _gevent_guard)
    return DevelopmentServer(
        (host, port),
        application,
        backlog=DEVELOPMENT_BACKLOG,
        spawn=Pool(DEVELOPMENT_CONNECTIONS),
        log=None,  # the application's access log (gateway/accesslog.py) already records each request
        error_log=LoggingLogAdapter(log, logging.WARNING),  # bad request lines; never sent to the client
        handler_class=DeadlineHandler,
        environ={"SERVER_NAME": _server_name(host)},  # instead of a reverse DNS lookup at start
    )


def run_development(settings: Settings, host: str, port: int) -> None:
    """One process, one greenlet per connection: for a laptop, tests and demos. Returns on Ctrl+C or SIGTERM.

    Both signals stop accepting and give requests in flight ``DEVELOPMENT_STOP_SECONDS`` to finish,
    so ``serve``'s exit callbacks (stopping a ``--relay`` process) run afterwards.
    """
    import gevent

    configure_logging()
    server = build_development_server(settings, host, port)
    server.start()
    print(
        f"Serving http://{host}:{server.server_port}/soap (development server; Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, server.close)
    server.serve_forever(stop_timeout=DEVELOPMENT_STOP_SECONDS)


# -- production: gunicorn + gevent ----------------------------------------------------------------


def _prepare_patched_worker() -> None:
    """Choose how this monkey-patched worker waits: psycopg's waits, and blocking disk work (a thread pool)."""
    _cooperative_psycopg()
    blocking.run_off_worker_with(_in_thread_pool)


def _cooperative_psycopg() -> None:
    """Make psycopg wait for the server through gevent, except where a connection holds the worker.

    psycopg picks its wait function at import: a C loop that blocks the whole worker unless the
    ``select`` module is already patched. ``serve`` opens the database in the master (importing
    psycopg) before gunicorn forks, so the choice is redone here, in the patched worker: gevent's
    select, so one request's query lets the worker's other requests run, but the C loop for a
    connection that holds the audit chain's lock (gateway/store/blocking.py), so that lock is
    released as soon as the database answers.
    """
    waiting: Any = sys.modules.get("psycopg.waiting")  # psycopg.waiting, if imported
    if waiting is None:
        return
    blocking_wait = getattr(waiting, "wait_c", None)  # absent when psycopg runs without its C extension
    cooperative_wait = waiting.wait_select
    waiting.wait = cooperative_wait if blocking_wait is None else _worker_wait(blocking_wait, cooperative_wait)


def _worker_wait(blocking_wait: Callable[..., Any], cooperative_wait: Callable[..., Any]) -> Callable[..., Any]:
    """A psycopg wait function that blocks for connections holding the worker and yields for the rest."""

    def wait(gen: Any, fileno: int, *args: Any, **kwargs: Any) -> Any:
        chosen = blocking_wait if blocking.holds_worker(fileno) else cooperative_wait
        return chosen(gen, fileno, *args, **kwargs)

    return wait


def _in_thread_pool(work: Callable[[], Any]) -> Any:
    """Run blocking disk work in gevent's thread pool, the worker's other requests running meanwhile."""
    from gevent import get_hub

    return get_hub().threadpool.apply(work)


def _worker_class() -> type[_DeadlineWorker]:
    from gevent import Timeout
    from gunicorn.workers.base_async import AsyncWorker
    from gunicorn.workers.ggevent import GeventWorker

    class GatewayGeventWorker(GeventWorker):
        """gevent worker with a header deadline and an idle timeout on every socket operation.

        gunicorn's async workers read headers under ``timeout_ctx()``: here that is
        ``header_timeout`` from accept (or from the previous response), after which the connection
        is closed silently. The accepted socket gets ``body_timeout`` as its timeout, so a body or
        a response that stops moving fails instead of holding its greenlet forever.
        """

        header_timeout: float = 10
        body_timeout: float = 300

        def init_process(self) -> None:
            self.patch()
            _prepare_patched_worker()
            from gevent import hub

            hub.reinit()
            AsyncWorker.init_process(self)

        def timeout_ctx(self) -> Any:
            # gevent documents exception=False as a silent timeout; its stubs leave False out.
            return Timeout(self.header_timeout, False)  # type: ignore[arg-type]

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            client.settimeout(self.body_timeout)
            AsyncWorker.handle(self, listener, client, addr)

    return GatewayGeventWorker


def build_production_options(settings: Settings, host: str, port: int, workers: int, timeout: int) -> dict[str, Any]:
    """gunicorn settings for ``run_production`` (``keepalive`` must be set: it turns the header deadline on)."""
    from gateway import metrics

    worker_class = _worker_class()
    worker_class.header_timeout = settings.header_timeout
    worker_class.body_timeout = settings.body_timeout
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": worker_class,
        "worker_connections": WORKER_CONNECTIONS,
        "keepalive": settings.header_timeout,
        "timeout": timeout,
        "child_exit": metrics.child_exit,
        # gunicorn would otherwise take X-Forwarded-Proto (and -Ssl, -Protocol) from 127.0.0.1 as the
        # request's scheme: the WSDL's address then followed headers any local process can send, with
        # or without GATEWAY_TRUSTED_PROXY. Forwarded headers are the gateway's decision alone.
        "forwarded_allow_ips": "",
    }


def run_production(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    timeout: int,
    app_factory: Callable[[Settings], WsgiApp] | None = None,
) -> None:
    """gunicorn, ``workers`` gevent worker processes; each builds its own app (and database pool) after fork.

    ``timeout`` is gunicorn's: a worker whose event loop is stuck that long is restarted.
    ``app_factory`` replaces :func:`gateway.app.create_app` (the benchmarks add a bare operation
    beside the gateway and must measure it under exactly these settings).
    """
    from gunicorn.app.base import BaseApplication

    from gateway import metrics

    configure_logging()
    raise_file_limit()
    metrics_dir = metrics.prepare_multiprocess_dir(settings.data_dir / "prometheus")
    print(f"Prometheus multiprocess directory: {metrics_dir}", file=sys.stderr, flush=True)
    options = build_production_options(settings, host, port, workers, timeout)

    class GatewayApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 25 opens a control socket under $HOME; the gateway has no use for it, and
                # the systemd unit gives the service no home directory.
                self.cfg.set("control_socket_disable", True)

        # PEP 3333 makes environ a dict; types-gunicorn types the app's environ as a MutableMapping.
        def load(self) -> WsgiApp:  # type: ignore[override]
            from gateway.app import create_app

            return BodyDeadline((app_factory or create_app)(settings), settings.body_timeout, _gevent_guard)

    GatewayApplication().run()
