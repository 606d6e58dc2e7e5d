"""``serve``: the SOAP endpoint on the development server or gunicorn, optionally as a ready demo."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from typing import Any

import click
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from gateway import directory
from gateway.cli import ui
from gateway.config import Settings
from gateway.errors import Unavailable
from gateway.store.database import Database, SingleNodeOnly, single_node
from gateway.store.models import Agency

DEMO_AGENCIES = ("000.00.00.G22", "000.00.00.H41", "000.00.00.H14")
DEMO_CREDENTIALS_FILE = "demo-credentials.json"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="gunicorn gevent workers.")
@click.option("--production", is_flag=True, help="Run under gunicorn even with one worker.")
@click.option("--timeout", default=120, show_default=True, type=click.IntRange(min=1), help="gunicorn worker timeout.")
@click.option("--demo", is_flag=True, help="Migrate, load the shipped directory and issue three demo credentials.")
@click.option("--relay", "with_relay", is_flag=True, help="Also run the relay loop in one background process.")
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, workers: int, production: bool, timeout: int, demo: bool, with_relay: bool
) -> None:
    """Serve the SOAP endpoint (/soap, WSDL at /soap?wsdl) and /health."""
    settings = ui.settings_of(ctx)
    with contextlib.ExitStack() as serving:
        try:
            serving.enter_context(single_node(settings.database_url))
        except SingleNodeOnly as refusal:
            click.echo(f"error: {refusal}", err=True)  # one line whatever its length (rich would fold paths)
            raise click.exceptions.Exit(1) from None
        db = ui.open_database(settings, require_schema=not demo)
        try:
            if demo:
                _prepare_demo(db, settings, host, port)
            _warn_if_never_vacuumed(db)
        finally:
            db.dispose()
        if with_relay:
            from gateway.cli.federation import check_relay_settings, spawn_relay

            check_relay_settings(settings)
            relay_process = spawn_relay(settings)
            serving.callback(_stop, relay_process)
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        if workers > 1 or production:
            _serve_gunicorn(settings, host, port, workers, timeout)
        else:
            _serve_development(settings, host, port)


def _warn_if_never_vacuumed(db: Database) -> None:
    """One line on stderr when PostgreSQL will not vacuum the gateway's tables by itself; serving goes on."""
    try:
        off = db.vacuum_settings_off()
    except Unavailable:
        return  # the database was just reached; if it has gone since, the workers will say so
    if off:
        click.echo(
            f"warning: PostgreSQL runs with {' and '.join(off)} off, so it never vacuums or analyses the "
            "gateway's tables by itself: the queue's rows are updated on every fetch and acknowledgement, "
            f"and receiving slows down as dead rows pile up. Turn {'them' if len(off) > 1 else 'it'} on in "
            "postgresql.conf, or run VACUUM ANALYZE on the gateway's database every night.",
            err=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the relay serve started, when serve ends."""
    process.terminate()
    process.wait(timeout=30)


def _exit_on_sigterm(_signum: int, _frame: Any) -> None:
    """SIGTERM ends serve through its exit callbacks, which stop the relay it started."""
    raise SystemExit(0)


def _prepare_demo(db: Database, settings: Settings, host: str, port: int) -> None:
    """Make a fresh install usable at once: schema, directory, and secrets for three agencies."""
    db.upgrade()
    credentials_path = settings.data_dir / DEMO_CREDENTIALS_FILE
    known: dict[str, str] = {}
    if credentials_path.is_file():
        with contextlib.suppress(ValueError, OSError):
            known = {e["agency"]: e["secret"] for e in json.loads(credentials_path.read_text(encoding="utf-8"))}
    at = ui.now()
    from gateway.exchange.credentials import secret_matches

    entries = []
    with db.transaction() as session:
        if session.scalar(select(Agency.id).limit(1)) is None:
            result = directory.load_shipped_directory(session, at)
            ui.err().print(f"Loaded the shipped directory: {result.added} agencies.", markup=False)
        for code in DEMO_AGENCIES:
            agency = directory.get_agency(session, code)
            live = directory.live_credentials(session, code, at)
            secret = known.get(code)
            if secret is None or not any(secret_matches(secret, c.secret_hash) for c in live):
                secret = directory.issue_credential(session, code, at)
            entries.append({"agency": code, "name": agency.name, "secret": secret})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(credentials_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as output:
        json.dump(entries, output, ensure_ascii=False, indent=2)
    os.chmod(credentials_path, 0o600)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown_host}:{port}/soap"
    table = Table(title="Demo agencies (also in " + str(credentials_path) + ")")
    for column in ("agency", "name", "secret"):
        table.add_column(column, no_wrap=column != "name")
    for entry in entries:
        table.add_row(*(Text(entry[k]) for k in ("agency", "name", "secret")))
    console = ui.out()
    console.print(table)
    console.print(f"WSDL: {url}?wsdl", markup=False)
    console.print(
        f"Try: edxml-gateway send --url {url} --agency {entries[0]['agency']} --secret ... "
        f"FILE --to {entries[1]['agency']}",
        markup=False,
    )


def _serve_development(settings: Settings, host: str, port: int) -> None:
    """gevent's WSGI server in this process: bounded connections, the body streamed (gateway/server.py)."""
    from gateway.server import run_development

    run_development(settings, host, port)


def _serve_gunicorn(settings: Settings, host: str, port: int, workers: int, timeout: int) -> None:
    """gunicorn with gevent workers; each worker builds its own app (and database pool) after fork."""
    from gateway.server import run_production

    run_production(settings, host, port, workers, timeout)
