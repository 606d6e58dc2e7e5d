"""The few places where the exchange service hands work to the network of gateways.

:mod:`gateway.exchange.service` calls these and nothing else from the federation package, so the
exchange keeps one rule: an agency whose home is another instance is routed, everything else is
exactly as on a standalone gateway (no extra statement when every recipient is local).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.federation import outbox, routing
from gateway.federation.model import DELIVERY_REPORT, KIND_DOCUMENT, KIND_RECALL, KIND_STATUS
from gateway.store.models import Agency, Document, StatusEvent

__all__ = ["DELIVERY_REPORT", "relay_status", "route_document"]


def route_document(
    session: Session,
    settings: Settings,
    document_id: str,
    sender_code: str,
    recipients: Sequence[tuple[int, str, str | None]],
    sha256: str,
    size: int,
    now: datetime,
    origin: tuple[str, str] | None = None,
    path_so_far: Sequence[str] = (),
) -> list[int]:
    """Queue one consignment per next hop for the remote recipients; returns the local agency ids.

    ``origin`` is (instance, document id at that instance); None means this instance is the origin.
    """
    local, remote = routing.split(session, settings, recipients)
    origin_instance, origin_document_id = origin or (settings.instance_id, document_id)
    for hop, codes in remote.items():
        outbox.add(
            session,
            settings,
            next_hop=hop,
            kind=KIND_DOCUMENT,
            document_id=document_id,
            origin_instance=origin_instance,
            origin_document_id=origin_document_id,
            sender_code=sender_code,
            recipients=codes,
            sha256=sha256,
            size=size,
            path_so_far=path_so_far,
            now=now,
        )
    return local


def relay_status(
    session: Session,
    settings: Settings,
    document: Document,
    event: StatusEvent,
    target_id: int,
    size: int,
    now: datetime,
) -> bool:
    """Send a status (or a 13 recall notice) towards a target agency served elsewhere; False if local."""
    target = session.get_one(Agency, target_id)
    hop = routing.next_hop(session, settings, target.home_instance)
    if hop is None or event.code == DELIVERY_REPORT or event.blob_sha256 is None:
        return False
    kind = KIND_RECALL if event.code == "13" else KIND_STATUS
    recipient = session.get_one(Agency, event.recipient_agency_id)
    reporter = session.get_one(Agency, event.reporter_agency_id)
    outbox.add(
        session,
        settings,
        next_hop=hop,
        kind=kind,
        document_id=document.id,
        origin_instance=document.origin_instance or settings.instance_id,
        origin_document_id=document.origin_document_id or document.id,
        sender_code=document.sender.code,
        recipients=[recipient.code] if kind == KIND_RECALL else [target.code],
        sha256=event.blob_sha256,
        size=size,
        path_so_far=(),
        now=now,
        status={
            "status_code": event.code,
            "recipient_code": recipient.code,
            "reporter_code": reporter.code,
            "reported_at": event.reported_at,
            "description": event.description,
            "staff_department": event.staff_department,
            "staff_name": event.staff_name,
        },
    )
    return True
