"""The gateway as one WSGI application: SOAP endpoint, health check, metrics and the operator pages.

``create_app()`` is what gunicorn and the development server run. It opens the store once per
process; every request after that only borrows a connection. Every request passes through the
metrics middleware, which also answers ``/metrics``.
"""

from __future__ import annotations

import gc
import json
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from gateway.accesslog import AccessLog
from gateway.certification import Certifications
from gateway.certification.recorder import FaultRecorder
from gateway.config import Settings
from gateway.exchange.service import ExchangeService
from gateway.federation.service import FederationService
from gateway.metrics import MetricsMiddleware, StoreCollector
from gateway.soap import OPERATIONS, RELAY_OPERATIONS
from gateway.soap.endpoint import SoapEndpoint
from gateway.soap.relay import RelayEndpoint
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.web import Dashboard
from gateway.web.certificate import CertificationPages
from gateway.web.dashboard import RelayRequeue
from gateway.web.leadership import LeadershipPage

log = logging.getLogger("gateway")
STALE_TEMP_FILES = timedelta(hours=1)
"""Age after which a staging or temp file can only be a leftover of a crashed request."""

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class Gateway:
    """The long-lived parts of one gateway process."""

    settings: Settings
    db: Database
    blobs: BlobStore
    exchange: ExchangeService

    @classmethod
    def open(cls, settings: Settings) -> Gateway:
        db = Database(settings.database_url)
        assert settings.blob_dir is not None
        blobs = BlobStore(settings.blob_dir)
        removed = blobs.sweep_stale(STALE_TEMP_FILES)
        if removed:
            log.info("removed %d temporary files left by interrupted requests", removed)
        return cls(settings, db, blobs, ExchangeService(db, blobs, settings))


class Router:
    """Dispatches on the path: ``/soap`` SOAP, ``/health`` liveness, ``/dashboard`` the operator page.

    ``/metrics`` never reaches the routes: the metrics middleware around them answers it.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        assert gateway.settings.blob_dir is not None
        settings = gateway.settings
        self.soap = SoapEndpoint(
            gateway.exchange,
            settings.max_request_bytes,
            public_url=settings.public_url,
            trusted_proxy=settings.trusted_proxy,
        )
        self.dashboard = Dashboard(gateway.db, gateway.settings)
        self.relay = RelayEndpoint(
            FederationService(gateway.exchange),
            settings.max_request_bytes,
            public_url=settings.public_url,
            trusted_proxy=settings.trusted_proxy,
        )
        self.certifications = Certifications.from_settings(gateway.exchange)
        self.routes: dict[str, WsgiApp] = {
            "/soap": FaultRecorder(self.soap, self.certifications),
            "/relay": self.relay,
            "/certification": CertificationPages(self.certifications, settings.operator_password),
            "/leadership": LeadershipPage(gateway.db, settings.operator_password),
            "/health": self.health,
            "/dashboard": self.dashboard,
            "/relay-requeue": RelayRequeue(gateway.db, settings),
            "/": self.index,
        }
        store = StoreCollector(
            gateway.db,
            settings.ack_overdue_hours,
            agency_labels=settings.metrics_agency_labels,
            cache_seconds=settings.metrics_cache_seconds,
        )
        self.metrics = MetricsMiddleware(
            self.dispatch, OPERATIONS | RELAY_OPERATIONS, store, token=settings.metrics_token
        )
        self.outermost: WsgiApp = AccessLog(self.metrics)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self.outermost(environ, start_response)

    def dispatch(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The route for the path, or 404."""
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        app = self.routes.get(path)
        if app is None:
            return _plain(start_response, "404 Not Found", f"No page at {path}; the SOAP endpoint is /soap\n")
        return app(environ, start_response)

    def health(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """200 when the database answers and the blob store takes files, 503 otherwise.

        Load balancers and operators poll it. A full or read-only blob disk fails every send
        while the database still answers, so it is checked by creating (and removing) a file
        where blobs are written.
        """
        report = {"status": "ok", "database": "ok", "blobs": "ok"}
        try:
            with self.gateway.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            report["status"], report["database"] = "fail", type(exc).__name__
        try:
            with tempfile.TemporaryFile(dir=self.gateway.blobs.tmp_dir):
                pass
        except OSError as exc:
            report["status"], report["blobs"] = "fail", type(exc).__name__
        status = "200 OK" if report["status"] == "ok" else "503 Service Unavailable"
        body = json.dumps(report).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def index(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return _plain(
            start_response,
            "200 OK",
            "edxml-gateway: SOAP endpoint /soap, WSDL /soap?wsdl, health /health, metrics /metrics, "
            "operator dashboard /dashboard\n",
        )


def _plain(start_response: StartResponse, status: str, text_body: str) -> Iterable[bytes]:
    body = text_body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def create_app(settings: Settings | None = None) -> Router:
    """Build the WSGI application from ``settings`` (default: ``GATEWAY_*`` environment).

    Everything allocated so far lives as long as the process, so it is frozen out of the garbage
    collector's reach: later collections then only walk what requests allocate.
    """
    router = Router(Gateway.open(settings or Settings.from_env()))
    gc.freeze()
    return router
