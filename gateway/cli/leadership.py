"""``edxml-gateway leadership``: the leadership's view in the terminal and as CSV (same numbers as the page)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway import csvout
from gateway.cli import ui
from gateway.leadership import CSV_COLUMNS, leadership_view, rows
from gateway.reports import VIETNAM_TIME


@click.command("leadership")
@click.option(
    "--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First day (Vietnam time); default 30 days ago."
)
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day (Vietnam time); default today.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write every row as CSV.")
@click.pass_context
def leadership(ctx: click.Context, first: datetime | None, last: datetime | None, csv_path: Path | None) -> None:
    """Per level and per agency: received, completed, completed by DueDate, median times, overdue."""
    now = datetime.now(UTC)
    last_day: date = last.date() if last else now.astimezone(VIETNAM_TIME).date()
    first_day: date = first.date() if first else last_day - timedelta(days=29)
    if first_day > last_day:
        raise click.UsageError("--from must not be after --to")
    db = ui.open_database(ui.settings_of(ctx))
    with db.transaction(readonly=True) as session:
        view = leadership_view(session, first_day, last_day, now)
    table = Table(title=f"Documents sent {first_day} – {last_day} (Vietnam time)")
    columns = (
        "scope",
        "level",
        "code",
        "received",
        "completed_share",
        "on_time_share",
        "median_hours_to_acceptance",
        "median_hours_to_completion",
        "overdue",
    )
    for column in columns:
        table.add_column(column.replace("_", " "), no_wrap=column == "code")
    lines = rows(view)
    for line in lines:
        table.add_row(*(Text(line[c]) for c in columns))
    Console(highlight=False, width=200).print(table)
    if csv_path is not None:
        with csv_path.open("w", encoding="utf-8", newline="") as out:
            writer = csvout.writer(out)
            writer.writerow(CSV_COLUMNS)
            writer.writerows([line[column] for column in CSV_COLUMNS] for line in lines)
