"""Next-hop decisions: where a consignment for an agency goes from this instance.

At instance I, for an agency whose home is H (NULL = I): H is I -> deliver locally; I is
provincial -> the upstream (the national instance); I is national -> H itself. A provincial
instance therefore never needs to know the other provinces, and the national one never opens a
connection (provinces pull what is routed to them).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.store.models import Agency, Peer

DEFAULT_UPSTREAM = "national"


def is_local(settings: Settings, home: str | None) -> bool:
    return home is None or home == "" or home == settings.instance_id


def upstream_id(session: Session, settings: Settings) -> str:
    """The upstream's instance id at a provincial instance: its peer row, else ``national``."""
    found = session.scalar(select(Peer.instance_id).where(Peer.role == "national", Peer.active.is_(True)).limit(1))
    return found or DEFAULT_UPSTREAM


def next_hop(session: Session, settings: Settings, home: str | None) -> str | None:
    """The instance a consignment for an agency at ``home`` goes to next; None means deliver here."""
    if is_local(settings, home):
        return None
    if settings.role == "provincial":
        return upstream_id(session, settings)
    assert home is not None
    return home


def hops(
    session: Session, settings: Settings, recipients: Iterable[tuple[int, str, str | None]]
) -> dict[str, list[str]]:
    """For every next hop, the codes of the recipients served elsewhere it must serve, in the given order.

    Recipients served here are left out (``hooks.served_here`` lists them).
    """
    remote: dict[str, list[str]] = {}
    upstream: str | None = None
    for _agency_id, code, home in recipients:
        if is_local(settings, home):
            continue
        if settings.role == "provincial":
            upstream = upstream or upstream_id(session, settings)
            hop = upstream
        else:
            assert home is not None
            hop = home
        remote.setdefault(hop, []).append(code)
    return remote


def home_of(session: Session, code: str) -> tuple[int, str | None] | None:
    """(agency id, home instance) of an agency code, or None when the directory does not know it."""
    row = session.execute(select(Agency.id, Agency.home_instance).where(Agency.code == code)).first()
    return None if row is None else (row[0], row[1])
