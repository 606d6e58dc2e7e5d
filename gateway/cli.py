"""``edxml-gateway``: run the gateway, administer it, and talk to it as an agency would.

Operator commands (serve, db, agencies, credentials, report, audit) work on the store named by
the ``GATEWAY_*`` environment or ``--data-dir``/``--database-url``. Client commands (send,
pending, fetch, ack, status, history) call a running gateway over SOAP with zeep, exactly as an
agency's software would, so they double as a smoke test of the published contract.

Every failure ends with one clear line on stderr and a non-zero exit, never a traceback: the
people running this are clerks and operators, not Python developers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError

from gateway import directory, reports
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.exchange.workflow import STATUS_NAMES
from gateway.store import audit
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Delivery, Document, StatusEvent

NS = "urn:edxml-gateway:soap:v1"
DEFAULT_URL = "http://127.0.0.1:8080/soap"
DEMO_AGENCIES = ("000.00.00.G22", "000.00.00.H41", "000.00.00.H14")
DEMO_CREDENTIALS_FILE = "demo-credentials.json"
EXIT_INTERNAL = 70
"""Exit status for a bug (sysexits EX_SOFTWARE), distinct from 1 (refused) and 2 (usage)."""
CLIENT_EXTRA_MISSING = "error: the agency commands need zeep (not installed): pip install 'edxml-gateway[client]'"
SHOWN_ONCE = "This secret is shown only once: the gateway keeps only its hash. Give it to the agency now."

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool) -> Console:
    """A console that, when piped or captured, is wide enough for tables not to fold codes and ids."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width)


def _out() -> Console:
    return _console(stderr=False)


def _err() -> Console:
    return _console(stderr=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    _err().print(message, markup=False)
    raise click.exceptions.Exit(code)


def _now() -> datetime:
    return datetime.now(UTC)


class SoapFault(Exception):
    """A SOAP fault from the gateway, with the code stripped of its namespace prefix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"error {code}: {message}")
        self.code = code
        self.message = message


class _Cli(click.Group):
    """Turns every error a command lets through into one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except SoapFault as fault:
            _fail(str(fault))
        except directory.DirectoryError as error:
            _fail(f"error: {error.message}")
        except GatewayError as error:
            _fail(f"error {error.code}: {error.message}")
        except SQLAlchemyError as error:
            _fail(f"database error: {type(error).__name__}: {getattr(error, 'orig', None) or error}")
        except OSError as error:
            _fail(f"error: {error.strerror or error}{f': {error.filename}' if error.filename else ''}")
        except Exception as error:
            _fail(f"internal error ({type(error).__name__}): {error}", code=EXIT_INTERNAL)


@dataclass
class _Options:
    """Group-level options; settings are built on first use so ``--help`` never touches the store."""

    overrides: dict[str, object]

    def settings(self) -> Settings:
        return Settings.from_env(**self.overrides)


def _settings(ctx: click.Context) -> Settings:
    options: _Options = ctx.find_object(_Options) or _Options({})
    return options.settings()


def _database(settings: Settings, require_schema: bool = True) -> Database:
    """Open the store; refuse early and clearly when it is unreachable or not migrated yet."""
    db = Database(settings.database_url)
    shown = db.url.render_as_string(hide_password=True)
    try:
        has_schema = inspect(db.engine).has_table("agencies")
    except SQLAlchemyError as error:
        _fail(f"error: cannot open the database {shown}: {getattr(error, 'orig', None) or error}")
    if require_schema and not has_schema:
        _fail(f"error: the database {shown} has no gateway tables yet; run `edxml-gateway db upgrade` first.")
    return db


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data directory (env GATEWAY_DATA_DIR)."
)
@click.option("--database-url", help="SQLAlchemy database URL (env GATEWAY_DATABASE_URL; default SQLite in data dir).")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, database_url: str | None) -> None:
    """edXML document exchange gateway (QCVN 102:2016): operate it, or call it as an agency."""
    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url:
        overrides["database_url"] = database_url
    ctx.obj = _Options(overrides)


