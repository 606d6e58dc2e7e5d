"""Delivery reports of the gateway itself: a consignment that failed shows in the sender's history.

A report is a StatusEvent with code ``90`` (outside the edXML list, so no client can confuse it
with a recipient's status), recorded against each recipient the consignment carried. Its
reporter is the gateway instance that gave up (kept in ``staff_department`` as
``gateway:<instance>``), and it is never queued as an edXML status message: only
getStatusHistory and the dashboard show it.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.federation.model import DELIVERY_REPORT, KIND_DOCUMENT
from gateway.store.models import Agency, OutboxConsignment, StatusEvent

GATEWAY_PREFIX = "gateway:"


def failure_text(attempts: int, reason: str) -> str:
    return f"not delivered (relay failed after {attempts} attempts): {reason}"


def report_failure(session: Session, row: OutboxConsignment, now: datetime) -> int:
    """Record a delivery report for every recipient of a failed document consignment; returns how many.

    Recorded on this instance's copy of the document: at the origin instance that is the sender's
    own history; at an intermediate instance it is that instance's copy (docs/federation.md says
    what is not yet relayed back).
    """
    if row.kind != KIND_DOCUMENT or row.document_id is None:
        return 0
    instance = json.loads(row.path)[-1]
    codes = json.loads(row.recipients)
    agencies = session.execute(select(Agency.code, Agency.id).where(Agency.code.in_(codes))).all()
    text = failure_text(row.attempts, row.last_error or "unknown error")
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
