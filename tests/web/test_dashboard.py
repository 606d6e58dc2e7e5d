"""``/dashboard``: closed without a password, Basic login, and exactly the numbers the store holds.

Runs once on SQLite and once on PostgreSQL. The numbers are checked twice: against what the
scripted exchange must have produced, and against :mod:`gateway.reports` and the queue module,
so the bounded dashboard queries cannot drift from the reports' definitions.
"""

from __future__ import annotations

import base64
import io
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import lxml.html
import pytest
from support.letters import official_letter
from support.queue_counts import pending_counts
from support.statements import counting
from web_support import (
    CAO_BANG,
    DIRECTORY,
    HAU_GIANG,
    NGHE_AN,
    PASSWORD,
    SO_TTTT,
    SUBJECT,
    VPCP,
    Live,
    http_get,
    letter,
    scripted_exchange,
    serving,
)

from gateway import reports
from gateway.app import create_app
from gateway.certification import Certifications
from gateway.certification.script import SANDBOX_CODE
from gateway.config import Settings
from gateway.exchange.service import ExchangeService
from gateway.store.blobs import BlobStore
from gateway.store.models import Agency
from gateway.web.dashboard import Dashboard, operator_authorized, requeue_token
from gateway.web.queries import Limits
from gateway.web.render import SANDBOX_MARK

Page = lxml.html.HtmlElement


def _get(live: Live, password: str | None = PASSWORD, user: str = "operator") -> Any:
    return http_get(f"{live.base}/dashboard", user if password is not None else None, password)


def _page(live: Live) -> Page:
    response = _get(live)
    assert response.status == 200, response.body[:500]
    return lxml.html.fromstring(response.text)


def _number(page: Page, ident: str) -> int:
    return int(page.get_element_by_id(ident).text_content())


