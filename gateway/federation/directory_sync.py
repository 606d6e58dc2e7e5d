"""The directory across tiers: versions, the national instance's pages, and applying them in a province.

Every change of an agency row gets a new ``directory_version`` from one counter row in
``relay_state``; the counter row stays locked until the changing transaction commits, so versions
commit in order and a reader asking "everything after v" never skips a row committed late.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.federation.model import DirectoryEntry
from gateway.store import audit
from gateway.store.models import Agency, Credential, RelayState

VERSION_COUNTER = "directory_version"
PULLED_VERSION = "directory_pulled"
REGISTERED_VERSION = "directory_registered"
PAGE_SIZE = 1000


def _counter(session: Session, name: str) -> RelayState:
    row = session.get(RelayState, name, with_for_update=True, populate_existing=True)
    if row is None:
        row = RelayState(name=name, value=0)
        session.add(row)
        session.flush()
    return row


def read_counter(session: Session, name: str) -> int:
    row = session.get(RelayState, name)
    return 0 if row is None else int(row.value)


def set_counter(session: Session, name: str, value: int) -> None:
    _counter(session, name).value = value


def stamp(session: Session, agencies: Sequence[Agency]) -> None:
    """Give each changed agency a new directory version (in order)."""
    if not agencies:
        return
    counter = _counter(session, VERSION_COUNTER)
    for agency in agencies:
        counter.value += 1
        agency.directory_version = counter.value
    session.flush()


def entry_of(agency: Agency, settings: Settings) -> DirectoryEntry:
    return DirectoryEntry(
        agency.code,
        agency.name,
        agency.level,
        agency.parent_code,
        agency.active,
        agency.home_instance or settings.instance_id,
    )


def page(session: Session, settings: Settings, since: int) -> tuple[int, list[DirectoryEntry]]:
    """Agencies changed after version ``since`` (at most PAGE_SIZE) and the version to ask from next."""
    rows = list(
        session.scalars(
            select(Agency).where(Agency.directory_version > since).order_by(Agency.directory_version).limit(PAGE_SIZE)
        )
    )
    version = rows[-1].directory_version if rows else max(since, read_counter(session, VERSION_COUNTER))
    return version, [entry_of(a, settings) for a in rows]


def register(session: Session, settings: Settings, peer: str, entries: Sequence[DirectoryEntry], now: datetime) -> int:
    """Take a province's own agencies into the national directory with home = that province.

    A province may claim a new code, one of its own, or one the national directory lists as
    served here but with no live credential here (the shipped directory lists every province);
    never an agency served by another instance or used by an agency here. Returns how many rows
    were accepted.
    """
    accepted: list[Agency] = []
    existing = {a.code: a for a in session.scalars(select(Agency).where(Agency.code.in_([e.code for e in entries])))}
    with_credentials = set(
        session.scalars(
            select(Agency.code)
            .join(Credential, Credential.agency_id == Agency.id)
            .where(Agency.code.in_(list(existing)), Credential.revoked_at.is_(None))
        )
    )
    for entry in entries:
        agency = existing.get(entry.code)
        if agency is not None and agency.home_instance == settings.instance_id:
            agency.home_instance = None  # "served here", however the operator spelled it
        if agency is None:
            agency = Agency(
                code=entry.code,
                name=entry.name,
                level=entry.level,
                parent_code=entry.parent_code,
                active=entry.active,
                require_signature=False,
                test_code=False,
                created_at=now,
                home_instance=peer,
            )
            session.add(agency)
            accepted.append(agency)
            continue
        if agency.home_instance not in (None, peer) or (
            agency.home_instance is None and entry.code in with_credentials
        ):
            continue
        new = (entry.name, entry.level, entry.parent_code, entry.active, peer)
        if (agency.name, agency.level, agency.parent_code, agency.active, agency.home_instance) != new:
            agency.name, agency.level, agency.parent_code, agency.active, agency.home_instance = new
        accepted.append(agency)
    changed = [a for a in accepted if a in session.dirty or a in session.new]
    session.flush()
    stamp(session, changed)
    if changed:
        audit.append(session, f"peer:{peer}", "directory_register", None, {"agencies": [a.code for a in changed]}, now)
    return len(accepted)


def apply(session: Session, settings: Settings, entries: Sequence[DirectoryEntry], now: datetime) -> int:
    """Apply a page of the national directory in a province; its own agencies are never overwritten."""
    existing = {a.code: a for a in session.scalars(select(Agency).where(Agency.code.in_([e.code for e in entries])))}
    changed = 0
    for entry in sorted(entries, key=lambda e: e.level):
        if entry.home_instance == settings.instance_id:
            continue
        agency = existing.get(entry.code)
        if agency is None:
            session.add(
                Agency(
                    code=entry.code,
                    name=entry.name,
                    level=entry.level,
                    parent_code=entry.parent_code,
                    active=entry.active,
                    require_signature=False,
                    test_code=False,
                    created_at=now,
                    home_instance=entry.home_instance,
                    directory_version=0,
                )
            )
            changed += 1
            continue
        if agency.home_instance in (None, settings.instance_id) and session.scalar(
            select(Credential.id).where(Credential.agency_id == agency.id, Credential.revoked_at.is_(None)).limit(1)
        ):
            continue
        new = (entry.name, entry.level, entry.parent_code, entry.active, entry.home_instance)
        if (agency.name, agency.level, agency.parent_code, agency.active, agency.home_instance) != new:
            agency.name, agency.level, agency.parent_code, agency.active, agency.home_instance = new
            changed += 1
    session.flush()
    if changed:
        audit.append(session, "relay", "directory_sync", None, {"changed": changed}, now)
    return changed


def own_changes(session: Session, settings: Settings, since: int) -> tuple[int, list[DirectoryEntry]]:
    """This instance's own agencies changed after ``since`` (to register upstream), and the new mark."""
    rows = list(
        session.scalars(
            select(Agency)
            .where(
                or_(Agency.home_instance.is_(None), Agency.home_instance == settings.instance_id),
                Agency.directory_version > since,
            )
            .order_by(Agency.directory_version)
            .limit(PAGE_SIZE)
        )
    )
    version = rows[-1].directory_version if rows else since
    return version, [entry_of(a, settings) for a in rows]