# -- serve ----------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="gunicorn gevent workers.")
@click.option("--production", is_flag=True, help="Run under gunicorn even with one worker.")
@click.option("--timeout", default=120, show_default=True, type=click.IntRange(min=1), help="gunicorn worker timeout.")
@click.option("--demo", is_flag=True, help="Migrate, load the shipped directory and issue three demo credentials.")
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, workers: int, production: bool, timeout: int, demo: bool
) -> None:
    """Serve the SOAP endpoint (/soap, WSDL at /soap?wsdl) and /health."""
    settings = _settings(ctx)
    if demo:
        _prepare_demo(settings, host, port)
    else:
        _database(settings).dispose()
    if workers > 1 or production:
        _serve_gunicorn(settings, host, port, workers, timeout)
    else:
        _serve_development(settings, host, port)


def _prepare_demo(settings: Settings, host: str, port: int) -> None:
    """Make a fresh install usable at once: schema, directory, and secrets for three agencies."""
    db = _database(settings, require_schema=False)
    db.upgrade()
    credentials_path = settings.data_dir / DEMO_CREDENTIALS_FILE
    known: dict[str, str] = {}
    if credentials_path.is_file():
        with contextlib.suppress(ValueError, OSError):
            known = {e["agency"]: e["secret"] for e in json.loads(credentials_path.read_text(encoding="utf-8"))}
    now = _now()
    from gateway.exchange.credentials import secret_matches

    entries = []
    with db.transaction() as session:
        if session.scalar(select(Agency.id).limit(1)) is None:
            result = directory.load_shipped_directory(session, now)
            _err().print(f"Loaded the shipped directory: {result.added} agencies.", markup=False)
        for code in DEMO_AGENCIES:
            agency = directory.get_agency(session, code)
            live = directory.live_credentials(session, code, now)
            secret = known.get(code)
            if secret is None or not any(secret_matches(secret, c.secret_hash) for c in live):
                secret = directory.issue_credential(session, code, now)
            entries.append({"agency": code, "name": agency.name, "secret": secret})
    db.dispose()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(credentials_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(entries, out, ensure_ascii=False, indent=2)
    os.chmod(credentials_path, 0o600)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown_host}:{port}/soap"
    table = Table(title="Demo agencies (also in " + str(credentials_path) + ")")
    for column in ("agency", "name", "secret"):
        table.add_column(column, no_wrap=column != "name")
    for entry in entries:
        table.add_row(*(Text(entry[k]) for k in ("agency", "name", "secret")))
    console = _out()
    console.print(table)
    console.print(f"WSDL: {url}?wsdl", markup=False)
    console.print(f"Try: edxml-gateway send --url {url} --agency {entries[0]['agency']} --secret ... "
                  f"FILE --to {entries[1]['agency']}", markup=False)


def _serve_development(settings: Settings, host: str, port: int) -> None:
    """waitress: one process, bounded threads and connections (gateway/server.py)."""
    from gateway.server import run_development

    run_development(settings, host, port)


def _serve_gunicorn(settings: Settings, host: str, port: int, workers: int, timeout: int) -> None:
    """gunicorn with gevent workers; each worker builds its own app (and database pool) after fork."""
    from gateway.server import run_production

    run_production(settings, host, port, workers, timeout)


# -- db -------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the gateway's tables to the current version."""
    database = _database(_settings(ctx), require_schema=False)
    database.upgrade()
    _out().print(f"Database {database.url.render_as_string(hide_password=True)} is up to date.", markup=False)


# -- agencies -------------------------------------------------------------------------------------


@main.group()
def agencies() -> None:
    """The agency directory."""


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


def _print_import(result: directory.ImportResult) -> None:
    _out().print(
        f"{result.total} agencies read: {result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged.",
        markup=False,
    )


@agencies.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def agencies_import(ctx: click.Context, file: Path) -> None:
    """Add or update agencies from a CSV or JSON FILE (columns code,name,level,parent_code,test_code,note).

    The import is all or nothing: one bad line and nothing changes.
    """
    try:
        rows = directory.read_rows(file)
    except directory.DirectoryError as error:
        _fail(f"error: {file}: {error.message}")
    database = _database(_settings(ctx))
    with _progress(_err()) as progress, database.transaction() as session:
        task = progress.add_task(f"Importing {file.name}", total=len(rows))
        try:
            result = directory.import_agencies(session, rows, _now(), on_row=lambda _row: progress.advance(task))
        except directory.DirectoryError as error:
            _fail(f"error: {file}: {error.message}")
    _print_import(result)


@agencies.command("load-shipped")
@click.pass_context
def agencies_load_shipped(ctx: click.Context) -> None:
    """Import the 2016 starting directory shipped with the gateway (see gateway/data/README.md)."""
    with _database(_settings(ctx)).transaction() as session:
        result = directory.load_shipped_directory(session, _now())
    _print_import(result)