def _wsgi(
    app: Any, path: str, authorization: str | None = None, method: str = "GET", body: bytes = b""
) -> tuple[str, dict[str, str], bytes]:
    """Call a WSGI app in-process; for requests a browser or urllib cannot send (POST, HEAD, bad headers)."""
    environ: dict[str, Any] = {
        "PATH_INFO": path,
        "REQUEST_METHOD": method,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return seen["status"], seen["headers"], body


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- login ----------------------------------------------------------------------------------------


def test_the_dashboard_needs_the_operator_login(live: Live) -> None:
    anonymous = _get(live, password=None)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="edxml-gateway operator"')
    assert SUBJECT not in anonymous.text and "Nghệ An" not in anonymous.text
    assert _get(live, password="wrong").status == 401
    assert _get(live, password=PASSWORD, user="admin").status == 401
    assert _get(live, password=PASSWORD[:-1]).status == 401
    status, _, _ = _wsgi(live.app, "/dashboard", "Bearer " + PASSWORD)
    assert status.startswith("401")
    status, _, _ = _wsgi(live.app, "/dashboard", "Basic not-base64!")
    assert status.startswith("401")

    ok = _get(live)
    assert ok.status == 200
    assert ok.headers["Content-Type"] == "text/html; charset=utf-8"
    assert ok.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in ok.headers["Content-Security-Policy"]
    assert "Ủy ban nhân dân tỉnh Nghệ An" in ok.text, "Vietnamese names arrive as UTF-8"


def test_the_dashboard_is_closed_when_no_password_is_set(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=sqlite_url, operator_password="")
    with serving(settings) as live:
        for password in (None, "", "anything"):
            response = _get(live, password=password)
            assert response.status == 503
            assert "set GATEWAY_OPERATOR_PASSWORD" in response.text
            assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize(
    ("user", "given", "expected"),
    [
        ("operator", "pa:ss wörd", True),
        ("operator", "pa:ss wör", False),
        ("operator", "pa:ss wördx", False),
        ("Operator", "pa:ss wörd", False),
        ("", "pa:ss wörd", False),
    ],
)
def test_operator_credentials_are_checked_exactly(user: str, given: str, expected: bool) -> None:
    assert operator_authorized(_basic(user, given), "pa:ss wörd") is expected


def test_no_credentials_open_an_unconfigured_dashboard() -> None:
    assert operator_authorized(_basic("operator", ""), "") is False
    assert operator_authorized(None, "secret") is False
    assert operator_authorized("Basic " + base64.b64encode(b"operator").decode(), "secret") is False


def test_the_dashboard_is_read_only(live: Live) -> None:
    status, headers, _ = _wsgi(live.app, "/dashboard", _basic("operator", PASSWORD), method="POST")
    assert status.startswith("405") and headers["Allow"] == "GET"
    status, headers, body = _wsgi(live.app, "/dashboard", _basic("operator", PASSWORD), method="HEAD")
    assert status.startswith("200") and body == b"" and int(headers["Content-Length"]) > 0


def test_a_store_that_cannot_be_read_gives_503_and_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    app = create_app(Settings(data_dir=tmp_path / "var", database_url=unreachable, operator_password=PASSWORD))
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.web"):
            status, headers, body = _wsgi(app, "/dashboard", _basic("operator", PASSWORD))
    finally:
        app.gateway.db.dispose()
    assert status == "503 Service Unavailable" and headers["Cache-Control"] == "no-store"
    assert body == b"The store could not be read; retry.\n"
    assert "dashboard failed" in caplog.text


def test_relay_requeue_needs_the_login_a_post_and_a_failed_consignment(live: Live) -> None:
    login = _basic("operator", PASSWORD)
    status, headers, _ = _wsgi(live.app, "/relay-requeue", method="POST")
    assert status.startswith("401") and "WWW-Authenticate" in headers
    status, headers, body = _wsgi(live.app, "/relay-requeue", login)
    assert status.startswith("405") and headers["Allow"] == "POST" and body == b"POST the dashboard's form.\n"
    form = f"consignment=no-such-consignment&token={requeue_token(PASSWORD)}".encode()
    status, _, body = _wsgi(live.app, "/relay-requeue", login, method="POST", body=form)
    assert status == "404 Not Found" and body == b"No failed consignment no-such-consignment.\n"
    status, _, body = _wsgi(live.app, "/relay-requeue", login, method="POST", body=b"consignment=x&token=guess")
    assert status.startswith("403") and b"Requeue from this gateway's own dashboard." in body


# -- the numbers ----------------------------------------------------------------------------------


def _store_numbers(live: Live, ack_overdue_hours: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    with live.db.transaction() as session:
        in_flight = reports.documents_in_flight(session)
        return {
            "copies": len(in_flight),
            "documents": len({c.document_id for c in in_flight}),
            "overdue": reports.overdue_documents(session, now, ack_overdue_hours),
            "failed": reports.failed_deliveries(session),
            "pending": pending_counts(session),
            "codes": dict(session.execute(Agency.__table__.select().with_only_columns(Agency.id, Agency.code)).all()),
            "grades": reports.connection_grades(session, now),
        }


def test_the_dashboard_shows_exactly_what_the_store_holds(live: Live) -> None:
    document_id = scripted_exchange(live, due=date(2099, 12, 31))
    page = _page(live)
    store = _store_numbers(live, ack_overdue_hours=0)

    assert _number(page, "in-flight-documents") == store["documents"] == 1
    assert _number(page, "in-flight-copies") == store["copies"] == 2
    assert _number(page, "overdue-total") == len(store["overdue"]) == 1
    assert _number(page, "failed-total") == len(store["failed"]) == 0
    assert _number(page, "queue-total") == sum(store["pending"].values()) == 3
    assert _number(page, "queue-agencies") == len(store["pending"]) == 2

    [document] = page.xpath("//tr[@data-document]")
    assert document.get("data-document") == document_id
    statuses = {row.get("data-recipient"): row.get("data-status") for row in document.xpath(".//tr[@data-recipient]")}
    assert statuses == {NGHE_AN: "05", CAO_BANG: ""}
    assert "05 in progress" in document.text_content() and "not fetched" in document.text_content()
    assert SUBJECT in document.text_content()

    [overdue] = page.xpath("//tr[@data-overdue]")
    assert overdue.get("data-overdue") == f"{document_id}:{CAO_BANG}"
    assert "not acknowledged" in overdue.text_content() and "past due date" not in overdue.text_content()
    assert [(c.document_id, c.recipient_code) for c in store["overdue"]] == [(document_id, CAO_BANG)]

    codes = store["codes"]
    queues = {
        row.get("data-queue"): int(row.xpath("./td")[1].text_content()) for row in page.xpath("//tr[@data-queue]")
    }
    assert queues == {codes[agency]: count for agency, count in store["pending"].items()} == {VPCP: 2, CAO_BANG: 1}

    shown_grades = {
        row.get("data-agency"): row.xpath(".//span[@data-grade]")[0].get("data-grade")
        for row in page.xpath("//tr[@data-agency]")
    }
    assert shown_grades == {g.code: g.grade for g in store["grades"]}
    assert shown_grades[VPCP] == shown_grades[NGHE_AN] == reports.CONNECTED
    for level, counts in reports.grade_counts(store["grades"]).items():
        for grade, count in counts.items():
            [cell] = page.xpath(f'//td[@data-level="{level}"][@data-grade="{grade}"]')
            assert int(cell.text_content()) == count
    assert {HAU_GIANG, SO_TTTT} <= set(shown_grades)
    assert {c.get("data-status-count"): int(c.text_content()) for c in page.xpath("//td[@data-status-count]")} == {
        "none": 1,
        "05": 1,
    }


@pytest.mark.parametrize("ack_overdue_hours", [24])
def test_overdue_follows_the_due_date_and_the_allowed_hours(live: Live) -> None:
    scripted_exchange(live, due=date(2099, 12, 31))
    page = _page(live)
    assert _number(page, "overdue-total") == 0, "within 24 h nothing waits too long"
    assert _number(page, "in-flight-copies") == 2

    vpcp = live.client(VPCP)
    vpcp.service.sendDocument(document=letter(VPCP, [NGHE_AN, CAO_BANG], number="7817", due=date(2020, 1, 1)))
    page = _page(live)
    store = _store_numbers(live, ack_overdue_hours=24)
    assert _number(page, "overdue-total") == len(store["overdue"]) == 2
    rows = page.xpath("//tr[@data-overdue]")
    assert all("past due date" in row.text_content() for row in rows)
    assert {row.get("data-overdue").split(":")[1] for row in rows} == {NGHE_AN, CAO_BANG}


def test_a_recall_shows_up_as_a_failed_delivery(live: Live) -> None:
    document_id = scripted_exchange(live)
    live.client(VPCP).service.updateStatus(documentId=document_id, statusCode="13", description="Gửi nhầm")
    page = _page(live)
    store = _store_numbers(live, ack_overdue_hours=0)
    assert _number(page, "failed-total") == len(store["failed"]) == 1
    [row] = page.xpath("//tr[@data-failed]")
    assert row.get("data-failed") == store["failed"][0].item_id
    assert CAO_BANG in row.text_content() and "withdrawn" in row.text_content()
    assert _number(page, "in-flight-copies") == store["copies"]
    assert _number(page, "overdue-total") == len(store["overdue"])


def test_long_lists_are_cut_and_say_how_much_is_left_off(live: Live) -> None:
    vpcp = live.client(VPCP)
    for number in ("1", "2", "3"):
        vpcp.service.sendDocument(document=letter(VPCP, [NGHE_AN, CAO_BANG, HAU_GIANG], number=number))
    limits = Limits(agencies_per_level=1, documents=2, recipients_per_document=1, overdue=2, failed=1, queues=1)
    dashboard = Dashboard(live.db, live.settings, limits=limits)
    status, _, body = _wsgi(dashboard, "/dashboard", _basic("operator", PASSWORD))
    assert status.startswith("200")
    page = lxml.html.fromstring(body.decode())
    more = [int(p.get("data-more")) for p in page.xpath("//p[@data-more]")]
    # In page order: level 1 lists 1 of 4 agencies; each of the 2 documents shown lists 1 of its 3
    # recipients; 2 of 3 documents are shown; 2 of 9 overdue copies (unacknowledged, 0 h); 1 of 3 queues.
    assert more == [3, 2, 2, 1, 7, 2]
    assert len(page.xpath("//tr[@data-document]")) == 2
    assert _number(page, "in-flight-documents") == 3 and _number(page, "in-flight-copies") == 9
    assert _number(page, "overdue-total") == 9 and _number(page, "queue-total") == 9


def test_names_from_the_directory_are_escaped(live: Live) -> None:
    with live.db.transaction() as session:
        session.add(
            Agency(
                code="000.01.05.H41",
                name='<script>alert("x")</script> & Trung tâm',
                level=3,
                parent_code=SO_TTTT,
                active=True,
                created_at=datetime.now(UTC),
            )
        )
    response = _get(live)
    assert "<script>" not in response.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Trung tâm" in response.text


def test_the_sandbox_agency_is_marked_wherever_it_appears(live: Live) -> None:
    """Certification traffic shows on the monitoring tables, its sandbox agency marked as a test agency."""
    assert live.settings.blob_dir is not None
    exchange = ExchangeService(live.db, BlobStore(live.settings.blob_dir), live.settings)
    Certifications(exchange, large_bytes=2000).start(NGHE_AN, "operator", timedelta(minutes=30))
    live.client(NGHE_AN).service.sendDocument(document=official_letter(NGHE_AN, [SANDBOX_CODE], number="31"))
    page = _page(live)

    cells = [td for td in page.xpath("//td[code]") if td.find("code").text == SANDBOX_CODE]
    assert {td.xpath("ancestor::section/@id")[0] for td in cells} == {"in-flight", "overdue", "queues"}
    assert all(td.xpath("span[@data-sandbox]") for td in cells), "every cell naming the sandbox marks it"
    marks = page.xpath("//span[@data-sandbox]")
    assert len(marks) == len(cells) and {m.get("data-sandbox") for m in marks} == {SANDBOX_CODE}
    assert {m.text_content() for m in marks} == {SANDBOX_MARK}
    assert page.xpath(f"//tr[@data-recipient='{SANDBOX_CODE}']//span[@data-sandbox]")
    assert page.xpath(f"//tr[@data-queue='{SANDBOX_CODE}']//span[@data-sandbox]")
    assert not page.xpath(f"//tr[@data-agency='{SANDBOX_CODE}']"), "never graded, never counted"
    graded = page.xpath("//section[@id='grades']//td[@data-grade]")
    assert sum(int(td.text_content()) for td in graded) == len(DIRECTORY)


# -- health ---------------------------------------------------------------------------------------


def test_health_checks_the_database_and_the_blob_store(live: Live) -> None:
    response = http_get(f"{live.base}/health")
    assert (response.status, response.body) == (200, b'{"status": "ok", "database": "ok", "blobs": "ok"}')
    tmp_dir = live.app.gateway.blobs.tmp_dir
    tmp_dir.rmdir()
    tmp_dir.write_bytes(b"")
    try:
        response = http_get(f"{live.base}/health")
        assert response.status == 503
        assert response.body == b'{"status": "fail", "database": "ok", "blobs": "NotADirectoryError"}'
    finally:
        tmp_dir.unlink()
        tmp_dir.mkdir()


def test_health_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    app = create_app(Settings(data_dir=tmp_path / "var", database_url=unreachable))
    try:
        status, _, body = _wsgi(app, "/health")
    finally:
        app.gateway.db.dispose()
    assert status.startswith("503")
    assert body == b'{"status": "fail", "database": "OperationalError", "blobs": "ok"}'


def test_thousands_of_agencies_keep_the_page_small_and_its_queries_few(tmp_path: Path, sqlite_url: str) -> None:
    """The page's cost is a fixed number of statements, however many agencies the directory holds."""
    settings = Settings(data_dir=tmp_path / "var", database_url=sqlite_url, operator_password=PASSWORD)

    def add_communes(live: Live, first: int, count: int) -> None:
        now = datetime.now(UTC)
        with live.db.transaction() as session:
            session.add_all(
                Agency(
                    code=f"{n:03d}.01.05.H41",
                    name=f"Ủy ban nhân dân xã số {n}",
                    level=3,
                    parent_code=SO_TTTT,
                    active=True,
                    created_at=now,
                )
                for n in range(first, first + count)
            )

    with serving(settings) as live:
        add_communes(live, 0, 3000)
        scripted_exchange(live)
        with counting(live.app.gateway.db.engine) as statements:
            response = _get(live)
        add_communes(live, 3000, 3000)
        with counting(live.app.gateway.db.engine) as twice_as_many:
            assert _get(live).status == 200
    assert response.status == 200
    assert statements and len(statements) == len(twice_as_many), (statements, twice_as_many)
    page = lxml.html.fromstring(response.text)
    assert len(page.xpath("//tr[@data-agency]")) == 5 + 200
    assert [int(p.get("data-more")) for p in page.xpath("//p[@data-more]")] == [2800]
    assert len(response.body) < 200_000
