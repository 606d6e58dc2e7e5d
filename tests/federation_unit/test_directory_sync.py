"""The directory across tiers, on both backends: what a province may claim at the national instance
(``register``), what a province takes from the national pages (``apply``), and peer registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from support.federation import T0

from gateway.config import Settings
from gateway.directory import DirectoryError
from gateway.federation import directory_sync, peers
from gateway.federation.model import DirectoryEntry
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry, Credential

OWN, STALE, SAME, OTHERS, HELD, FRESH = "000.00.01.H41", "000.00.02.H41", "000.00.03.H41", "000.00.01.H14", "X1", "X2"


def _agency(database: Database, code: str, home: str | None, *, credential: bool = False) -> None:
    with database.transaction() as session:
        agency = Agency(code=code, name=f"Cơ quan {code}", level=2, created_at=T0, home_instance=home)
        session.add(agency)
        session.flush()
        if credential:
            session.add(Credential(agency_id=agency.id, secret_hash="x", created_at=T0))


def _rows(database: Database) -> dict[str, tuple[str, str | None, int]]:
    """code -> (name, home instance, directory version)."""
    with database.transaction(readonly=True) as session:
        return {a.code: (a.name, a.home_instance, a.directory_version) for a in session.scalars(select(Agency))}


def _actions(database: Database, action: str) -> list[str]:
    with database.transaction(readonly=True) as session:
        return list(session.scalars(select(AuditEntry.detail).where(AuditEntry.action == action)))


def _entry(code: str, name: str, home: str) -> DirectoryEntry:
    return DirectoryEntry(code, name, 2, None, True, home)


def test_a_province_claims_its_own_and_unclaimed_agencies_but_not_anothers(database: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=str(database.url), instance_id="national")
    _agency(database, OWN, "national")  # listed as served here by its full name, with no credential here
    _agency(database, STALE, "HA")
    _agency(database, SAME, "HA")
    _agency(database, OTHERS, "HB")
    _agency(database, HELD, None, credential=True)
    before = _rows(database)
    claims = [
        _entry(OWN, "Sở Nội vụ", "HA"),
        _entry(STALE, "Sở Tư pháp (tên mới)", "HA"),
        _entry(SAME, f"Cơ quan {SAME}", "HA"),
        _entry(OTHERS, "Sở của tỉnh B", "HA"),
        _entry(HELD, "Giành quyền", "HA"),
    ]
    with database.transaction() as session:
        accepted = directory_sync.register(session, settings, "HA", claims, T0)
    after = _rows(database)
    assert accepted == 3, "its own rows, changed or not, and the one nobody serves"
    assert after[OWN][:2] == ("Sở Nội vụ", "HA")
    assert after[STALE][:2] == ("Sở Tư pháp (tên mới)", "HA")
    assert after[SAME] == before[SAME], "an unchanged row keeps its version"
    assert after[OTHERS] == before[OTHERS] and after[HELD] == before[HELD]
    assert after[OWN][2] > 0 and after[STALE][2] > after[OWN][2], "each changed row gets the next version"
    (detail,) = _actions(database, "directory_register")
    assert json.loads(detail) == {"agencies": [OWN, STALE]}

    with database.transaction() as session:
        assert directory_sync.register(session, settings, "HA", claims[1:3], T0) == 2
    assert _rows(database) == after, "the same claims again change nothing"
    assert len(_actions(database, "directory_register")) == 1, "and are not audited again"


def test_a_province_applies_the_national_pages_without_overwriting_what_it_serves(
    database: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=str(database.url), instance_id="HA", role="provincial")
    _agency(database, OWN, None, credential=True)
    _agency(database, STALE, None)  # listed here but never given a credential: the national page wins
    _agency(database, SAME, "national")
    _agency(database, OTHERS, "national")
    page = [
        _entry(OWN, "Ghi đè", "national"),
        _entry(STALE, "Sở Tư pháp", "HB"),
        _entry(SAME, f"Cơ quan {SAME}", "national"),
        _entry(OTHERS, "Sở của tỉnh B", "HB"),
        _entry(FRESH, "Cơ quan mới", "HB"),
        _entry(HELD, "Của chính tỉnh A", "HA"),
    ]
    with database.transaction() as session:
        changed = directory_sync.apply(session, settings, page, T0)
    rows = _rows(database)
    assert changed == 3
    assert rows[OWN][:2] == (f"Cơ quan {OWN}", None), "an agency served here with a live credential stays"
    assert rows[STALE][:2] == ("Sở Tư pháp", "HB")
    assert rows[SAME][:2] == (f"Cơ quan {SAME}", "national")
    assert rows[OTHERS][:2] == ("Sở của tỉnh B", "HB")
    assert rows[FRESH][:2] == ("Cơ quan mới", "HB")
    assert HELD not in rows, "an entry homed here is this instance's own business"
    assert [json.loads(d) for d in _actions(database, "directory_sync")] == [{"changed": 3}]

    with database.transaction() as session:
        assert directory_sync.apply(session, settings, page, T0) == 0
    assert len(_actions(database, "directory_sync")) == 1


@pytest.mark.parametrize(
    ("instance_id", "role", "complaint"),
    [("H A", "provincial", "is not an instance id"), ("HA", "regional", "must be one of national, provincial")],
    ids=["bad-id", "bad-role"],
)
def test_a_peer_with_a_bad_id_or_role_is_refused(
    database: Database, instance_id: str, role: str, complaint: str
) -> None:
    with database.transaction() as session, pytest.raises(DirectoryError, match=complaint):
        peers.add_peer(session, instance_id, "Tỉnh A", role, T0)
    with database.transaction(readonly=True) as session:
        assert peers.list_peers(session) == []


def test_a_peer_authenticates_only_with_its_id_and_secret(database: Database) -> None:
    with database.transaction() as session:
        secret = peers.add_peer(session, "HA", "Tỉnh A", "provincial", T0)
    with database.transaction(readonly=True) as session:
        assert peers.authenticate(session, "HA", secret) == "HA"
        assert peers.authenticate(session, "HA", "wrong") is None
        assert peers.authenticate(session, None, secret) is None
        assert peers.authenticate(session, "HA", "") is None
