"""The interconnection report and monitoring queries, on a store filled through ExchangeService.

The story (January 2016, all events at noon UTC, the period is Vietnam days 4-10 January):

- 2 Jan: VPCP sends A to Cao Bằng (whose credential was revoked); Cao Bằng never fetches it.
- 5 Jan: VPCP sends B (due 8 Jan) to Nghệ An and its Sở TT&TT.
- 6 Jan: Nghệ An fetches B (01), acknowledges, reports 03 and 04; the Sở fetches B (01) only.
- 7 Jan: Nghệ An sends C to VPCP; VPCP fetches it and reports 03, 05, 06.
- 8 Jan: the Sở sends D to Nghệ An (never fetched).
- 12 Jan: the Sở reports 03 on B; Cao Bằng's queue is leased four times; the Sở recalls D (withdrawn).

Hậu Giang holds a credential and does nothing; the level-3 centre has none; a level-4 room is
disabled although it holds a credential.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from support.staging import stage

from gateway import csvout, reports
from gateway.cli import main
from gateway.config import Settings
from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes
from gateway.exchange.credentials import hash_secret
from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, Credential

VPCP, NGHE_AN, CAO_BANG, HAU_GIANG = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.H30"
SO_TTTT, CENTRE, ROOM = "000.00.05.H41", "000.01.05.H41", "001.01.05.H41"
AGENCIES = [
    (VPCP, "Văn phòng Chính phủ", 1, None),
    (NGHE_AN, "Ủy ban nhân dân tỉnh Nghệ An", 1, None),
    (CAO_BANG, "Ủy ban nhân dân tỉnh Cao Bằng", 1, None),
    (HAU_GIANG, "Ủy ban nhân dân tỉnh Hậu Giang", 1, None),
    (SO_TTTT, "Sở Thông tin và Truyền thông Nghệ An", 2, NGHE_AN),
    (CENTRE, "Trung tâm CNTT&TT Nghệ An", 3, SO_TTTT),
    (ROOM, "Phòng Kỹ thuật", 4, CENTRE),
]
FIRST_DAY, LAST_DAY = date(2016, 1, 4), date(2016, 1, 10)


def noon(day: int) -> datetime:
    return datetime(2016, 1, day, 12, tzinfo=UTC)


@dataclass
class Story:
    db: Database
    settings: Settings
    ids: dict[str, str]
    set_clock: Callable[[datetime], None]


def _letter(tmp_path: Path, sender: str, recipients: list[str], number: str, due: date | None = None) -> Path:
    message = DocumentMessage(
        sender=Organization(sender, sender),
        recipients=tuple(Organization(code, code) for code in recipients),
        code_number=number,
        code_notation="TEST",
        promulgation_date=date(2016, 1, 1),
        type_code=1,
        type_name="Công văn",
        subject=f"Văn bản {number}",
        due_date=due,
    )
    path = tmp_path / f"{sender}-{number}.edxml"
    path.write_bytes(document_bytes(message, [AttachmentSource("a.txt", "text/plain", data=b"x")]))
    return path


@pytest.fixture
def story(database: Database, tmp_path: Path) -> Story:
    settings = Settings(data_dir=tmp_path / "var", database_url=database.url.render_as_string(False), lease_seconds=60)
    clock = [noon(1)]
    assert settings.blob_dir is not None
    service = ExchangeService(database, BlobStore(settings.blob_dir), settings, clock=lambda: clock[0])
    callers: dict[str, Caller] = {}
    with database.transaction() as session:
        for code, name, level, parent in AGENCIES:
            agency = Agency(
                code=code,
                name=name,
                level=level,
                parent_code=parent,
                active=code != ROOM,
                created_at=datetime(2015, 12, 1, tzinfo=UTC),
            )
            session.add(agency)
            session.flush()
            callers[code] = Caller(agency.id, code, name)
            if code != CENTRE:
                session.add(
                    Credential(
                        agency_id=agency.id,
                        secret_hash=hash_secret(code),
                        created_at=datetime(2015, 12, 1, tzinfo=UTC),
                        revoked_at=datetime(2015, 12, 20, tzinfo=UTC) if code == CAO_BANG else None,
                    )
                )

    def at(moment: datetime) -> None:
        clock[0] = moment

    def send(day: int, sender: str, recipients: list[str], number: str, due: date | None = None) -> str:
        at(noon(day))
        return service.send_document(
            callers[sender], stage(service, _letter(tmp_path, sender, recipients, number, due))
        ).document_id

    def fetch(day: int, code: str, document_id: str, acknowledge: bool = False) -> None:
        at(noon(day))
        item = next(i for i in service.pending(callers[code]) if i.document_id == document_id and i.kind == "document")
        service.fetch(callers[code], item.item_id)
        if acknowledge:
            service.acknowledge(callers[code], item.item_id)

    def report(day: int, code: str, document_id: str, *statuses: str) -> None:
        at(noon(day))
        for status in statuses:
            service.update_status(callers[code], document_id, status)

    ids = {"A": send(2, VPCP, [CAO_BANG], "1"), "B": send(5, VPCP, [NGHE_AN, SO_TTTT], "2", due=date(2016, 1, 8))}
    fetch(6, NGHE_AN, ids["B"], acknowledge=True)
    report(6, NGHE_AN, ids["B"], "03", "04")
    fetch(6, SO_TTTT, ids["B"])
    ids["C"] = send(7, NGHE_AN, [VPCP], "3")
    fetch(7, VPCP, ids["C"], acknowledge=True)
    report(7, VPCP, ids["C"], "03", "05", "06")
    ids["D"] = send(8, SO_TTTT, [NGHE_AN], "4")
    report(12, SO_TTTT, ids["B"], "03")
    for minute in range(0, 8, 2):
        at(noon(12) + timedelta(minutes=minute))
        service.pending(callers[CAO_BANG])
    report(12, SO_TTTT, ids["D"], "13")
    return Story(database, settings, ids, at)


def _period() -> tuple[datetime, datetime]:
    return reports.period_for_days(FIRST_DAY, LAST_DAY)


def test_period_is_vietnam_days() -> None:
    start, end = _period()
    assert start == datetime(2016, 1, 3, 17, tzinfo=UTC)
    assert end == datetime(2016, 1, 10, 17, tzinfo=UTC)


def test_interconnection_report_counts(story: Story) -> None:
    start, end = _period()
    with story.db.transaction() as session:
        result = reports.interconnection_report(session, start, end)
    by_level = {s.level: s for s in result.levels}
    assert by_level[1] == reports.LevelStats(
        level=1,
        agencies=4,
        active=4,
        connected=3,
        sent=2,
        received=2,
        reported_status=2,
        documents_sent=2,
        documents_received=2,
        status_counts={"01": 2, "03": 2, "04": 1, "05": 1, "06": 1},
    )
    assert by_level[2] == reports.LevelStats(
        level=2,
        agencies=1,
        active=1,
        connected=1,
        sent=1,
        received=1,
        reported_status=0,
        documents_sent=1,
        documents_received=1,
        status_counts={"01": 1},
    )
    assert by_level[3] == reports.LevelStats(3, 1, 1, 0, 0, 0, 0, 0, 0, {})
    assert by_level[4] == reports.LevelStats(4, 1, 0, 0, 0, 0, 0, 0, 0, {})
    assert result.total == reports.LevelStats(
        level=None,
        agencies=7,
        active=6,
        connected=4,
        sent=3,
        received=3,
        reported_status=2,
        documents_sent=3,
        documents_received=3,
        status_counts={"01": 3, "03": 2, "04": 1, "05": 1, "06": 1},
    )


def test_connected_is_judged_at_as_of(story: Story) -> None:
    start, end = _period()
    with story.db.transaction() as session:
        early = reports.interconnection_report(session, start, end, as_of=datetime(2015, 11, 1, tzinfo=UTC))
        cao_bang_live = reports.interconnection_report(session, start, end, as_of=datetime(2015, 12, 10, tzinfo=UTC))
    assert early.total.connected == 0
    assert cao_bang_live.total.connected == 5


def test_connection_grades_in_period_and_ever(story: Story) -> None:
    start, end = _period()
    with story.db.transaction() as session:
        in_period = {g.code: g.grade for g in reports.connection_grades(session, noon(13), start, end)}
        ever = {g.code: g.grade for g in reports.connection_grades(session, noon(13))}
        counts = reports.grade_counts(reports.connection_grades(session, noon(13), start, end))
    assert in_period == {
        VPCP: reports.REPORTS_STATUS,
        NGHE_AN: reports.REPORTS_STATUS,
        CAO_BANG: reports.NOT_CONNECTED,
        HAU_GIANG: reports.CONNECTED,
        SO_TTTT: reports.SENDS_AND_RECEIVES,
        CENTRE: reports.NOT_CONNECTED,
        ROOM: reports.NOT_CONNECTED,
    }
    assert ever[SO_TTTT] == reports.REPORTS_STATUS
    assert counts[1] == {
        reports.NOT_CONNECTED: 1,
        reports.CONNECTED: 1,
        reports.SENDS_AND_RECEIVES: 0,
        reports.REPORTS_STATUS: 2,
    }
    assert counts[2][reports.SENDS_AND_RECEIVES] == 1


def test_documents_in_flight_and_overdue(story: Story) -> None:
    ids = story.ids
    with story.db.transaction() as session:
        flight = [(c.document_id, c.recipient_code, c.status) for c in reports.documents_in_flight(session)]
        overdue = {
            (c.document_id, c.recipient_code): c.reasons
            for c in reports.overdue_documents(session, noon(13), ack_overdue_hours=24)
        }
        early = reports.overdue_documents(session, noon(5) + timedelta(hours=1), ack_overdue_hours=24)
    assert flight == [(ids["A"], CAO_BANG, None), (ids["B"], NGHE_AN, "04"), (ids["B"], SO_TTTT, "03")]
    assert overdue == {
        (ids["A"], CAO_BANG): ("not acknowledged",),
        (ids["B"], NGHE_AN): ("past due date",),
        (ids["B"], SO_TTTT): ("past due date", "not acknowledged"),
    }
    assert [(c.document_id, c.unacknowledged_since) for c in early] == [(ids["A"], noon(2))]


def test_failed_deliveries(story: Story) -> None:
    with story.db.transaction() as session:
        failed = reports.failed_deliveries(session)
    assert [(f.document_id, f.agency_code, f.state, f.attempts, f.reason) for f in failed] == [
        (story.ids["A"], CAO_BANG, "pending", 4, "4 attempts, never acknowledged"),
        (story.ids["D"], NGHE_AN, "withdrawn", 0, "withdrawn"),
    ]


def test_interconnection_csv(story: Story) -> None:
    start, end = _period()
    with story.db.transaction() as session:
        result = reports.interconnection_report(session, start, end)
    out = io.StringIO()
    reports.write_interconnection_csv(result, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == [
        "period_start",
        "period_end",
        "level",
        "agencies",
        "active",
        "connected",
        "sent",
        "received",
        "reported_status",
        "documents_sent",
        "documents_received",
        "status_01",
        "status_02",
        "status_03",
        "status_04",
        "status_05",
        "status_06",
        "status_13",
        "status_15",
        "status_16",
    ]
    period = ["2016-01-03T17:00:00+00:00", "2016-01-10T17:00:00+00:00"]
    codes = ["0", "2", "1", "1", "1", "0", "0", "0"]
    assert rows[1] == [*period, "1", "4", "4", "3", "2", "2", "2", "2", "2", "2", *codes]
    assert rows[-1] == [*period, "all", "7", "6", "4", "3", "3", "2", "3", "3", "3", *codes]
    assert len(rows) == 6


def test_write_csv_of_dataclasses(story: Story) -> None:
    with story.db.transaction() as session:
        grades = reports.connection_grades(session, noon(13))
    out = io.StringIO()
    reports.write_csv(grades, out, extra=("grade",))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["code"] == VPCP and rows[0]["grade"] == reports.REPORTS_STATUS and rows[0]["connected"] == "1"
    assert rows[-1]["code"] == ROOM and rows[-1]["active"] == "0" and rows[-1]["parent_code"] == CENTRE


def test_report_command_prints_and_writes_csv(story: Story, tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    result = CliRunner().invoke(
        main,
        [
            "--database-url",
            story.settings.database_url,
            "report",
            "--from",
            "2016-01-04",
            "--to",
            "2016-01-10",
            "--csv",
            str(target),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Interconnection 2016-01-04 – 2016-01-10" in result.stdout
    assert "sends, receives and reports status" in result.stdout
    with story.db.transaction() as session:
        expected = io.StringIO()
        reports.write_interconnection_csv(reports.interconnection_report(session, *_period()), expected)
    assert target.read_bytes().decode("utf-8") == expected.getvalue()


def test_report_command_refuses_reversed_period(story: Story) -> None:
    result = CliRunner().invoke(
        main, ["--database-url", story.settings.database_url, "report", "--from", "2016-01-10", "--to", "2016-01-04"]
    )
    assert result.exit_code == 2
    assert "is after --to" in result.output


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x.example","x")', '\'=HYPERLINK("http://x.example","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("Sở TT&TT = Nghệ An", "Sở TT&TT = Nghệ An"),
        ("", ""),
        (-2, "-2"),
        (3.5, "3.5"),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, written: str) -> None:
    out = io.StringIO()
    csvout.writer(out).writerows([[value, 7]])
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [[written, "7"]]


def test_report_csvs_neutralise_agency_names(story: Story) -> None:
    with story.db.transaction() as session:
        session.execute(update(Agency).where(Agency.code == HAU_GIANG).values(name="=1+1"))
    with story.db.transaction() as session:
        grades = reports.connection_grades(session, noon(13))
    out = io.StringIO()
    reports.write_csv(grades, out, extra=("grade",))
    rows = {row["code"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows[HAU_GIANG]["name"] == "'=1+1" and rows[HAU_GIANG]["level"] == "1"


def test_csv_line_breaks_inside_a_cell_cannot_start_a_row() -> None:
    out = io.StringIO()
    csvout.writer(out).writerow(["Sở A\r=1+1", "Sở B\n@SUM(1)", 1])
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [["Sở A\r=1+1", "Sở B\n@SUM(1)", "1"]]
