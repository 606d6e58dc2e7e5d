"""The gateway under gunicorn for the benchmarks, plus a bare Spyne service on ``/bare`` in the same workers.

An empty poll (getPendingDocuments for an agency with nothing waiting) should cost little more
than the SOAP stack itself. To measure "the SOAP stack itself" on the same workers in the same
run, this app serves, next to the gateway, one Spyne operation that does no storage work:
``bare()`` returns a constant, parsed and validated by Spyne with lxml exactly as the gateway's
requests are, through the same WSGI process. ``tools/bench.py`` and ``tools/sim_national.py``
start it as::

    GATEWAY_DATA_DIR=... python tools/bench_app.py --workers 4 --port 8080 [--agencies CODE ...] [--idle-agencies 8]

It migrates the store, loads the shipped directory when the store is empty, issues one secret
per requested agency (written to ``$GATEWAY_DATA_DIR/bench-credentials.json``, as
``serve --demo`` writes its own) and serves with the same gunicorn settings as
``edxml-gateway serve --production --workers N``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gateway.soap.binding.compat  # noqa: F401  (first: lets Spyne import on Python 3.12+)

# isort: split
from spyne import Application, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from sqlalchemy import select

from gateway import directory
from gateway.app import create_app as create_gateway_app
from gateway.config import Settings
from gateway.server import run_production
from gateway.store.database import Database
from gateway.store.models import Agency

BARE_NS = "urn:edxml-gateway:bench:bare"
BARE_PATH = "/bare"
CREDENTIALS_FILE = "bench-credentials.json"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BareService(ServiceBase):
    """One operation that touches no storage: the floor of what any SOAP call costs on these workers."""

    @rpc(_returns=Unicode)
    def bare(ctx: Any) -> str:
        return "ok"


def bare_application() -> WsgiApplication:
    """Spyne with the gateway's protocol settings (SOAP 1.1, lxml validation of the body)."""
    application = Application(
        [BareService],
        tns=BARE_NS,
        name="Bare",
        in_protocol=Soap11(validator="lxml"),
        out_protocol=Soap11(),
    )
    return WsgiApplication(application)


def create_app(settings: Settings | None = None) -> WsgiApp:
    """The gateway's WSGI application, with ``/bare`` routed to :func:`bare_application`."""
    bare = bare_application()
    gateway = create_gateway_app(settings)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == BARE_PATH:
            return bare(environ, start_response)
        return gateway(environ, start_response)

    return app


def prepare(settings: Settings, agencies: list[str], idle: int) -> list[dict[str, Any]]:
    """Migrate, load the shipped directory if empty, and issue secrets (plus ``idle`` agencies nobody writes to)."""
    db = Database(settings.database_url)
    try:
        db.upgrade()
        now = datetime.now(UTC)
        with db.transaction() as session:
            if session.scalar(select(Agency.id).limit(1)) is None:
                directory.load_shipped_directory(session, now)
            others = session.scalars(
                select(Agency.code).where(Agency.active.is_(True), Agency.code.not_in(agencies)).order_by(Agency.code)
            ).all()
            if len(others) < idle:
                raise SystemExit(f"only {len(others)} other active agencies in the directory, {idle} idle ones asked")
            entries = [
                {"agency": code, "secret": directory.issue_credential(session, code, now), "idle": False}
                for code in agencies
            ]
            entries += [
                {"agency": code, "secret": directory.issue_credential(session, code, now), "idle": True}
                for code in others[:idle]
            ]
    finally:
        db.dispose()
    return entries


def serve(settings: Settings, host: str, port: int, workers: int, timeout: int) -> None:
    """gunicorn exactly as ``edxml-gateway serve --production --workers N`` runs it (gevent workers,
    deadlines, metrics), serving :func:`create_app` instead of the gateway alone."""
    run_production(settings, host, port, workers, timeout, create_app)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--agencies", nargs="*", default=[], help="agency codes to issue secrets for")
    parser.add_argument(
        "--idle-agencies", type=int, default=0, help="also issue secrets for N agencies nobody writes to"
    )
    parser.add_argument("--no-prepare", action="store_true", help="the store is ready (tools/sim_national.py)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if not args.no_prepare:
        entries = prepare(settings, args.agencies, args.idle_agencies)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = Path(settings.data_dir) / CREDENTIALS_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(entries, out, indent=2)
    serve(settings, args.host, args.port, args.workers, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
