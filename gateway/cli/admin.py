"""Operator commands on the store: schema (``db``), ``agencies``, ``credentials`` and ``report``."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from gateway import directory, reports
from gateway.cli import ui
from gateway.exchange.workflow import STATUS_NAMES

SHOWN_ONCE = "This secret is shown only once: the gateway keeps only its hash. Give it to the agency now."


# -- db -------------------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the gateway's tables to the current version."""
    database = ui.open_database(ui.settings_of(ctx), require_schema=False)
    database.upgrade()
    ui.out().print(f"Database {database.url.render_as_string(hide_password=True)} is up to date.", markup=False)


# -- agencies -------------------------------------------------------------------------------------


@click.group()
def agencies() -> None:
    """The agency directory."""


def _print_import(result: directory.ImportResult) -> None:
    ui.out().print(
        f"{result.total} agencies read: {result.added} added, {result.updated} updated, {result.unchanged} unchanged.",
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
        ui.fail(f"error: {file}: {error.message}")
    database = ui.open_database(ui.settings_of(ctx))
    with ui.progress(ui.err()) as progress, database.transaction() as session:
        task = progress.add_task(f"Importing {file.name}", total=len(rows))
        try:
            result = directory.import_agencies(session, rows, ui.now(), on_row=lambda _row: progress.advance(task))
        except directory.DirectoryError as error:
            ui.fail(f"error: {file}: {error.message}")
    _print_import(result)


@agencies.command("load-shipped")
@click.pass_context
def agencies_load_shipped(ctx: click.Context) -> None:
    """Import the 2016 starting directory shipped with the gateway (see gateway/data/README.md)."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        result = directory.load_shipped_directory(session, ui.now())
    _print_import(result)


@agencies.command("list")
@click.option("--level", type=click.IntRange(1, 4), help="Only this level (1 ministry/province … 4).")
@click.option("--parent", help="Only the direct children of this agency code.")
@click.pass_context
def agencies_list(ctx: click.Context, level: int | None, parent: str | None) -> None:
    """List agencies with their state and number of live credentials.

    The sandbox agency of certification runs is flagged in its own column: it is a test agency the
    gateway itself drives, not an agency a document may really be meant for.
    """
    now = ui.now()
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        rows = [
            (a, sum(1 for c in a.credentials if directory.credential_is_live(c, now)))
            for a in directory.list_agencies(session, level=level, parent=parent)
        ]
    table = Table(title=f"{len(rows)} agencies")
    for column in ("code", "name", "level", "parent", "active", "credentials", "test code", "sandbox", "home"):
        table.add_column(column, no_wrap=column != "name")
    for agency, live in rows:
        table.add_row(
            Text(agency.code),
            Text(agency.name),
            str(agency.level),
            Text(agency.parent_code or ""),
            "yes" if agency.active else "DISABLED",
            str(live),
            "yes" if agency.test_code else "",
            "SANDBOX" if agency.sandbox else "",
            Text(agency.home_instance or "(here)"),
        )
    ui.out().print(table)


@agencies.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--level", required=True, type=click.IntRange(1, 4))
@click.option("--parent", help="Parent agency code (must already be in the directory).")
@click.option("--test-code", is_flag=True, help="Mark the code as not official (for testing only).")
@click.option("--home", help="Instance id of the gateway that serves the agency, when it is not this one.")
@click.pass_context
def agencies_add(
    ctx: click.Context, code: str, name: str, level: int, parent: str | None, test_code: bool, home: str | None
) -> None:
    """Add one agency to the directory."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        agency = directory.add_agency(
            session, code, name, level, ui.now(), parent_code=parent, test_code=test_code, home_instance=home
        )
        shown = f"Added {agency.code} {agency.name} (level {agency.level})."
    ui.out().print(shown, markup=False)


@agencies.command("disable")
@click.argument("code")
@click.pass_context
def agencies_disable(ctx: click.Context, code: str) -> None:
    """Stop an agency: it can no longer authenticate or be addressed; its history stays."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        directory.disable_agency(session, code, ui.now())
    ui.out().print(f"Disabled {code}.", markup=False)


@agencies.command("enable")
@click.argument("code")
@click.pass_context
def agencies_enable(ctx: click.Context, code: str) -> None:
    """Re-enable a disabled agency."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        directory.enable_agency(session, code, ui.now())
    ui.out().print(f"Enabled {code}.", markup=False)


# -- credentials ----------------------------------------------------------------------------------


@click.group()
def credentials() -> None:
    """Agency secrets (the gateway stores only their hashes)."""


def _show_secret(code: str, secret: str, note: str) -> None:
    """The secret alone on stdout (so scripts can capture it), the explanation on stderr."""
    err = ui.err()
    err.print(f"New secret for {code}{note}:", markup=False)
    ui.out().print(secret, markup=False)
    err.print(f"Warning: {SHOWN_ONCE}", markup=False, style="bold yellow")


@credentials.command("issue")
@click.argument("code")
@click.option("--expires-days", type=click.IntRange(min=1), help="The secret stops working after N days.")
@click.pass_context
def credentials_issue(ctx: click.Context, code: str, expires_days: int | None) -> None:
    """Issue an additional secret for an agency."""
    now = ui.now()
    expires_at = now + timedelta(days=expires_days) if expires_days else None
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
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
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        secret = directory.rotate_credential(session, code, ui.now(), grace)
    note = f"; old secrets stop working in {grace_hours:g} h" if grace else "; old secrets no longer work"
    _show_secret(code, secret, note)


@credentials.command("revoke")
@click.argument("code")
@click.pass_context
def credentials_revoke(ctx: click.Context, code: str) -> None:
    """Revoke every secret of an agency at once (it can no longer connect)."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        count = directory.revoke_credentials(session, code, ui.now())
    ui.out().print(f"Revoked {count} credential(s) of {code}.", markup=False)


# -- report ---------------------------------------------------------------------------------------


def _vietnam_today() -> date:
    return datetime.now(reports.VIETNAM_TIME).date()


@click.command()
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
    now = ui.now()
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        result = reports.interconnection_report(session, start, end, as_of=min(end, now))
        grades = reports.connection_grades(session, as_of=now)
    header, rows = reports.interconnection_table(result)
    counts_at = len(reports.INTERCONNECTION_COLUMNS)
    console = ui.out()
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
        ui.err().print(f"Wrote {csv_file}", markup=False)
    if grades_csv is not None:
        with grades_csv.open("w", encoding="utf-8", newline="") as out:
            reports.write_csv(grades, out, extra=("grade",))
        ui.err().print(f"Wrote {grades_csv}", markup=False)


COMMANDS = (db, agencies, credentials, report)
