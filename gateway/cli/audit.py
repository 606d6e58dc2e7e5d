"""``audit``: verify the hash-chained audit log, export the evidence about one document."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from gateway.cli import ui
from gateway.store import audit as audit_log
from gateway.store import evidence
from gateway.store.blobs import BlobStore
from gateway.store.models import AuditEntry


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the whole chain; exit 1 at the first entry that was edited, deleted or reordered."""
    with ui.open_database(ui.settings_of(ctx)).transaction() as session:
        result = audit_log.verify(session)
        head = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    if not result.ok:
        ui.fail(
            f"audit chain BROKEN at entry {result.first_broken_id} (after {result.checked} good entries): "
            f"{result.reason}"
        )
    head = head or audit_log.GENESIS_HASH
    ui.out().print(f"audit chain intact: {result.checked} entries checked; head hash {head}", markup=False)


@audit_group.command("export")
@click.argument("document_id")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def audit_export(ctx: click.Context, document_id: str, output: Path) -> None:
    """Write the evidence about one document (row, recipients, deliveries, statuses, audit entries) as JSON."""
    settings = ui.settings_of(ctx)
    assert settings.blob_dir is not None
    found = evidence.collect(ui.open_database(settings), BlobStore(settings.blob_dir), document_id, ui.now())
    if found is None:
        ui.fail(f"error: no document {document_id} in this gateway (use the gateway's documentId).")
    output.write_text(found.to_json(), encoding="utf-8")
    ui.out().print(
        f"Wrote {output}: {len(found.recipients)} recipient(s), {len(found.status_events)} status event(s), "
        f"{len(found.audit_entries)} audit entr(ies).",
        markup=False,
    )