@agencies.command("list")
@click.option("--level", type=click.IntRange(1, 4), help="Only this level (1 ministry/province … 4).")
@click.option("--parent", help="Only the direct children of this agency code.")
@click.pass_context
def agencies_list(ctx: click.Context, level: int | None, parent: str | None) -> None:
    """List agencies with their state and number of live credentials."""
    now = _now()
    with _database(_settings(ctx)).transaction() as session:
        rows = [
            (a, sum(1 for c in a.credentials if directory.credential_is_live(c, now)))
            for a in directory.list_agencies(session, level=level, parent=parent)
        ]
    table = Table(title=f"{len(rows)} agencies")
    for column in ("code", "name", "level", "parent", "active", "credentials", "test code"):
        table.add_column(column, no_wrap=column != "name")
    for agency, live in rows:
        table.add_row(
            Text(agency.code), Text(agency.name), str(agency.level), Text(agency.parent_code or ""),
            "yes" if agency.active else "DISABLED", str(live), "yes" if agency.test_code else "",
        )
    _out().print(table)


@agencies.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--level", required=True, type=click.IntRange(1, 4))
@click.option("--parent", help="Parent agency code (must already be in the directory).")
@click.option("--test-code", is_flag=True, help="Mark the code as not official (for testing only).")
@click.pass_context
def agencies_add(ctx: click.Context, code: str, name: str, level: int, parent: str | None, test_code: bool) -> None:
    """Add one agency to the directory."""
    with _database(_settings(ctx)).transaction() as session:
        agency = directory.add_agency(session, code, name, level, _now(), parent_code=parent, test_code=test_code)
        shown = f"Added {agency.code} {agency.name} (level {agency.level})."
    _out().print(shown, markup=False)


@agencies.command("disable")
@click.argument("code")
@click.pass_context
def agencies_disable(ctx: click.Context, code: str) -> None:
    """Stop an agency: it can no longer authenticate or be addressed; its history stays."""
    with _database(_settings(ctx)).transaction() as session:
        directory.disable_agency(session, code, _now())
    _out().print(f"Disabled {code}.", markup=False)


@agencies.command("enable")
@click.argument("code")
@click.pass_context
def agencies_enable(ctx: click.Context, code: str) -> None:
    """Re-enable a disabled agency."""
    with _database(_settings(ctx)).transaction() as session:
        directory.enable_agency(session, code, _now())
    _out().print(f"Enabled {code}.", markup=False)


# -- credentials ----------------------------------------------------------------------------------


@main.group()
def credentials() -> None:
    """Agency secrets (the gateway stores only their hashes)."""


def _show_secret(code: str, secret: str, note: str) -> None:
    """The secret alone on stdout (so scripts can capture it), the explanation on stderr."""
    err = _err()
    err.print(f"New secret for {code}{note}:", markup=False)
    _out().print(secret, markup=False)
    err.print(f"Warning: {SHOWN_ONCE}", markup=False, style="bold yellow")


@credentials.command("issue")
@click.argument("code")
@click.option("--expires-days", type=click.IntRange(min=1), help="The secret stops working after N days.")
@click.pass_context
def credentials_issue(ctx: click.Context, code: str, expires_days: int | None) -> None:
    """Issue an additional secret for an agency."""
    now = _now()
    expires_at = now + timedelta(days=expires_days) if expires_days else None
    with _database(_settings(ctx)).transaction() as session:
        secret = directory.issue_credential(session, code, now, expires_at)
    note = f" (expires {expires_at:%Y-%m-%d %H:%M} UTC)" if expires_at else ""
    _show_secret(code, secret, note)


@credentials.command("rotate")
@click.argument("code")
@click.option(
    "--grace-hours", type=click.FloatRange(min=0), help="Old secrets keep working this long (default: stop now)."
)
@click.pass_context
def credentials_rotate(ctx: click.Context, code: str, grace_hours: float | None) -> None:
    """Issue a new secret and retire the agency's current ones, now or after a grace period."""
    grace = timedelta(hours=grace_hours) if grace_hours else None
    with _database(_settings(ctx)).transaction() as session:
        secret = directory.rotate_credential(session, code, _now(), grace)
    note = f"; old secrets stop working in {grace_hours:g} h" if grace else "; old secrets no longer work"
    _show_secret(code, secret, note)


