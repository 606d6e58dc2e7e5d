"""The relay outbox's bookkeeping on both backends: kinds it refuses, delivery recorded once, and the
per-hop figures the operator's `relay status` and the dashboard show."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.clock import Clock
from support.federation import T0

from gateway.config import Settings
from gateway.federation import outbox
from gateway.store.database import Database
from gateway.store.models import AuditEntry, OutboxConsignment


def _add(database: Database, settings: Settings, hop: str, created: timedelta, kind: str = "status") -> str:
    with database.transaction() as session:
        return outbox.add(
            session,
            settings,
            next_hop=hop,
            kind=kind,
            document_id=None,
            origin_instance="HA",
            origin_document_id="d",
            sender_code="000.46.24.H41",
            recipients=["000.00.00.G01"],
            sha256="0" * 64,
            size=0,
            path_so_far=[],
            now=T0 + created,
        )


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=str(database.url), instance_id="HA", role="provincial")


def test_an_unknown_kind_is_never_queued(database: Database, settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown consignment kind 'parcel'"):
        _add(database, settings, "national", timedelta(0), kind="parcel")
    with database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(OutboxConsignment)) == 0


def test_delivery_is_recorded_once(database: Database, settings: Settings, clock: Clock) -> None:
    consignment = _add(database, settings, "national", timedelta(0))
    for duplicate in (False, True):
        with database.transaction() as session:
            row = session.get_one(OutboxConsignment, consignment)
            outbox.delivered(session, row, clock.now + timedelta(minutes=1 if duplicate else 0), duplicate)
    with database.transaction(readonly=True) as session:
        row = session.get_one(OutboxConsignment, consignment)
        audited = session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "relay_delivered")
        )
    assert (row.state, row.delivered_at, audited) == (outbox.DELIVERED, clock.now, 1)


def test_stats_count_states_per_hop_and_age_the_oldest_undelivered(database: Database, settings: Settings) -> None:
    _add(database, settings, "national", timedelta(minutes=10))
    sending = _add(database, settings, "national", timedelta(minutes=0))
    done = _add(database, settings, "HB", timedelta(minutes=5))
    _add(database, settings, "national", timedelta(minutes=20))
    with database.transaction() as session:
        outbox.start_push(session.get_one(OutboxConsignment, sending), T0, 60)
        outbox.delivered(session, session.get_one(OutboxConsignment, done), T0)
    now = T0 + timedelta(hours=1)
    with database.transaction(readonly=True) as session:
        figures = outbox.stats(session, now)
    assert figures == [
        outbox.HopStats("HB", 0, 0, 0, 1, 0.0),
        outbox.HopStats("national", 2, 1, 0, 0, 3600.0),
    ], "the in-flight push is the oldest undelivered consignment"
    with database.transaction() as session:
        outbox.delivered(session, session.get_one(OutboxConsignment, sending), now)
    with database.transaction(readonly=True) as session:
        assert outbox.stats(session, now)[1].oldest_waiting_seconds == 3000.0
