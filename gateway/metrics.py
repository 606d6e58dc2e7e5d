"""Prometheus metrics: request counters and latency per SOAP operation, faults by code, store gauges.

Two kinds of numbers, kept apart on purpose:

* **Per-process instruments** (requests, faults, latency) are counted by :class:`MetricsMiddleware`
  in whichever worker served the request. Under gunicorn each worker is its own process, so
  with ``PROMETHEUS_MULTIPROC_DIR`` set they are written to per-process files and summed at
  scrape time by ``MultiProcessCollector`` (prometheus_client docs, "Multiprocess mode"); without
  it they live in a private registry of this app.
* **Store gauges** (copies by status, queue depth, documents in flight, overdue, failed) describe
  the shared database, not a process. They are computed by :class:`StoreCollector` only in the
  process answering the scrape, on a registry built for that scrape, so several workers can
  never add them up twice.

The SOAP operation and the fault code are what the SOAP endpoint recorded in the WSGI environ
(``gateway.operation``, ``gateway.fault_code``: :mod:`gateway.soap.wsgi_keys`); nothing re-reads
request bodies or fault envelopes. Both are checked against the known names (the service's
operations, :func:`gateway.errors.fault_codes`), so a client cannot make label values up.
``serve`` under gunicorn must call :func:`prepare_multiprocess_dir` before the workers start and
install :func:`child_exit` as gunicorn's ``child_exit`` hook.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from gateway.errors import fault_codes
from gateway.soap import wsgi_keys
from gateway.store.database import Database
from gateway.web import queries

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TOP_QUEUES = 20
"""Agencies given their own queue-depth series; the rest only count in the total."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
UNKNOWN = "unknown"
OTHER = "other"

ROUTE_OPERATIONS = {"/health": "health", "/metrics": "metrics", "/dashboard": "dashboard", "/": "index"}