@credentials.command("revoke")
@click.argument("code")
@click.pass_context
def credentials_revoke(ctx: click.Context, code: str) -> None:
    """Revoke every secret of an agency at once (it can no longer connect)."""
    with _database(_settings(ctx)).transaction() as session:
        count = directory.revoke_credentials(session, code, _now())
    _out().print(f"Revoked {count} credential(s) of {code}.", markup=False)


# -- report ---------------------------------------------------------------------------------------


def _vietnam_today() -> date:
    return datetime.now(reports.VIETNAM_TIME).date()


@main.command()
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First day (default: 29 days before --to).")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day, included (default: today).")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table as CSV.")
@click.option(
    "--grades-csv", type=click.Path(dir_okay=False, path_type=Path), help="Write every agency's grade as CSV."
)
@click.pass_context
def report(
    ctx: click.Context,
    first: datetime | None,
    last: datetime | None,
    csv_file: Path | None,
    grades_csv: Path | None,
) -> None:
    """Interconnection report per agency level: connected, send, receive, report status (Vietnam dates)."""
    last_day = last.date() if last else _vietnam_today()
    first_day = first.date() if first else last_day - timedelta(days=29)
    if first_day > last_day:
        raise click.BadParameter(f"--from {first_day} is after --to {last_day}", param_hint="--from")
    start, end = reports.period_for_days(first_day, last_day)
    now = _now()
    with _database(_settings(ctx)).transaction() as session:
        result = reports.interconnection_report(session, start, end, as_of=min(end, now))
        grades = reports.connection_grades(session, as_of=now)
    header, rows = reports.interconnection_table(result)
    counts_at = len(reports.INTERCONNECTION_COLUMNS)
    console = _out()
    table = Table(title=f"Interconnection {first_day} – {last_day} (Vietnam days; agencies counted)")
    for column in header[:counts_at]:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row[:counts_at]))
    console.print(table)
    codes_table = Table(title="Statuses reported in the period, by level of the reporting agency")
    codes_table.add_column("level", justify="right")
    for column in header[counts_at:]:
        code = column.removeprefix("status_")
        codes_table.add_column(f"{code} {STATUS_NAMES[code]}", justify="right")
    for row in rows:
        codes_table.add_row(str(row[0]), *(str(v) for v in row[counts_at:]))
    console.print(codes_table)
    grade_table = Table(title="Test grades now (activity ever)")
    grade_table.add_column("level", justify="right")
    for grade in reports.GRADES:
        grade_table.add_column(grade, justify="right")
    for level, counts in reports.grade_counts(grades).items():
        total = sum(counts.values())
        grade_table.add_row(str(level), *(f"{counts[g]}/{total}" for g in reports.GRADES))
    console.print(grade_table)
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8", newline="") as out:
            reports.write_interconnection_csv(result, out)
        _err().print(f"Wrote {csv_file}", markup=False)
    if grades_csv is not None:
        with grades_csv.open("w", encoding="utf-8", newline="") as out:
            reports.write_csv(grades, out, extra=("grade",))
        _err().print(f"Wrote {grades_csv}", markup=False)


# -- audit ----------------------------------------------------------------------------------------


