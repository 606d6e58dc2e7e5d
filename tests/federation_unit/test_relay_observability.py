"""What an operator sees of the relay, on both backends: the /metrics relay gauges and the dashboard's
relay table per next hop, the audit chain's entry for everything that crosses a hop, and the delivery
report (code 90) that reaches the sender's history without ever entering the sender's queue.

Most tests look at one national instance (``hub``) whose outbox holds consignments for two next hops
in every state, built on the test clock, so the ages and counts are known exactly."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from support.clock import Clock
from support.federation import (
    B_DEPARTMENT,
    COMMUNE,
    MINISTRY,
    T0,
    FakeUpstream,
    add_agencies,
    caller,
    consignment_header,
    exchange_service,
)
from support.letters import official_letter
from support.queue_counts import pending_counts
from support.staging import stage

from gateway import metrics
from gateway.exchange.service import ExchangeService
from gateway.federation import outbox
from gateway.federation.relay import PeerFault, PeerUnreachable, Relay
from gateway.federation.reports import EMPTY_SHA256
from gateway.federation.service import FederationService
from gateway.metrics import MetricsMiddleware, StoreCollector
from gateway.store import audit
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry, Delivery, OutboxConsignment
from gateway.web.dashboard import Dashboard

SCRAPED_AT = T0 + timedelta(hours=1)
PASSWORD = "pw"


@dataclass
class Hub:
    """The national instance and the ids of its consignments (see :func:`hub`)."""

    federation: FederationService
    received: str
    failed: str
    report: str
    delivered: str
    withdrawn: str
    waiting_hb: str
    waiting_ha: str


def _outbox_id(database: Database, document_id: str, kind: str = "document") -> str:
    with database.transaction(readonly=True) as session:
        return session.scalars(
            select(OutboxConsignment.id).where(
                OutboxConsignment.document_id == document_id, OutboxConsignment.kind == kind
            )
        ).one()


@pytest.fixture
def hub(database: Database, tmp_path: Path, clock: Clock) -> Hub:
    """The national instance at ``SCRAPED_AT``: the commune lives at HA, B's department at HB, the ministry here.

    For HB: a document relayed from HA, leased three times and never acknowledged (failed at T0+15m);
    one the ministry sent at T0+20m, pulled and acknowledged (delivered); one sent at T0+25m and recalled
    before it left (withdrawn); one sent at T0+30m (waiting). For HA: the delivery report of the failure
    (created T0+15m, leased by HA: in flight) and a letter of the ministry (T0+40m, waiting).
    """
    add_agencies(database, {COMMUNE: "HA", B_DEPARTMENT: "HB", MINISTRY: None})
    exchange = exchange_service(database, tmp_path, clock, instance_id="national", operator_password=PASSWORD)
    federation = FederationService(exchange)
    ministry = caller(exchange, MINISTRY)

    edxml = official_letter(COMMUNE, [B_DEPARTMENT])
    header = consignment_header(edxml, path=("HA",), hop_count=1)
    relayed = federation.receive("HA", header, stage(exchange, edxml)).local_document_id
    assert relayed is not None
    failed = _outbox_id(database, relayed)
    for _ in range(3):
        assert [h.consignment_id for h in federation.pull("HB", 10)] == [failed], "HB never acknowledges"
        clock.now += timedelta(minutes=5)
    assert federation.pull("HB", 10) == [], "the fourth lease fails it instead"
    report = _outbox_id(database, relayed, kind="status")

    def send(number: str, to: str, at: timedelta) -> str:
        clock.now = T0 + at
        sent = exchange.send_document(ministry, stage(exchange, official_letter(MINISTRY, [to], number=number)))
        return _outbox_id(database, sent.document_id)

    delivered = send("1", B_DEPARTMENT, timedelta(minutes=20))
    assert [h.consignment_id for h in federation.pull("HB", 10)] == [delivered]
    assert federation.acknowledge("HB", delivered)
    withdrawn = send("2", B_DEPARTMENT, timedelta(minutes=25))
    with database.transaction(readonly=True) as session:
        recalled = session.get_one(OutboxConsignment, withdrawn).document_id
    assert recalled is not None
    exchange.update_status(ministry, recalled, "13", "gửi nhầm")
    waiting_hb = send("3", B_DEPARTMENT, timedelta(minutes=30))
    waiting_ha = send("4", COMMUNE, timedelta(minutes=40))
    assert [h.consignment_id for h in federation.pull("HA", 1)] == [report], "the oldest first"
    clock.now = SCRAPED_AT
    return Hub(federation, header.consignment_id, failed, report, delivered, withdrawn, waiting_hb, waiting_ha)


def _states(database: Database) -> dict[str, str]:
    with database.transaction(readonly=True) as session:
        return {row.id: row.state for row in session.execute(select(OutboxConsignment.id, OutboxConsignment.state))}


def test_the_hub_holds_what_its_story_says(hub: Hub, database: Database) -> None:
    assert _states(database) == {
        hub.failed: outbox.FAILED,
        hub.report: outbox.SENDING,
        hub.delivered: outbox.DELIVERED,
        hub.withdrawn: outbox.WITHDRAWN,
        hub.waiting_hb: outbox.WAITING,
        hub.waiting_ha: outbox.WAITING,
    }


# -- /metrics ------------------------------------------------------------------------------------


class _Frozen(datetime):
    """``datetime`` whose ``now`` is the scrape time of the test, for the store gauges' reading."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        return SCRAPED_AT.astimezone(tz)


