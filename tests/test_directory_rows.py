"""gateway/directory.py: every bad import row is refused with a message naming its line/entry and field,
and the directory operations' edge cases (no-op enable, level filter, past expiry, grace) hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import directory
from gateway.directory import AgencyRow, DirectoryError, parse_csv, parse_json, read_rows
from gateway.store.database import Database
from gateway.store.models import AuditEntry, Credential

HEADER = "code,name,level,parent_code,test_code,note,home_instance\n"
NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("000.00.00.G22,   ,1,,0,,\n", "line 2: agency 000.00.00.G22 has an empty name"),
        ("000.00.00.G22,VPCP,5,,0,,\n", "line 2: level 5 of 000.00.00.G22 is not one of 1-4"),
        ("000.00.00.G22,VPCP,0,,0,,\n", "line 2: level 0 of 000.00.00.G22 is not one of 1-4"),
        ("000.00.01.H41,Sở,2,000.00.01.H41,0,,\n", "line 2: agency 000.00.01.H41 names itself as its parent"),
        ("000.00.01.H41,Sở,2,h41,0,,\n", "line 2: parent_code: 'h41' is not an agency code"),
        ("000.00.01.H41,Sở,2,,0,,tỉnh A\n", "line 2: home_instance 'tỉnh A' of 000.00.01.H41 is not an instance id"),
        ("000.00.00.G22,VPCP,1,,0,,,extra\n", "line 2: more fields than the header has columns"),
        ("000.00.00.G22,VPCP,1,,0,,\n,Sở,2,,0,,\n", "line 3: missing code"),
    ],
)
def test_a_bad_csv_row_names_its_line_and_field(body: str, message: str) -> None:
    with pytest.raises(DirectoryError) as refused:
        parse_csv(HEADER + body)
    assert refused.value.message.startswith(message)


def test_a_csv_header_without_required_columns_is_refused_with_the_expected_columns() -> None:
    with pytest.raises(DirectoryError) as refused:
        parse_csv("code,title,parent_code\n000.00.00.G22,VPCP,\n")
    expected = "line 1: the header lacks name, level; expected columns " + ",".join(directory.COLUMNS)
    assert refused.value.message == expected


def test_blank_csv_rows_are_skipped_and_a_bom_is_ignored() -> None:
    rows = parse_csv("\ufeff" + HEADER + ",,,,,,\n000.00.00.H41,Nghệ An,1,,yes,,HA\n , ,,,,,\n")
    assert rows == [AgencyRow("000.00.00.H41", "Nghệ An", 1, None, True, None, "line 3", "HA")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"code": "000.00.00.G22",\n "name": }]', "line 2: not valid JSON (Expecting value)"),
        ('{"code": "000.00.00.G22", "name": "VPCP", "level": 1}', "a JSON directory must be a list of agency objects"),
        ('{"agencies": "000.00.00.G22"}', "a JSON directory must be a list of agency objects"),
        ('[{"code": "000.00.00.G22", "name": "VPCP", "level": 1}, "000.00.00.H41"]', "entry 2: expected an object"),
        ('[{"code": "000.00.00.G22", "name": "VPCP", "level": "first"}]', "entry 1: level 'first' of 000.00.00.G22"),
        ('[{"code": "000.00.00.G22", "name": "VPCP", "level": 1, "test_code": 2}]', "entry 1: test_code '2'"),
    ],
)
def test_a_bad_json_directory_names_the_line_or_entry(text: str, message: str) -> None:
    with pytest.raises(DirectoryError) as refused:
        parse_json(text)
    assert refused.value.message.startswith(message)


def test_a_json_directory_may_wrap_its_list_in_an_agencies_key() -> None:
    entries = [
        {"code": "000.00.00.H41", "name": "Nghệ An", "level": 1, "test_code": True},
        {"code": "000.00.01.H41", "name": "Sở", "level": "2", "parent_code": "000.00.00.H41", "note": " x "},
    ]
    rows = parse_json(json.dumps({"agencies": entries}, ensure_ascii=False))
    assert [(r.code, r.level, r.parent_code, r.test_code, r.note, r.where) for r in rows] == [
        ("000.00.00.H41", 1, None, True, None, "entry 1"),
        ("000.00.01.H41", 2, "000.00.00.H41", False, "x", "entry 2"),
    ]


def test_read_rows_picks_the_parser_by_suffix_and_refuses_text_that_is_not_utf8(tmp_path: Path) -> None:
    as_json = tmp_path / "agencies.JSON"
    as_json.write_text('[{"code": "000.00.00.G22", "name": "VPCP", "level": 1}]', encoding="utf-8")
    as_csv = tmp_path / "agencies.txt"
    as_csv.write_text(HEADER + "000.00.00.G22,VPCP,1,,0,,\n", encoding="utf-8")
    assert [r.where for r in read_rows(as_json)] == ["entry 1"]
    assert [r.where for r in read_rows(as_csv)] == ["line 2"]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(HEADER.encode() + "000.00.00.G22,Văn,1,,0,,\n".encode("cp1258"))
    with pytest.raises(DirectoryError) as refused:
        read_rows(latin1)
    assert refused.value.message == "not UTF-8 text (invalid continuation byte at byte 72)"


def _actions(database: Database) -> list[str]:
    with database.transaction(readonly=True) as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_enabling_an_active_agency_changes_and_audits_nothing(database: Database) -> None:
    with database.transaction() as session:
        directory.add_agency(session, "000.00.00.H41", "Nghệ An", 1, NOW)
    with database.transaction() as session:
        assert directory.enable_agency(session, "000.00.00.H41", NOW).active is True
    assert _actions(database) == ["agency_add"]
    with database.transaction() as session:
        directory.disable_agency(session, "000.00.00.H41", NOW)
        directory.disable_agency(session, "000.00.00.H41", NOW)
    assert _actions(database) == ["agency_add", "agency_disable"]


def test_listing_one_level(database: Database) -> None:
    with database.transaction() as session:
        directory.add_agency(session, "000.00.00.H41", "Nghệ An", 1, NOW)
        directory.add_agency(session, "000.00.01.H41", "Sở", 2, NOW, parent_code="000.00.00.H41")
        directory.add_agency(session, "000.00.00.G22", "VPCP", 1, NOW)
        assert [a.code for a in directory.list_agencies(session, level=1)] == ["000.00.00.G22", "000.00.00.H41"]
        assert [a.code for a in directory.list_agencies(session, level=2)] == ["000.00.01.H41"]
        assert directory.list_agencies(session, level=3) == []


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(seconds=1)])
def test_a_credential_cannot_be_issued_already_expired(database: Database, expires_at: datetime) -> None:
    with database.transaction() as session:
        directory.add_agency(session, "000.00.00.G22", "VPCP", 1, NOW)
    with database.transaction() as session, pytest.raises(DirectoryError) as refused:
        directory.issue_credential(session, "000.00.00.G22", NOW, expires_at=expires_at)
    assert refused.value.message == f"The expiry {expires_at.isoformat()} is not in the future."
    with database.transaction(readonly=True) as session:
        assert session.scalars(select(Credential)).first() is None


def test_rotation_grace_never_extends_a_credential_that_expires_sooner(database: Database) -> None:
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=30)
    with database.transaction() as session:
        directory.add_agency(session, "000.00.00.G22", "VPCP", 1, NOW)
        directory.issue_credential(session, "000.00.00.G22", NOW, expires_at=soon)
        directory.issue_credential(session, "000.00.00.G22", NOW, expires_at=later)
    with database.transaction() as session:
        directory.rotate_credential(session, "000.00.00.G22", NOW, grace=timedelta(hours=2))
    with database.transaction(readonly=True) as session:
        expiries = [c.expires_at for c in session.scalars(select(Credential).order_by(Credential.id))]
        revoked = [c.revoked_at for c in session.scalars(select(Credential))]
    grace_end = NOW + timedelta(hours=2)
    assert expiries == [soon, grace_end, None]
    assert revoked == [None, None, None], "a grace period retires by expiry, not by revocation"
