"""Queue depth per agency counted straight from the table: an oracle for the dashboard and metrics tests."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.store.models import Delivery


def pending_counts(session: Session) -> dict[int, int]:
    """Number of pending items per agency (leased or not)."""
    rows = session.execute(
        select(Delivery.agency_id, func.count()).where(Delivery.state == "pending").group_by(Delivery.agency_id)
    )
    return {agency_id: count for agency_id, count in rows}
