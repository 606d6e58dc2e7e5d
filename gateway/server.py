"""The two ways ``edxml-gateway serve`` runs the WSGI application, both safe to face slow clients.

A client that sends its headers a byte at a time, or announces a longer body than it sends, must
not take a worker away from everyone else (README "Deploying"). Both servers therefore hold idle
connections without a thread each, bound how many they hold, and give up on a request whose
headers or body do not arrive in time:

* ``run_production``: gunicorn with :class:`GatewayGeventWorker` (gevent: a connection waiting
  for bytes costs a greenlet, not a process). Headers must be complete ``header_timeout``
  seconds after the connection was accepted (or after the previous response on a kept-alive
  connection); every socket operation gives up after ``body_timeout`` seconds without progress;
  the whole body must be in ``body_timeout`` seconds after the headers (:class:`BodyDeadline`).
  At most ``WORKER_CONNECTIONS`` connections per worker.
* ``run_development``: waitress (pure Python; an event loop holds the connections and a fixed
  pool of ``DEVELOPMENT_THREADS`` threads runs the application). Waitress reads the whole body
  before the application sees it and has only an idle timeout, so :func:`_enforce_deadlines`
  closes connections whose headers or body are late; at most ``DEVELOPMENT_CONNECTIONS``.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from gateway.accesslog import configure_logging
from gateway.config import Settings
from gateway.errors import MalformedRequest

log = logging.getLogger("gateway.server")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

WORKER_CONNECTIONS = 1000
"""Connections one gevent worker holds at once (gunicorn's default); more wait in the listen backlog."""
DEVELOPMENT_CONNECTIONS = 2000
"""Connections the development server holds at once; beyond it, waitress stops accepting."""
DEVELOPMENT_THREADS = 8
"""Threads that run requests in the development server, whatever the number of connections."""
DEADLINE_CHECK_INTERVAL = 1
"""Seconds between the development server's sweeps for late headers and bodies."""
ACCEPT_BATCH = 64
"""Connections the development server accepts per wake-up of its event loop."""
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

    def _late(self) -> BodyTooSlow:
        return BodyTooSlow(
            f"The request body did not arrive within {self._timeout:g} s; nothing was stored. Send it again "
            "over a faster link, or ask the operator to raise GATEWAY_BODY_TIMEOUT."
        )

    def _call(self, method: Callable[..., bytes], *args: Any) -> bytes:
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
        return self._call(self._inner.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._call(self._inner.readline, size)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


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


# -- development: waitress ------------------------------------------------------------------------


def _enforce_deadlines(server: Any, header_timeout: float, body_timeout: float) -> None:
    """Make waitress close connections whose request headers or body are late.

    Waitress only closes connections idle for ``channel_timeout``; a client trickling a byte every
    few seconds is never idle. Its periodic ``maintenance`` sweep (every ``cleanup_interval``) is
    extended: a request still being received is closed once it is older than ``header_timeout``
    (headers incomplete) or ``body_timeout`` (body incomplete). Age counts from the sweep that
    first saw the request, so deadlines hold to within ``DEADLINE_CHECK_INTERVAL``.
    """
    first_seen: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
    idle_sweep = server.maintenance

    def maintenance(now: float) -> None:
        idle_sweep(now)
        for channel in list(server.active_channels.values()):
            request = channel.request
            if request is None or channel.requests:
                continue
            started = first_seen.setdefault(request, min(now, max(channel.creation_time, channel.last_activity)))
            limit = body_timeout if request.headers_finished else header_timeout
            if now - started > limit:
                channel.will_close = True

    server.maintenance = maintenance


def _accept_in_batches(server: Any, limit: int) -> None:
    """Let waitress accept up to ``ACCEPT_BATCH`` waiting connections per event-loop pass instead of one.

    Each pass polls every open connection; accepting one per pass made a burst of 1,000 new
    connections cost a million descriptor checks, and a normal client behind the burst waited
    more than a second (tests/deploy/test_slow_clients.py).
    """
    accept_one = server.handle_accept

    def handle_accept() -> None:
        for _ in range(ACCEPT_BATCH):
            before = len(server.active_channels)
            accept_one()
            if len(server.active_channels) == before or len(server.active_channels) >= limit:
                break

    server.handle_accept = handle_accept


def build_development_server(settings: Settings, host: str, port: int, app: WsgiApp | None = None) -> Any:
    """The waitress server ``run_development`` runs (not started); ``app`` defaults to the gateway."""
    from waitress.server import create_server  # what ``waitress.create_server`` re-exports

    from gateway.app import create_app

    raise_file_limit()
    application = BodyDeadline(app or create_app(settings), settings.body_timeout)
    server = create_server(
        application,
        host=host,
        port=port,
        threads=DEVELOPMENT_THREADS,
        connection_limit=DEVELOPMENT_CONNECTIONS,
        channel_timeout=settings.header_timeout,
        cleanup_interval=DEADLINE_CHECK_INTERVAL,
        asyncore_use_poll=True,  # select() fails past 1024 descriptors
        max_request_body_size=settings.max_request_bytes + 1,  # the gateway answers its own 413 fault
        clear_untrusted_proxy_headers=False,  # the application decides which proxy headers to trust
        ident="edxml-gateway",
        expose_tracebacks=False,
    )
    _enforce_deadlines(server, settings.header_timeout, settings.body_timeout)
    _accept_in_batches(server, DEVELOPMENT_CONNECTIONS)
    return server


def run_development(settings: Settings, host: str, port: int) -> None:
    """One process, a fixed pool of threads: for a laptop, tests and demos. Returns on Ctrl+C."""
    configure_logging()
    server = build_development_server(settings, host, port)
    bound = server.effective_port
    print(f"Serving http://{host}:{bound}/soap (development server; Ctrl+C to stop)", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    server.close()


# -- production: gunicorn + gevent ----------------------------------------------------------------


def _cooperative_psycopg() -> None:
    """Make psycopg wait for the server through gevent when it was imported before monkey-patching.

    psycopg picks its wait function at import: a C loop that blocks the whole worker unless the
    ``select`` module is already patched. ``serve`` opens the database in the master (importing
    psycopg) before gunicorn forks, so the choice is redone here, in the patched worker.
    """
    waiting: Any = sys.modules.get("psycopg.waiting")  # psycopg.waiting, if imported
    if waiting is not None and waiting.wait is getattr(waiting, "wait_c", None):
        waiting.wait = waiting.wait_select


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
            _cooperative_psycopg()
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
    }


def run_production(settings: Settings, host: str, port: int, workers: int, timeout: int) -> None:
    """gunicorn, ``workers`` gevent worker processes; each builds its own app (and database pool) after fork.

    ``timeout`` is gunicorn's: a worker whose event loop is stuck that long is restarted.
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

            return BodyDeadline(create_app(settings), settings.body_timeout, _gevent_guard)

    GatewayApplication().run()