@main.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the whole chain; exit 1 at the first entry that was edited, deleted or reordered."""
    from gateway.store.models import AuditEntry

    with _database(_settings(ctx)).transaction() as session:
        result = audit.verify(session)
        head = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    if not result.ok:
        _fail(
            f"audit chain BROKEN at entry {result.first_broken_id} (after {result.checked} good entries): "
            f"{result.reason}"
        )
    head = head or audit.GENESIS_HASH
    _out().print(f"audit chain intact: {result.checked} entries checked; head hash {head}", markup=False)


def _row_dict(obj: Any) -> dict[str, Any]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(obj).mapper.column_attrs}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@audit_group.command("export")
@click.argument("document_id")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def audit_export(ctx: click.Context, document_id: str, output: Path) -> None:
    """Write the evidence about one document (row, recipients, deliveries, statuses, audit entries) as JSON."""
    settings = _settings(ctx)
    with _database(settings).transaction() as session:
        document = session.get(Document, document_id)
        if document is None:
            _fail(f"error: no document {document_id} in this gateway (use the gateway's documentId).")
        codes = {a.id: a.code for a in session.scalars(select(Agency))}
        recipients = [
            {**_row_dict(r), "agency_code": codes[r.agency_id], "agency_name": r.agency.name}
            for r in document.recipients
        ]
        deliveries = session.scalars(
            select(Delivery).where(Delivery.document_id == document.id).order_by(Delivery.created_at, Delivery.id)
        )
        events = session.scalars(
            select(StatusEvent).where(StatusEvent.document_id == document.id).order_by(StatusEvent.id)
        )
        evidence = {
            "exported_at": _now(),
            "document": {**_row_dict(document), "sender_code": codes[document.sender_id]},
            "recipients": recipients,
            "deliveries": [{**_row_dict(d), "agency_code": codes[d.agency_id]} for d in deliveries],
            "status_events": [
                {
                    **_row_dict(e),
                    "recipient_code": codes[e.recipient_agency_id],
                    "reporter_code": codes[e.reporter_agency_id],
                }
                for e in events
            ],
            "audit_entries": [_row_dict(e) for e in audit.entries_for_document(session, document.id)],
        }
        chain = audit.verify(session)
    assert settings.blob_dir is not None
    blobs = BlobStore(settings.blob_dir)
    evidence["blob_intact"] = blobs.verify(document.blob_sha256)
    evidence["audit_chain"] = {"ok": chain.ok, "checked": chain.checked, "first_broken_id": chain.first_broken_id}
    output.write_text(json.dumps(evidence, ensure_ascii=False, indent=2, default=_json_default), encoding="utf-8")
    _out().print(
        f"Wrote {output}: {len(recipients)} recipient(s), {len(evidence['status_events'])} status event(s), "
        f"{len(evidence['audit_entries'])} audit entr(ies).",
        markup=False,
    )


# -- client side (SOAP, zeep) ---------------------------------------------------------------------


def client_options(func: F) -> F:
    """``--url``, ``--agency``, ``--secret`` with their environment variables."""
    func = click.option("--secret", envvar="EDXML_SECRET", help="Agency secret (env EDXML_SECRET).")(func)
    func = click.option("--agency", envvar="EDXML_AGENCY", help="Your agency code (env EDXML_AGENCY).")(func)
    func = click.option(
        "--url", envvar="EDXML_GATEWAY_URL", default=DEFAULT_URL, show_default=True,
        help="Gateway SOAP endpoint (env EDXML_GATEWAY_URL).",
    )(func)
    return func


class GatewayClient:
    """A zeep client for one agency: every call carries its AuthHeader."""

    def __init__(self, url: str, agency: str | None, secret: str | None) -> None:
        if not agency or not secret:
            _fail("error: give --agency and --secret (or set EDXML_AGENCY and EDXML_SECRET).")
        try:
            import zeep
            from zeep.transports import Transport
        except ModuleNotFoundError:
            _fail(CLIENT_EXTRA_MISSING)

        self.agency = agency
        self.url = url
        with _soap_errors(url):
            self.client = zeep.Client(f"{url}?wsdl", transport=Transport(timeout=30, operation_timeout=600))
            binding = next(iter(self.client.wsdl.bindings))
            self.service = self.client.create_service(binding, url)
            self.header = self.client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=agency, secret=secret)

    def call(self, operation: str, **arguments: Any) -> Any:
        with _soap_errors(self.url):
            return getattr(self.service, operation)(**arguments, _soapheaders=[self.header])

    def staff(self, **fields: str | None) -> Any:
        return self.client.get_type(f"{{{NS}}}StaffInfo")(**fields)


@contextlib.contextmanager
def _soap_errors(url: str) -> Iterator[None]:
    """Faults become SoapFault; transport problems end the command with one line."""
    try:
        import requests
        from zeep.exceptions import Error as ZeepError
        from zeep.exceptions import Fault, TransportError
    except ModuleNotFoundError:
        _fail(CLIENT_EXTRA_MISSING)

    try:
        yield
    except Fault as fault:
        code = str(fault.code or "Server").rpartition(":")[2]
        raise SoapFault(code, str(fault.message or "").strip()) from None
    except requests.exceptions.ConnectionError:
        _fail(f"error: cannot reach the gateway at {url} (is it running? check --url or EDXML_GATEWAY_URL).")
    except requests.exceptions.Timeout:
        _fail(f"error: the gateway at {url} did not answer in time.")
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else "an error"
        _fail(f"error: {url} answered HTTP {status}; is --url the gateway's /soap endpoint?")
    except requests.exceptions.RequestException as error:
        _fail(f"error: request to {url} failed: {error}")
    except TransportError as error:
        _fail(f"error: {url} answered HTTP {error.status_code}; is --url the gateway's /soap endpoint?")
    except ZeepError as error:
        _fail(f"error: unexpected answer from {url}: {error}")


def _items(value: Any) -> list[Any]:
    """The elements of a SOAP array however zeep shaped it (None, list, or wrapper object)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    for key in ("PendingItem", "StatusEntry", "Agency", "string"):
        inner = getattr(value, key, None) if not isinstance(value, dict) else value.get(key)
        if inner is not None:
            return list(inner) if isinstance(inner, list) else [inner]
    return [value]


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "recipients", multiple=True, help="Recipient agency code (repeatable); for non-.edxml files.")
@click.option("--subject", help="Subject of the new document (default: the file names).")
@click.option("--code-number", help="Số: document number (default: from the current time).")
@click.option("--code-notation", default="VBĐT", show_default=True, help="Ký hiệu: document notation.")
@client_options
def send(
    files: tuple[Path, ...],
    recipients: tuple[str, ...],
    subject: str | None,
    code_number: str | None,
    code_notation: str,
    url: str,
    agency: str | None,
    secret: str | None,
) -> None:
    """Send .edxml FILEs as they are; any other files go as attachments of one new edXML document."""
    edxml_files = [f for f in files if f.suffix.lower() == ".edxml"]
    attachments = [f for f in files if f.suffix.lower() != ".edxml"]
    if attachments and not recipients:
        raise click.UsageError("wrapping files in a new document needs at least one --to CODE")
    client = GatewayClient(url, agency, secret)
    assert agency is not None
    jobs: list[tuple[str, Callable[[], bytes]]] = [(str(f), f.read_bytes) for f in edxml_files]
    if attachments:
        document = _new_document(client, agency, attachments, recipients, subject, code_number, code_notation)
        jobs.append((", ".join(f.name for f in attachments), lambda: document))
    failures = 0
    console = _out()
    with _progress(_err()) as progress:
        task = progress.add_task("Sending", total=len(jobs), visible=len(jobs) > 1)
        for label, payload in jobs:
            try:
                receipt = client.call("sendDocument", document=payload())
            except SoapFault as fault:
                failures += 1
                progress.console.print(f"{label}: {fault}", markup=False, style="red")
            else:
                duplicate = " (already sent before: nothing new stored)" if receipt.duplicate else ""
                signer = getattr(receipt, "signer", None)
                duplicate += f"; signed by {signer}" if signer else ""
                console.print(
                    f"{label}: documentId {receipt.documentId} edxmlDocumentId {receipt.edxmlDocumentId} "
                    f"to {', '.join(_items(receipt.recipients))}{duplicate}",
                    markup=False,
                )
            progress.advance(task)
    if failures:
        _fail(f"{failures} of {len(jobs)} documents were not sent." if len(jobs) > 1 else "Nothing was sent.")


