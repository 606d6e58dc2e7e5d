"""The evidence about one document: everything the store knows of its life, as one JSON file.

``edxml-gateway audit export`` writes it for a dispute or an inspection: the document row, its
recipients, every delivery (who pulled it and when), every status event, every audit entry about
it, whether the stored edXML file still hashes to its recorded sha256, and whether the whole
audit chain verifies. Rows are exported column by column as stored, so the file shows exactly
what the database holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import inspect, select

from gateway.store import audit
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Delivery, Document, StatusEvent


@dataclass(frozen=True)
class Evidence:
    """One document's evidence; :meth:`to_json` is the exported file."""

    exported_at: datetime
    document: dict[str, Any]
    recipients: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    status_events: list[dict[str, Any]]
    audit_entries: list[dict[str, Any]]
    blob_intact: bool
    audit_chain: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The evidence as plain JSON-ready values (times stay datetimes), in the file's key order."""
        return {
            "exported_at": self.exported_at,
            "document": self.document,
            "recipients": self.recipients,
            "deliveries": self.deliveries,
            "status_events": self.status_events,
            "audit_entries": self.audit_entries,
            "blob_intact": self.blob_intact,
            "audit_chain": self.audit_chain,
        }

    def to_json(self) -> str:
        """Indented UTF-8 JSON (Vietnamese names kept as they are), times in UTC ISO 8601."""
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2, default=json_default)


def json_default(value: Any) -> Any:
    """``json.dumps`` hook for store rows: datetimes as UTC ISO 8601, dates as ISO dates."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _row_dict(obj: Any) -> dict[str, Any]:
    """Every mapped column of an ORM row, by attribute name."""
    return {attr.key: getattr(obj, attr.key) for attr in inspect(obj).mapper.column_attrs}


def collect(db: Database, blobs: BlobStore, document_id: str, exported_at: datetime) -> Evidence | None:
    """The evidence about the gateway's document ``document_id``, or None when there is no such document.

    The rows and the chain check are read in one transaction, so they describe one state of the
    store; the blob is hashed after it ends, since reading a large file needs no database lock.
    """
    with db.transaction() as session:
        document = session.get(Document, document_id)
        if document is None:
            return None
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
        document_row = {**_row_dict(document), "sender_code": codes[document.sender_id]}
        delivery_rows = [{**_row_dict(d), "agency_code": codes[d.agency_id]} for d in deliveries]
        event_rows = [
            {
                **_row_dict(e),
                "recipient_code": codes[e.recipient_agency_id],
                "reporter_code": codes[e.reporter_agency_id],
            }
            for e in events
        ]
        audit_rows = [_row_dict(e) for e in audit.entries_for_document(session, document.id)]
        chain = audit.verify(session)
        blob_sha256 = document.blob_sha256
    return Evidence(
        exported_at=exported_at,
        document=document_row,
        recipients=recipients,
        deliveries=delivery_rows,
        status_events=event_rows,
        audit_entries=audit_rows,
        blob_intact=blobs.verify(blob_sha256),
        audit_chain={"ok": chain.ok, "checked": chain.checked, "first_broken_id": chain.first_broken_id},
    )
