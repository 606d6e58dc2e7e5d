"""The leadership's view: numbers from a scripted exchange, the same in the page, the CLI and the CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.clock import Clock
from support.letters import official_letter
from support.live import CAO_BANG, NGHE_AN, VPCP, seed_directory

from gateway.cli import main
from gateway.config import Settings
from gateway.exchange.credentials import hash_secret
from gateway.exchange.service import ExchangeService
from gateway.leadership import leadership_view, rows
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Credential
from gateway.web.leadership import LeadershipPage

SO = "000.00.05.H41"
SANDBOX = "000.00.00.Z98"
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 7)
NOW = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)


@pytest.fixture
def scripted(tmp_path: Path, database: Database) -> Iterator[Database]:
    """Two documents from VPCP and one from a sandbox agency, handled as the module test expects."""
    seed_directory(database)
    with database.transaction() as session:
        for code, name, level, sandbox in (
            (SO, "Sở Thông tin và Truyền thông Nghệ An", 2, False),
            (SANDBOX, "Hộp cát", 1, True),
        ):
            agency = Agency(
                code=code, name=name, level=level, parent_code=None, active=True, sandbox=sandbox, created_at=NOW
            )
            session.add(agency)
            session.flush()
            session.add(Credential(agency_id=agency.id, secret_hash=hash_secret(f"secret-for-{code}"), created_at=NOW))
    clock = Clock(datetime(2026, 11, 2, 1, 0, tzinfo=UTC))
    exchange = ExchangeService(database, BlobStore(tmp_path / "blobs"), Settings(data_dir=tmp_path), clock=clock)
    caller = {
        code: exchange.authenticate(code, f"secret-for-{code}") for code in (VPCP, NGHE_AN, CAO_BANG, SO, SANDBOX)
    }

    def send(sender: str, recipients: list[str], number: str, due: date | None) -> str:
        staged = exchange.begin_staging()
        letter = official_letter(sender, recipients, number=number)
        if due is None:
            letter = letter.replace(b"<edXML:DueDate>2026/12/31</edXML:DueDate>", b"")
        else:
            letter = letter.replace(b"2026/12/31", due.strftime("%Y/%m/%d").encode())
        staged.write(letter)
        staged.flush()
        try:
            return exchange.send_document(caller[sender], staged).document_id
        finally:
            staged.discard()

    def at(hours: float) -> None:
        clock.now = datetime(2026, 11, 2, 1, 0, tzinfo=UTC) + timedelta(hours=hours)

    def fetch(code: str) -> None:
        for item in exchange.pending(caller[code]):
            exchange.fetch(caller[code], item.item_id)
            exchange.acknowledge(caller[code], item.item_id)

    first = send(VPCP, [NGHE_AN, CAO_BANG, SO], "1", date(2026, 11, 5))
    at(1), fetch(NGHE_AN)
    at(2), fetch(CAO_BANG)
    at(3), exchange.update_status(caller[NGHE_AN], first, "03")
    at(4), exchange.update_status(caller[CAO_BANG], first, "03")
    at(24)
    second = send(VPCP, [NGHE_AN], "2", None)
    at(25), fetch(NGHE_AN)
    at(26), exchange.update_status(caller[NGHE_AN], second, "02", "Gửi nhầm")
    at(27), exchange.update_status(caller[NGHE_AN], first, "06")
    sandbox = send(SANDBOX, [NGHE_AN], "3", date(2026, 11, 3))
    at(28), fetch(NGHE_AN)
    exchange.update_status(caller[NGHE_AN], sandbox, "03")
    yield database


def _by(view_rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    return {(row["scope"], row["code"] or row["level"]): row for row in view_rows}


def test_the_numbers_per_agency_and_level(scripted: Database) -> None:
    with scripted.transaction(readonly=True) as session:
        view = leadership_view(session, FIRST, LAST, NOW)
    table = _by(rows(view))
    assert table[("agency", NGHE_AN)] | {} == {
        **table[("agency", NGHE_AN)],
        "received": "2",
        "completed": "1",
        "completed_share": "0.500",
        "with_due_date": "1",
        "completed_on_time": "1",
        "on_time_share": "1.000",
        "median_hours_to_acceptance": "2.00",
        "median_hours_to_completion": "26.00",
        "overdue": "0",
    }
    assert (table[("agency", CAO_BANG)]["received"], table[("agency", CAO_BANG)]["overdue"]) == ("1", "1")
    assert table[("agency", CAO_BANG)]["median_hours_to_acceptance"] == "2.00"
    assert table[("agency", SO)]["median_hours_to_acceptance"] == ""
    level_one = table[("level", "1")]
    assert (level_one["received"], level_one["completed"], level_one["on_time_share"], level_one["overdue"]) == (
        "3",
        "1",
        "0.500",
        "1",
    )
    assert table[("level", "2")]["overdue"] == "1"
    assert SANDBOX not in {row["code"] for row in rows(view)}
    trend = {day.day: day for day in view.trend}
    assert len(view.trend) == 7
    assert (trend[date(2026, 11, 2)].documents, trend[date(2026, 11, 2)].statuses["03"]) == (1, 2)
    assert (trend[date(2026, 11, 3)].documents, trend[date(2026, 11, 3)].statuses["02"]) == (1, 1)
    assert trend[date(2026, 11, 3)].statuses["06"] == 1
    assert trend[date(2026, 11, 3)].statuses["03"] == 0  # the sandbox's document is not counted


def _page(db: Database, query: str, authorization: str | None) -> tuple[str, str]:
    page = LeadershipPage(db, "pw", clock=lambda: NOW)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    environ = {"QUERY_STRING": query, "REQUEST_METHOD": "GET"}
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    body = b"".join(page(environ, start_response)).decode()
    return seen["status"], body


def test_the_page_shows_the_same_numbers_and_draws_the_trend(scripted: Database) -> None:
    import base64

    login = "Basic " + base64.b64encode(b"operator:pw").decode()
    assert _page(scripted, "", None)[0].startswith("401")
    assert _page(scripted, "from=2026-11-07&to=2026-11-01", login)[0].startswith("400")
    status, body = _page(scripted, "from=2026-11-01&to=2026-11-07", login)
    assert status.startswith("200")
    row = body.split(f'<tr data-agency="{NGHE_AN}">')[1].split("</tr>")[0]
    assert ">2<" in row and ">50%<" in row and ">100%<" in row and "2.0 h" in row and "26.0 h" in row
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="trend"' in body and body.count('class="documents"') == 7
    assert "<script" not in body and "http://" not in body.replace("http://www.w3.org/2000/svg", "")


def test_the_cli_prints_and_exports_the_same_rows(scripted: Database, tmp_path: Path) -> None:
    out = tmp_path / "leadership.csv"
    result = CliRunner().invoke(
        main,
        [
            "--database-url",
            str(scripted.url.render_as_string(hide_password=False)),
            "leadership",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-07",
            "--csv",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert NGHE_AN in result.output
    with out.open(encoding="utf-8") as stream:
        exported = list(csv.DictReader(stream))
    with scripted.transaction(readonly=True) as session:
        expected = rows(leadership_view(session, FIRST, LAST, datetime.now(UTC)))
    assert exported == expected