def _new_document(
    client: GatewayClient,
    agency: str,
    files: Sequence[Path],
    recipients: Sequence[str],
    subject: str | None,
    code_number: str | None,
    code_notation: str,
) -> bytes:
    """A Công văn from ``agency`` carrying ``files``; names come from the gateway's directory."""
    from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes

    names = {a.code: a.name for a in _items(client.call("getAgencies", parentCode=None))}
    now = datetime.now(reports.VIETNAM_TIME)
    message = DocumentMessage(
        sender=Organization(agency, names.get(agency, agency)),
        recipients=tuple(Organization(code, names.get(code, code)) for code in recipients),
        code_number=code_number or now.strftime("%y%m%d%H%M%S"),
        code_notation=code_notation,
        promulgation_date=now.date(),
        type_code=1,
        type_name="Công văn",
        subject=subject or "Gửi tệp: " + ", ".join(f.name for f in files),
    )
    sources = [
        AttachmentSource(name=f.name, content_type=mimetypes.guess_type(f.name)[0] or "application/octet-stream",
                         path=f)
        for f in files
    ]
    return document_bytes(message, sources, now=now.replace(tzinfo=None, microsecond=0))


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(reports.VIETNAM_TIME).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _emit_json(rows: list[dict[str, Any]]) -> None:
    click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=_json_default))