# -- multiprocess mode ----------------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The directory shared by gunicorn workers, when multiprocess mode is on."""
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def _use_multiprocess_values() -> None:
    """Make instruments created from now on write to the shared directory.

    prometheus_client chooses its value class when it is first imported; if anything imported
    it before the environment variable was set, instruments would silently stay per-process.
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()


def prepare_multiprocess_dir(path: Path) -> Path:
    """Set up multiprocess mode in the gunicorn master, before any worker starts.

    Uses ``$PROMETHEUS_MULTIPROC_DIR`` when the start script set it, else ``path``; creates the
    directory, removes the ``*.db`` files of an earlier run (their counts would be added to the
    new ones, and dead pids never go away), and exports the variable so workers inherit it.
    """
    directory = multiprocess_dir() or Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    _use_multiprocess_values()
    return directory


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` hook: drop the live-gauge files of a worker that ended."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(worker.pid, str(directory))


# -- store gauges ---------------------------------------------------------------------------------


class StoreCollector:
    """Gauges read from the database, at most once per ``cache_seconds`` per process.

    Registered only on a per-scrape registry. Scrapes in between get the families of the last
    reading (``gateway_store_gauges_age_seconds`` says how old), so however many scrapers there
    are, the store pays for one reading per interval per process; a failed reading is kept as
    long, so an unreachable database is not asked again by every scrape. Per-agency queue depths
    name which agencies have documents waiting, so they are produced only with ``agency_labels``.
    """

    def __init__(
        self,
        db: Database,
        ack_overdue_hours: int,
        top_queues: int = TOP_QUEUES,
        *,
        agency_labels: bool = False,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.ack_overdue_hours = ack_overdue_hours
        self.top_queues = top_queues
        self.agency_labels = agency_labels
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._reading: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        read_at, families = self._current()
        yield from families
        yield GaugeMetricFamily(
            "gateway_store_gauges_age_seconds",
            "Seconds since the store gauges were read (they are read at most every GATEWAY_METRICS_CACHE_SECONDS).",
            value=max(self.clock() - read_at, 0.0),
        )

    def _current(self) -> tuple[float, list[Metric]]:
        """The last reading if it is fresh enough, else a new one (one thread reads, the others wait)."""
        with self._lock:
            now = self.clock()
            if self._reading is None or now - self._reading[0] >= self.cache_seconds:
                self._reading = (now, self._measure())
            return self._reading

    def _measure(self) -> list[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("gateway_store_up", "1 if the store answered the metrics queries, else 0.")
        try:
            families = self._read(datetime.now(UTC))
        except Exception:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        seconds = GaugeMetricFamily(
            "gateway_store_scrape_seconds", "Time spent reading the store gauges.", value=time.perf_counter() - started
        )
        return [up, *families, seconds]

    def _read(self, now: datetime) -> list[Metric]:
        with self.db.transaction() as session:
            statuses = queries.copies_by_status(session)
            queues = queries.queue_depths(session, now, self.top_queues if self.agency_labels else 0)
            copies_in_flight, documents_in_flight = queries.in_flight_counts(session)
            overdue = queries.overdue_documents(session, now, self.ack_overdue_hours, limit=0).total
            failed = queries.failed_deliveries(session, limit=0).total
            relay = _relay_families(session, now)
        copies = GaugeMetricFamily(
            "gateway_recipient_copies",
            "Recipient copies of documents by current processing status (none: not fetched yet).",
            labels=["status"],
        )
        for status, count in sorted(statuses.items(), key=lambda item: item[0] or ""):
            copies.add_metric([status or "none"], count)
        per_agency: list[Metric] = []
        if self.agency_labels:
            depth = GaugeMetricFamily(
                "gateway_queue_depth",
                f"Pending items (documents and status messages) of the {self.top_queues} deepest agency queues.",
                labels=["agency"],
            )
            for queue in queues.deepest.items:
                depth.add_metric([queue.code], queue.pending)
            per_agency.append(depth)
        return [
            copies,
            *per_agency,
            GaugeMetricFamily("gateway_queue_depth_total", "Pending items in all queues.", value=queues.pending),
            GaugeMetricFamily(
                "gateway_queue_agencies", "Agencies with at least one pending item.", value=queues.deepest.total
            ),
            GaugeMetricFamily(
                "gateway_documents_in_flight",
                "Documents some recipient has not completed or rejected.",
                value=documents_in_flight,
            ),
            GaugeMetricFamily(
                "gateway_copies_in_flight", "Recipient copies not completed or rejected.", value=copies_in_flight
            ),
            GaugeMetricFamily(
                "gateway_overdue_copies",
                "In-flight copies past their due date or not acknowledged within GATEWAY_ACK_OVERDUE_HOURS.",
                value=overdue,
            ),
            GaugeMetricFamily(
                "gateway_failed_deliveries",
                "Queue items withdrawn or leased repeatedly without acknowledgement.",
                value=failed,
            ),
            *relay,
        ]


def _relay_families(session: Any, now: datetime) -> list[Metric]:
    """Relay gauges per next hop, and consignment totals read from the store (docs/federation.md)."""
    from sqlalchemy import func, select

    from gateway.federation import outbox
    from gateway.store.models import InboundConsignment, OutboxConsignment

    depth = GaugeMetricFamily(
        "gateway_relay_queue_depth", "Consignments not yet delivered, per next hop.", labels=["next_hop"]
    )
    oldest = GaugeMetricFamily(
        "gateway_relay_oldest_waiting_seconds",
        "Age of the oldest undelivered consignment, per next hop.",
        labels=["next_hop"],
    )
    failed = GaugeMetricFamily("gateway_relay_failed", "Consignments that failed, per next hop.", labels=["next_hop"])
    for hop in outbox.stats(session, now):
        depth.add_metric([hop.next_hop], hop.waiting + hop.sending)
        oldest.add_metric([hop.next_hop], hop.oldest_waiting_seconds)
        failed.add_metric([hop.next_hop], hop.failed)
    sent = CounterMetricFamily(
        "gateway_relay_consignments_delivered",
        "Consignments whose custody moved to the next hop (pushed to it, or pulled and acknowledged by it).",
        labels=["next_hop", "kind"],
    )
    rows = session.execute(
        select(OutboxConsignment.next_hop, OutboxConsignment.kind, func.count())
        .where(OutboxConsignment.state == outbox.DELIVERED)
        .group_by(OutboxConsignment.next_hop, OutboxConsignment.kind)
    )
    for hop, kind, count in rows:
        sent.add_metric([hop, kind], count)
    received = CounterMetricFamily(
        "gateway_relay_consignments_received",
        "Consignments this instance took custody of, per peer.",
        labels=["from_peer", "kind"],
    )
    rows = session.execute(
        select(InboundConsignment.from_peer, InboundConsignment.kind, func.count()).group_by(
            InboundConsignment.from_peer, InboundConsignment.kind
        )
    )
    for peer, kind, count in rows:
        received.add_metric([peer, kind], count)
    return [depth, oldest, failed, sent, received]


# -- per-process instruments and the middleware ---------------------------------------------------


class Metrics:
    """The request instruments of one app.

    In single-process mode they live in a registry of their own, so several apps in one process
    (tests) do not collide on the global registry; in multiprocess mode the registry is unused and
    the values go to the shared directory.
    """

    def __init__(self) -> None:
        directory = multiprocess_dir()
        self.multiprocess = directory is not None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            _use_multiprocess_values()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests by SOAP operation (or page) and HTTP status.",
            ["operation", "status"],
            registry=self.registry,
        )
        self.faults = Counter(
            "gateway_soap_faults",
            "SOAP faults answered, by operation and gateway fault code.",
            ["operation", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def scrape_registry(self, store: StoreCollector | None) -> CollectorRegistry:
        """A registry for one scrape: this process's or every worker's instruments, plus the store."""
        registry = CollectorRegistry()
        directory = multiprocess_dir()
        if self.multiprocess and directory is not None:
            multiprocess.MultiProcessCollector(registry, str(directory))
        else:
            registry.register(self.registry)
        if store is not None:
            registry.register(store)
        return registry


class _Observed:
    """The response iterable, timed until the server closes it (streamed documents included)."""

    def __init__(self, inner: Iterable[bytes], done: Callable[[], None]) -> None:
        self._inner = inner
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class MetricsMiddleware:
    """Counts and times every request to ``app``; answers ``/metrics`` itself.

    ``operations`` are the SOAP operation names that may appear as label values.
    """

    def __init__(
        self,
        app: WsgiApp,
        operations: Iterable[str],
        store: StoreCollector | None = None,
        metrics: Metrics | None = None,
        token: str = "",
    ) -> None:
        """``token``: when set, ``/metrics`` answers only requests that carry it (:func:`token_matches`)."""
        self.app = app
        self.token = token
        self.operations = frozenset(operations)
        self.fault_codes = fault_codes()
        self.store = store
        self.metrics = metrics or Metrics()
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        if path == "/metrics":
            return self._timed(environ, start_response, "metrics", self.exposition)
        if path == "/soap":
            query = environ.get("QUERY_STRING", "").lower()
            wsdl = environ.get("REQUEST_METHOD", "GET") == "GET" and query in ("wsdl", "singlewsdl")
            return self._timed(environ, start_response, "wsdl" if wsdl else None, self.app)
        return self._timed(environ, start_response, ROUTE_OPERATIONS.get(path, OTHER), self.app)

    def _labels(self, environ: dict[str, Any], route: str | None) -> tuple[str, str | None]:
        """(operation, fault code or None) as the SOAP endpoint recorded them, limited to known values."""
        operation = route or environ.get(wsgi_keys.OPERATION)
        if route is None and operation not in self.operations:
            operation = UNKNOWN
        code = environ.get(wsgi_keys.FAULT_CODE)
        if code is not None and code not in self.fault_codes:
            code = OTHER
        return str(operation), code

    def _timed(
        self, environ: dict[str, Any], start_response: StartResponse, route: str | None, app: WsgiApp
    ) -> Iterable[bytes]:
        """Run ``app``; when its response is closed, count it under ``route`` (or the SOAP operation)."""
        started = time.perf_counter()
        seen: dict[str, Any] = {}

        def observe(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        def done() -> None:
            operation, code = self._labels(environ, route)
            status = str(seen.get("status", "500")).split(" ", 1)[0]
            requests, latency = self._instruments(operation, status)
            requests.inc()
            latency.observe(time.perf_counter() - started)
            if code is not None:
                self.metrics.faults.labels(operation, code).inc()

        try:
            result = app(environ, observe)
        except Exception:
            seen.setdefault("status", "500")
            done()
            raise
        return _Observed(result, done)

    def _instruments(self, operation: str, status: str) -> tuple[Any, Any]:
        """The request counter and latency histogram of ``(operation, status)``, looked up once per pair.

        prometheus_client's ``labels()`` checks and locks on every call, as much again as the update;
        the pairs are few (known operations and routes, HTTP statuses), so they are kept.
        """
        key = (operation, status)
        pair = self._children.get(key)
        if pair is None:
            pair = self._children[key] = (
                self.metrics.requests.labels(operation, status),
                self.metrics.latency.labels(operation),
            )
        return pair

    def exposition(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """``/metrics``: the Prometheus text format (or OpenMetrics when the scraper asks for it)."""
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            body = b"GET /metrics\n"
            start_response("405 Method Not Allowed", [("Allow", "GET"), ("Content-Type", "text/plain")])
            return [body]
        if self.token and not token_matches(environ.get("HTTP_AUTHORIZATION"), self.token):
            body = b"/metrics needs the scrape token: Authorization: Bearer <token>, or Basic with it as password.\n"
            start_response(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Bearer realm="metrics"'),
                    ("WWW-Authenticate", 'Basic realm="metrics", charset="UTF-8"'),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
        body = encoder(self.metrics.scrape_registry(self.store))
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        start_response("200 OK", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def token_matches(authorization: str | None, token: str) -> bool:
    """True when ``Authorization`` carries ``token`` as a Bearer token or as a Basic password (any user).

    Prometheus' ``scrape_config`` can send either (``authorization``/``bearer_token_file`` or
    ``basic_auth``). Compared in constant time, so the comparison does not tell how much matched.
    """
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    try:
        raw = credentials.strip().encode("latin-1")  # WSGI hands header bytes over as latin-1 text
    except UnicodeEncodeError:
        return False
    if scheme.lower() == "bearer":
        offered = raw
    elif scheme.lower() == "basic":
        try:
            offered = base64.b64decode(raw, validate=True).partition(b":")[2]
        except binascii.Error:
            return False
    else:
        return False
    return hmac.compare_digest(offered, token.encode("utf-8"))