def _scrape(database: Database) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``GET /metrics`` of a metrics middleware reading ``database``, parsed into samples."""
    store = StoreCollector(database, ack_overdue_hours=24)
    app = MetricsMiddleware(lambda environ, start_response: [], operations=(), store=store)
    seen: dict[str, str] = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "HTTP_HOST": "gw", "QUERY_STRING": ""}
    body = b"".join(app(environ, lambda status, headers: seen.update(status=status)))
    assert seen["status"].startswith("200")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _relay_samples(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, dict[str, float]]:
    """``{metric: {"label=value,...": value}}`` of the relay families only."""
    found: dict[str, dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name.startswith("gateway_relay_"):
            found.setdefault(name, {})[",".join(f"{k}={v}" for k, v in sorted(labels))] = value
    return found


def test_metrics_show_each_next_hop_and_the_consignment_totals(
    hub: Hub, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "datetime", _Frozen)
    samples = _scrape(database)
    assert samples[("gateway_store_up", frozenset())] == 1
    assert _relay_samples(samples) == {
        "gateway_relay_queue_depth": {"next_hop=HA": 2, "next_hop=HB": 1},
        "gateway_relay_oldest_waiting_seconds": {"next_hop=HA": 45 * 60, "next_hop=HB": 30 * 60},
        "gateway_relay_failed": {"next_hop=HA": 0, "next_hop=HB": 1},
        "gateway_relay_consignments_delivered_total": {"kind=document,next_hop=HB": 1},
        "gateway_relay_consignments_received_total": {"from_peer=HA,kind=document": 1},
    }, "HA: the report in flight (T0+15m) and a letter waiting; HB: one waiting since T0+30m; withdrawn counts nowhere"


def test_metrics_age_the_oldest_consignment_from_the_moment_of_the_scrape(
    hub: Hub, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Later(_Frozen):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Any:
            return (SCRAPED_AT + timedelta(minutes=10)).astimezone(tz)

    monkeypatch.setattr(metrics, "datetime", Later)
    oldest = _relay_samples(_scrape(database))["gateway_relay_oldest_waiting_seconds"]
    assert oldest == {"next_hop=HA": 55 * 60, "next_hop=HB": 40 * 60}


def test_a_requeued_consignment_counts_as_undelivered_again(
    hub: Hub, database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with database.transaction() as session:
        assert outbox.requeue(session, hub.failed, clock.now) is not None
    monkeypatch.setattr(metrics, "datetime", _Frozen)
    relay = _relay_samples(_scrape(database))
    assert relay["gateway_relay_queue_depth"]["next_hop=HB"] == 2
    assert relay["gateway_relay_failed"]["next_hop=HB"] == 0
    assert relay["gateway_relay_oldest_waiting_seconds"]["next_hop=HB"] == 60 * 60, "waiting since it was created"


# -- the dashboard -------------------------------------------------------------------------------


def _dashboard(hub: Hub, database: Database, clock: Clock) -> lxml.html.HtmlElement:
    login = "Basic " + base64.b64encode(f"operator:{PASSWORD}".encode()).decode()
    environ = {
        "REQUEST_METHOD": "GET",
        "HTTP_AUTHORIZATION": login,
        "HTTP_HOST": "gw",
        "PATH_INFO": "/dashboard",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(b""),
    }
    seen: dict[str, str] = {}
    body = b"".join(
        Dashboard(database, hub.federation.settings, clock=clock)(
            environ, lambda status, headers: seen.update(status=status)
        )
    )
    assert seen["status"].startswith("200"), body[:500]
    return lxml.html.fromstring(body.decode())


def test_the_dashboard_shows_depth_oldest_and_failures_per_next_hop(hub: Hub, database: Database, clock: Clock) -> None:
    page = _dashboard(hub, database, clock)
    table, _failed_table = page.get_element_by_id("relay").findall(".//table")
    headers = [th.text_content() for th in table.findall(".//th")]
    assert headers == ["Next hop", "Waiting", "In flight", "Failed", "Delivered", "Oldest waiting (s)"]
    rows = {
        tr.get("data-hop"): [td.text_content() for td in tr.findall("td")]
        for tr in table.findall(".//tr")
        if tr.get("data-hop")
    }
    assert rows == {
        "HA": ["HA", "1", "1", "0", "0", "2700"],
        "HB": ["HB", "1", "0", "1", "1", "1800"],
    }
    failed = page.get_element_by_id("relay").xpath(".//tr[@data-consignment]")
    assert [tr.get("data-consignment") for tr in failed] == [hub.failed]
    cells = [td.text_content() for td in failed[0].findall("td")]
    assert cells[1:4] == ["HB", "document", "3"]
    assert cells[5] == "leased 3 times by HB and never acknowledged"


def test_the_dashboard_ages_against_its_own_clock(hub: Hub, database: Database, clock: Clock) -> None:
    clock.now = SCRAPED_AT + timedelta(minutes=10)
    page = _dashboard(hub, database, clock)
    oldest = {tr.get("data-hop"): tr.findall("td")[-1].text_content() for tr in page.xpath("//tr[@data-hop]")}
    assert oldest == {"HA": "3300", "HB": "2400"}


# -- the audit chain -----------------------------------------------------------------------------


def _audited(database: Database) -> dict[str, list[str]]:
    """Consignment ids named in the detail of each relay action, in chain order."""
    with database.transaction(readonly=True) as session:
        rows = session.execute(select(AuditEntry.action, AuditEntry.detail).order_by(AuditEntry.id)).all()
    found: dict[str, list[str]] = {}
    for action, detail in rows:
        if action.startswith("relay_"):
            found.setdefault(action, []).append(json.loads(detail)["consignment"])
    return found


def test_the_audit_chain_records_every_crossing_of_a_hop_and_verifies(
    hub: Hub, database: Database, clock: Clock
) -> None:
    with database.transaction() as session:
        assert outbox.requeue(session, hub.failed, clock.now) is not None
    assert _audited(database) == {
        "relay_in": [hub.received],
        "relay_out": [hub.failed, hub.report, hub.delivered, hub.withdrawn, hub.waiting_hb, hub.waiting_ha],
        "relay_failed": [hub.failed],
        "relay_delivered": [hub.delivered],
        "relay_withdrawn": [hub.withdrawn],
        "relay_requeue": [hub.failed],
    }
    with database.transaction(readonly=True) as session:
        result = audit.verify(session)
        total = len(list(session.scalars(select(AuditEntry.id))))
    assert result == audit.VerifyResult(ok=True, checked=total)


def test_the_audit_of_a_relayed_document_names_its_origin_and_next_hop(hub: Hub, database: Database) -> None:
    with database.transaction(readonly=True) as session:
        entries = {
            e.action: json.loads(e.detail)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.action in ("relay_in", "relay_failed") or (e.action == "relay_out" and e.detail.find(hub.report) >= 0)
        }
    assert entries["relay_in"]["from"] == "HA" and entries["relay_in"]["kind"] == "document"
    assert entries["relay_failed"]["next_hop"] == "HB" and entries["relay_failed"]["attempts"] == 3
    assert (entries["relay_out"]["kind"], entries["relay_out"]["next_hop"]) == ("status", "HA")
    assert entries["relay_out"]["recipients"] == [COMMUNE], "the report goes back to the sender"


# -- delivery reports (90) -----------------------------------------------------------------------


def _sender_sees_the_report_and_nothing_is_queued(
    province: ExchangeService, database: Database, document_id: str, reporter: str, recipients: list[str]
) -> None:
    commune = caller(province, COMMUNE)
    reports = [e for e in province.history(commune, document_id) if e.status_code == "90"]
    assert sorted((e.recipient_code, e.reporter_code) for e in reports) == [(r, reporter) for r in sorted(recipients)]
    assert all(e.status_name.startswith("not delivered (relay failed after ") for e in reports)
    assert province.pending(commune) == [], "getPendingDocuments lists nothing for the report"
    with database.transaction(readonly=True) as session:
        commune_id = session.scalars(select(Agency.id).where(Agency.code == COMMUNE)).one()
        assert commune_id not in pending_counts(session)
        assert session.scalars(select(Delivery).where(Delivery.kind == "status")).all() == []


def test_a_relay_failure_at_the_senders_instance_is_reported_not_queued(
    province: ExchangeService, database: Database, clock: Clock
) -> None:
    sent = province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [MINISTRY])))
    upstream = FakeUpstream([PeerFault("Client.RelayLoop", "loop")])
    report = Relay(FederationService(province), client_factory=lambda: upstream, clock=clock).cycle()  # type: ignore[arg-type,return-value]
    with database.transaction(readonly=True) as session:
        (consignment,) = session.scalars(select(OutboxConsignment)).all()
    assert report.errors == [f"push {consignment.id}: Client.RelayLoop: loop"]
    assert (consignment.state, consignment.attempts) == (outbox.FAILED, 1), "a refusal no retry can change"
    _sender_sees_the_report_and_nothing_is_queued(province, database, sent.document_id, "gateway:HA", [MINISTRY])


def test_a_relay_failure_after_retries_is_reported_once_per_recipient_not_queued(
    province: ExchangeService, database: Database, clock: Clock
) -> None:
    letter = official_letter(COMMUNE, [MINISTRY, B_DEPARTMENT])
    sent = province.send_document(caller(province, COMMUNE), stage(province, letter))
    upstream = FakeUpstream([PeerUnreachable("down")] * 3)
    relay = Relay(FederationService(province), client_factory=lambda: upstream, clock=clock)  # type: ignore[arg-type,return-value]
    for wait in (0, 10, 20):
        clock.now += timedelta(seconds=wait)
        relay.cycle()
    assert len(upstream.pushed) == 3
    _sender_sees_the_report_and_nothing_is_queued(
        province, database, sent.document_id, "gateway:HA", [MINISTRY, B_DEPARTMENT]
    )


@pytest.fixture
def hub_database(tmp_path: Path) -> Iterator[Database]:
    """The national instance's own store (SQLite), apart from the province's ``database``."""
    db = Database(f"sqlite:///{tmp_path / 'hub' / 'db' / 'gateway.sqlite3'}")
    db.upgrade()
    try:
        yield db
    finally:
        db.dispose()


def test_a_relay_failure_at_the_hub_comes_back_as_a_report_not_queued(
    province: ExchangeService, database: Database, hub_database: Database, tmp_path: Path, clock: Clock
) -> None:
    sent = province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [B_DEPARTMENT])))
    with database.transaction(readonly=True) as session:
        pushed = outbox.header(session.scalars(select(OutboxConsignment)).one())
    edxml = province.blobs.path(pushed.payload_sha256).read_bytes()

    add_agencies(hub_database, {COMMUNE: "HA", B_DEPARTMENT: "HB"})
    hub = FederationService(exchange_service(hub_database, tmp_path / "hub", clock, instance_id="national"))
    hub.receive("HA", pushed, stage(hub.exchange, edxml))
    for _ in range(4):
        hub.pull("HB", 10)  # leased three times, never acknowledged; the fourth lease fails it
        clock.now += timedelta(minutes=5)
    back = hub.pull("HA", 10)
    assert [(h.kind, h.status_code, h.recipients) for h in back] == [("status", "90", (COMMUNE,))]
    assert back[0].payload_sha256 == EMPTY_SHA256

    FederationService(province).receive("national", back[0], stage(province, b""))
    assert hub.acknowledge("HA", back[0].consignment_id)
    _sender_sees_the_report_and_nothing_is_queued(
        province, database, sent.document_id, "gateway:national", [B_DEPARTMENT]
    )
    with hub_database.transaction(readonly=True) as session:
        assert session.scalars(select(Delivery).where(Delivery.kind == "status")).all() == []
