"""``edxml-gateway blobs ...``: maintenance of the content-addressed blob store."""

from __future__ import annotations

from datetime import timedelta

import click
from sqlalchemy import inspect

from gateway.cli import ui
from gateway.store.blob_gc import MIN_GRACE, Collector, CollectorBusy
from gateway.store.blobs import BlobStore
from gateway.store.database import Database


def _size(count: int) -> str:
    return f"{count:,} bytes ({count / 1048576:.1f} MiB)"


@click.group("blobs")
def blobs_group() -> None:
    """The blob store (edXML files of documents and status messages)."""


@blobs_group.command("gc")
@click.option(
    "--grace-hours",
    type=click.FloatRange(min=MIN_GRACE.total_seconds() / 3600),
    default=24.0,
    show_default=True,
    help="Only remove blobs not written or reused for this long (sends in flight rely on recent ones).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be freed; remove and audit nothing.")
@click.pass_context
def blobs_gc(ctx: click.Context, grace_hours: float, dry_run: bool) -> None:
    """Remove blob files no document or status row names (left by crashes between a write and its commit)."""
    settings = ui.settings_of(ctx)
    assert settings.blob_dir is not None
    db = Database(settings.database_url)
    try:
        shown = db.url.render_as_string(hide_password=True)
        if not inspect(db.engine).has_table("documents"):
            raise click.ClickException(
                f"the database {shown} has no gateway tables yet; run `edxml-gateway db upgrade` first."
            )
        if not settings.blob_dir.is_dir():
            raise click.ClickException(f"no blob directory at {settings.blob_dir} (GATEWAY_BLOB_DIR)")
        try:
            report = Collector(db, BlobStore(settings.blob_dir), timedelta(hours=grace_hours)).run(dry_run=dry_run)
        except CollectorBusy as busy:
            raise click.ClickException(str(busy)) from None
    finally:
        db.dispose()
    verb = "Would free" if dry_run else "Freed"
    click.echo(
        f"{verb} {report.freed_files} blob file(s), {_size(report.freed_bytes)}, in {settings.blob_dir}; "
        f"scanned {report.scanned}: {report.referenced} named by rows, {report.young} younger than "
        f"{grace_hours:g} h, {report.spared} put back because a send started using them."
    )
    if report.recovered:
        click.echo(f"Put back {report.recovered} blob(s) an interrupted collection had left in quarantine.")
    click.echo(f"References read from: {', '.join(report.columns) or '(no column)'}.")
    if not dry_run:
        click.echo("Recorded in the audit log (action blobs_gc).")