@main.command()
@click.option("--max", "max_items", type=click.IntRange(min=1), help="At most N items.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def pending(max_items: int | None, as_json: bool, url: str, agency: str | None, secret: str | None) -> None:
    """List (and lease) the documents and status messages waiting for your agency."""
    client = GatewayClient(url, agency, secret)
    items = _items(client.call("getPendingDocuments", maxItems=max_items))
    fields = ("itemId", "kind", "documentId", "senderCode", "code", "subject", "statusCode", "statusFrom",
              "size", "queuedAt", "dueDate", "attempts", "signer")
    rows = [{f: getattr(i, f, None) for f in fields} for i in items]
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=f"{len(rows)} item(s) for {agency} (times in Vietnam time)")
    for column in ("item", "kind", "document", "from", "code", "subject", "status", "size", "queued"):
        table.add_column(column, no_wrap=column in ("item", "document"), overflow="fold")
    for row in rows:
        status = f"{row['statusCode']} from {row['statusFrom']}" if row["statusCode"] else ""
        table.add_row(
            Text(row["itemId"]), row["kind"], Text(row["documentId"]), Text(row["senderCode"]),
            Text(row["code"]), Text(row["subject"]), status, str(row["size"]), _when(row["queuedAt"]),
        )
    _out().print(table)


@main.command()
@click.argument("item_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the edXML (default: ITEM_ID.edxml; '-' for stdout).")
@client_options
def fetch(item_id: str, output: Path | None, url: str, agency: str | None, secret: str | None) -> None:
    """Download an item's edXML file (the first fetch of a document records status 01, arrived)."""
    client = GatewayClient(url, agency, secret)
    result = client.call("getDocument", itemId=item_id)
    data: bytes = result.edxml
    if hashlib.sha256(data).hexdigest() != result.sha256:
        _fail(f"error: the edXML received for item {item_id} does not match its sha256 {result.sha256}; fetch again.")
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = output or Path(f"{item_id}.edxml")
    target.write_bytes(data)
    _err().print(
        f"Wrote {target}: {result.kind} of document {result.documentId}, {len(data)} bytes, sha256 {result.sha256}",
        markup=False,
    )


@main.command()
@click.argument("item_id")
@client_options
def ack(item_id: str, url: str, agency: str | None, secret: str | None) -> None:
    """Confirm an item was received: it leaves your pending list for good."""
    GatewayClient(url, agency, secret).call("confirmReceived", itemId=item_id)
    _out().print(f"Acknowledged {item_id}.", markup=False)


@main.command()
@click.argument("document_id")
@click.argument("code")
@click.option("--description", help="What happened (e.g. who it was assigned to).")
@click.option("--staff", help="Name of the person who handled it.")
@click.option("--department", help="Their department.")
@client_options
def status(
    document_id: str,
    code: str,
    description: str | None,
    staff: str | None,
    department: str | None,
    url: str,
    agency: str | None,
    secret: str | None,
) -> None:
    """Report a processing status for a document: 02-06 as a recipient, 13 to recall as its sender."""
    client = GatewayClient(url, agency, secret)
    arguments: dict[str, Any] = {"documentId": document_id, "statusCode": code, "description": description}
    if staff or department:
        arguments["staff"] = client.staff(department=department, staff=staff)
    receipt = client.call("updateStatus", **arguments)
    _out().print(
        f"Recorded status {receipt.statusCode} for {receipt.documentId} at {_when(receipt.reportedAt)}; "
        f"notified {', '.join(_items(receipt.notified))}.",
        markup=False,
    )


@main.command()
@click.argument("document_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def history(document_id: str, as_json: bool, url: str, agency: str | None, secret: str | None) -> None:
    """Show every status of a document (per recipient for its sender)."""
    client = GatewayClient(url, agency, secret)
    entries = _items(client.call("getStatusHistory", documentId=document_id))
    fields = ("recipientCode", "statusCode", "statusName", "reportedAt", "reportedBy", "description",
              "staffName", "staffDepartment")
    rows = [{f: getattr(e, f, None) for f in fields} for e in entries]
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=f"Status history of {document_id} (Vietnam time)")
    for column in ("recipient", "status", "when", "by", "description", "staff"):
        table.add_column(column)
    for row in rows:
        staff = " / ".join(v for v in (row["staffName"], row["staffDepartment"]) if v)
        table.add_row(
            Text(row["recipientCode"]), Text(f"{row['statusCode']} {row['statusName']}"), _when(row["reportedAt"]),
            Text(row["reportedBy"]), Text(row["description"] or ""), Text(staff),
        )
    _out().print(table)
