"""``edxml-gateway certify``: start, follow and export certification runs (operator side)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.certification import Certifications, RunView
from gateway.certification.export import write_csv
from gateway.cli import ui


def _certifications(ctx: click.Context) -> Certifications:
    from gateway.app import Gateway

    gateway = Gateway.open(ui.settings_of(ctx))
    return Certifications.from_settings(gateway.exchange)


def _show(run: RunView) -> None:
    console = Console(highlight=False, width=200)
    state = "active" if run.active else f"finished {run.finished_at:%Y-%m-%d %H:%M:%S} UTC"
    console.print(
        f"Run {run.run_id} for {run.agency_code} ({run.agency_name}), started by {run.started_by} "
        f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC, deadline {run.deadline:%Y-%m-%d %H:%M:%S} UTC, {state}",
        markup=False,
    )
    table = Table(title=f"Grade: {run.grade}")
    for column in ("check", "state", "due", "what"):
        table.add_column(column, overflow="fold")
    for check in run.checks:
        table.add_row(Text(check.key), check.state, f"{check.deadline:%H:%M:%S}", Text(check.title))
    console.print(table)
    for fault in run.faults:
        console.print(f"fault {fault.at:%H:%M:%S} {fault.operation}: {fault.code} {fault.message}", markup=False)


@click.group()
def certify() -> None:
    """Interconnection tests: the sandbox agency exchanges with an agency and grades it."""


@certify.command("start")
@click.argument("agency")
@click.option("--minutes", default=120, show_default=True, type=click.IntRange(min=1), help="Time the agency has.")
@click.pass_context
def certify_start(ctx: click.Context, agency: str, minutes: int) -> None:
    """Start a run for AGENCY: the sandbox sends it the test documents now."""
    _show(_certifications(ctx).start(agency, "operator", timedelta(minutes=minutes)))


@certify.command("show")
@click.argument("run_id")
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the checks as CSV."
)
@click.pass_context
def certify_show(ctx: click.Context, run_id: str, csv_path: Path | None) -> None:
    """Show a run's checks, evidence and grade (advancing it first)."""
    run = _certifications(ctx).view(run_id)
    _show(run)
    if csv_path is not None:
        with csv_path.open("w", encoding="utf-8", newline="") as out:
            write_csv(run, out)


@certify.command("list")
@click.argument("agency", required=False)
@click.pass_context
def certify_list(ctx: click.Context, agency: str | None) -> None:
    """List runs, newest first (one agency's with AGENCY)."""
    table = Table(title="Certification runs")
    for column in ("run", "agency", "started", "state", "grade", "passed", "failed", "pending"):
        table.add_column(column, no_wrap=column in ("run", "agency"))
    for run in _certifications(ctx).runs(agency):
        counts = run.counts()
        table.add_row(
            Text(run.run_id),
            Text(run.agency_code),
            f"{run.started_at:%Y-%m-%d %H:%M}",
            "active" if run.active else "finished",
            run.grade,
            str(counts["passed"]),
            str(counts["failed"]),
            str(counts["pending"]),
        )
    Console(highlight=False, width=200).print(table)


@certify.command("watch")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.05))
@click.pass_context
def certify_watch(ctx: click.Context, interval: float) -> None:
    """Drive every active run until stopped (the sandbox answers, recalls, updates, decides)."""
    stop = ui.stop_on_signals()
    certifications = _certifications(ctx)
    click.echo("Driving certification runs (Ctrl+C to stop)", err=True)
    while not stop.is_set():
        certifications.advance_active()
        stop.wait(interval)
