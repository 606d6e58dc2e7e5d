"""Delivery reports of the gateway itself: a consignment that failed shows in the sender's history.

A report is a StatusEvent with code ``90`` (outside the edXML list, so no client can confuse it
with a recipient's status), recorded against each recipient the consignment carried. Its
reporter is the gateway instance that gave up (kept in ``staff_department`` as
``gateway:<instance>``), and it is never queued as an edXML status message: only
getStatusHistory and the dashboard show it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.federation.model import DELIVERY_REPORT, KIND_DOCUMENT, KIND_STATUS
from gateway.store.models import Agency, Document, OutboxConsignment, StatusEvent

GATEWAY_PREFIX = "gateway:"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
"""The payload of a relayed delivery report: nothing (its facts are all in the header)."""


def failure_text(attempts: int, reason: str) -> str:
    return f"not delivered (relay failed after {attempts} attempts): {reason}"


def report_failure(session: Session, settings: Settings, row: OutboxConsignment, now: datetime) -> int:
    """Record a delivery report for every recipient of a failed document consignment; returns how many.

    Recorded on this instance's copy of the document (the sender's own history at the origin
    instance) and, at an intermediate instance, also sent back towards the sender's instance as one
    ``status`` consignment with code 90 and an empty payload per recipient.
    """
    if row.kind != KIND_DOCUMENT or row.document_id is None:
        return 0
    path = json.loads(row.path)
    instance = path[-1]
    codes = json.loads(row.recipients)
    agencies = session.execute(select(Agency.code, Agency.id).where(Agency.code.in_(codes))).all()
    text = failure_text(row.attempts, row.last_error or "unknown error")
    if len(path) > 1:
        _report_back(session, settings, row, [code for code, _ in agencies], text, f"{GATEWAY_PREFIX}{instance}", now)
    for _code, agency_id in agencies:
        session.add(
            StatusEvent(
                document_id=row.document_id,
                recipient_agency_id=agency_id,
                reporter_agency_id=agency_id,
                code=DELIVERY_REPORT,
                description=text,
                staff_department=f"{GATEWAY_PREFIX}{instance}",
                reported_at=now,
            )
        )
    session.flush()
    return len(agencies)


def _report_back(
    session: Session,
    settings: Settings,
    row: OutboxConsignment,
    codes: list[str],
    text: str,
    reporter: str,
    now: datetime,
) -> None:
    from gateway.federation import outbox, routing

    document = session.get_one(Document, row.document_id)
    hop = routing.next_hop(session, settings, document.sender.home_instance)
    if hop is None:
        return
    for code in codes:
        outbox.add(
            session,
            settings,
            next_hop=hop,
            kind=KIND_STATUS,
            document_id=document.id,
            origin_instance=row.origin_instance,
            origin_document_id=row.origin_document_id,
            sender_code=row.sender_code,
            recipients=[row.sender_code],
            sha256=EMPTY_SHA256,
            size=0,
            path_so_far=(),
            now=now,
            status={
                "status_code": DELIVERY_REPORT,
                "recipient_code": code,
                "reporter_code": code,
                "reported_at": now,
                "description": text,
                "staff_department": reporter,
            },
        )
