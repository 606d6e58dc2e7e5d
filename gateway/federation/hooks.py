"""The few places where the exchange service hands work to the network of gateways.

:mod:`gateway.exchange.service` and :mod:`gateway.exchange.statuses` call these and nothing else
from the federation package, so the exchange keeps one rule: an agency whose home is another
instance is routed, everything else is exactly as on a standalone gateway (no extra statement
when every recipient is local).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.edxml.model import StaffInfo
from gateway.exchange.results import StatusEntry
from gateway.federation import outbox, routing
from gateway.federation.model import DELIVERY_REPORT, KIND_DOCUMENT, KIND_RECALL, KIND_STATUS
from gateway.store.models import Document

__all__ = [
    "DELIVERY_REPORT",
    "as_delivery_report",
    "relay_status",
    "route_document",
    "served_elsewhere",
    "served_here",
    "withdraw_in_transit",
]


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
) -> None:
    """Queue one consignment per next hop for the recipients served elsewhere (:func:`served_here` are not).

    ``origin`` is (instance, document id at that instance); None means this instance is the origin.
    The document's row must be written already (the outbox refers to it).
    """
    origin_instance, origin_document_id = origin or (settings.instance_id, document_id)
    for hop, codes in routing.hops(session, settings, recipients).items():
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


def served_here(settings: Settings, recipients: Sequence[tuple[int, str, str | None]]) -> list[int]:
    """The agency ids, among ``(agency id, code, home instance)`` recipients, whose queues are on this instance."""
    return [agency_id for agency_id, _code, home in recipients if routing.is_local(settings, home)]


class _Party(Protocol):
    # Read-only properties, so frozen dataclasses (statuses.Party) satisfy the protocol.
    @property
    def agency_id(self) -> int: ...

    @property
    def code(self) -> str: ...

    @property
    def home(self) -> str | None: ...


class _Subject(Protocol):
    @property
    def document_id(self) -> str: ...

    @property
    def sender(self) -> _Party: ...


def relay_status(
    session: Session,
    settings: Settings,
    *,
    subject: _Subject,
    target: _Party,
    about: _Party,
    reporter: _Party,
    code: str,
    reported_at: datetime,
    description: str | None,
    staff: StaffInfo | None,
    sha256: str,
    size: int,
) -> bool:
    """Send a status (or a 13 recall notice) towards a target agency served elsewhere; False if local.

    Free for a local target: the home instance travels with the parties, so no statement is run.
    """
    if routing.is_local(settings, target.home) or code == DELIVERY_REPORT:
        return False
    hop = routing.next_hop(session, settings, target.home)
    if hop is None:
        return False
    kind = KIND_RECALL if code == "13" else KIND_STATUS
    origin_instance, origin_document_id = session.execute(
        select(Document.origin_instance, Document.origin_document_id).where(Document.id == subject.document_id)
    ).one()
    outbox.add(
        session,
        settings,
        next_hop=hop,
        kind=kind,
        document_id=subject.document_id,
        origin_instance=origin_instance or settings.instance_id,
        origin_document_id=origin_document_id or subject.document_id,
        sender_code=subject.sender.code,
        recipients=[about.code] if kind == KIND_RECALL else [target.code],
        sha256=sha256,
        size=size,
        path_so_far=(),
        now=reported_at,
        status={
            "status_code": code,
            "recipient_code": about.code,
            "reporter_code": reporter.code,
            "reported_at": reported_at,
            "description": description,
            "staff_department": staff.department if staff else None,
            "staff_name": staff.staff if staff else None,
        },
    )
    return True


def served_elsewhere(settings: Settings, home: str | None) -> bool:
    """True for an agency whose home is another instance (its copies and statuses are relayed)."""
    return not routing.is_local(settings, home)


def withdraw_in_transit(
    session: Session, settings: Settings, document_id: str, parties: Sequence[_Party], now: datetime
) -> set[int]:
    """Take back copies of a document that have not left this instance; the agency ids taken.

    A recall or an update concerns recipients served elsewhere too: where their copy still waits
    here, never handed to the next hop, it is taken out of its consignment, so it never travels
    and no recall needs to follow it. Free when every party is local (no statement is run).
    """
    remote = {p.code: p.agency_id for p in parties if served_elsewhere(settings, p.home)}
    if not remote:
        return set()
    return {remote[code] for code in outbox.withdraw_unsent(session, document_id, remote, now)}


def as_delivery_report(entry: StatusEntry) -> StatusEntry:
    """A history entry, with the gateway named as reporter when it is a delivery report (code 90)."""
    if entry.status_code != DELIVERY_REPORT:
        return entry
    return replace(
        entry,
        reporter_code=entry.staff_department or "gateway",
        status_name=entry.description or "not delivered",
        staff_department=None,
    )
