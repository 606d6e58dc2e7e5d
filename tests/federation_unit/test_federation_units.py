"""Units of the network of gateways, in one process on both backends: routing, loop refusal,
dedupe on the consignment id, outbox retry/backoff/failure with its delivery report, the relay's
push outcomes, and the singleton lock. The real multi-process network is tests/federation/."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.clock import Clock
from support.federation import (
    B_DEPARTMENT,
    COMMUNE,
    COMMUNE_2,
    MINISTRY,
    T0,
    FakeUpstream,
    caller,
    consignment_header,
    hub_with_a_consignment_never_acknowledged,
)
from support.letters import official_letter
from support.staging import stage

from gateway.config import Settings
from gateway.errors import RelayLoop
from gateway.exchange.service import ExchangeService
from gateway.federation import outbox, routing
from gateway.federation.relay import PeerFault, PeerUnreachable, Relay
from gateway.federation.service import FederationService
from gateway.store.database import Database
from gateway.store.locks import singleton
from gateway.store.models import Agency, Delivery, Document, InboundConsignment, OutboxConsignment


def test_next_hop_per_role(database: Database, tmp_path: Path) -> None:
    national = Settings(data_dir=tmp_path, database_url=str(database.url), instance_id="national")
    provincial = replace(national, instance_id="HA", role="provincial")
    with database.transaction(readonly=True) as session:
        assert routing.next_hop(session, national, None) is None
        assert routing.next_hop(session, national, "national") is None
        assert routing.next_hop(session, national, "HB") == "HB"
        assert routing.next_hop(session, provincial, "HA") is None
        assert routing.next_hop(session, provincial, "HB") == "national"
        assert routing.next_hop(session, provincial, "national") == "national"


def test_a_send_makes_one_consignment_per_next_hop_and_queues_local_recipients(
    province: ExchangeService, database: Database
) -> None:
    edxml = official_letter(COMMUNE, [B_DEPARTMENT, MINISTRY, COMMUNE_2])
    receipt = province.send_document(caller(province, COMMUNE), stage(province, edxml))
    assert sorted(receipt.recipients) == sorted([B_DEPARTMENT, MINISTRY, COMMUNE_2])
    with database.transaction(readonly=True) as session:
        rows = list(session.scalars(select(OutboxConsignment)))
        queued = session.scalar(select(func.count()).select_from(Delivery))
    assert len(rows) == 1, "one consignment for the one next hop, not one per remote recipient"
    (row,) = rows
    assert (row.next_hop, row.kind, row.hop_count) == ("national", "document", 1)
    assert outbox.header(row).recipients == (B_DEPARTMENT, MINISTRY)
    assert outbox.header(row).path == ("HA",)
    assert row.blob_sha256 == hashlib.sha256(edxml).hexdigest() and row.payload_size == len(edxml)
    assert queued == 1, "only the local commune gets a queue item"


def test_a_repeated_consignment_id_is_stored_once(province_b: FederationService, database: Database) -> None:
    edxml = official_letter(COMMUNE, [B_DEPARTMENT])
    header = consignment_header(edxml)
    first = province_b.receive("national", header, stage(province_b.exchange, edxml))
    again = province_b.receive("national", header, stage(province_b.exchange, edxml))
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.local_document_id == first.local_document_id
    with database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 1
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1
        assert session.scalar(select(func.count()).select_from(InboundConsignment)) == 1
        document = session.get_one(Document, first.local_document_id)
        assert (document.origin_instance, document.origin_document_id) == ("HA", header.origin_document_id)


@pytest.mark.parametrize(
    ("path", "hops"), [(("HA", "HB", "national"), 3), (("HA", "national"), 5)], ids=["own-id-in-path", "too-many-hops"]
)
def test_loops_are_refused(province_b: FederationService, database: Database, path: tuple[str, ...], hops: int) -> None:
    edxml = official_letter(COMMUNE, [B_DEPARTMENT])
    with pytest.raises(RelayLoop):
        province_b.receive(
            "national", consignment_header(edxml, path=path, hop_count=hops), stage(province_b.exchange, edxml)
        )
    with database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_a_damaged_payload_is_refused(province_b: FederationService, database: Database) -> None:
    edxml = official_letter(COMMUNE, [B_DEPARTMENT])
    with pytest.raises(Exception, match="sha256"):
        province_b.receive(
            "national", consignment_header(edxml, payload_sha256="0" * 64), stage(province_b.exchange, edxml)
        )
    with database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(InboundConsignment)) == 0


def _push_relay(province: ExchangeService, upstream: FakeUpstream, clock: Clock) -> Relay:
    relay = Relay(FederationService(province), client_factory=lambda: upstream, clock=clock)  # type: ignore[arg-type,return-value]
    return relay


def _push_once(relay: Relay) -> None:
    from gateway.federation.relay import CycleReport

    relay._push(CycleReport(), "national")


def test_push_retries_with_backoff_then_fails_with_a_delivery_report(
    province: ExchangeService, database: Database, clock: Clock
) -> None:
    receipt = province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [MINISTRY])))
    upstream = FakeUpstream([PeerUnreachable("down"), PeerUnreachable("down"), PeerUnreachable("still down")])
    relay = _push_relay(province, upstream, clock)
    _push_once(relay)
    with database.transaction(readonly=True) as session:
        row = session.scalars(select(OutboxConsignment)).one()
        assert (row.state, row.attempts, row.next_attempt_at) == ("waiting", 1, T0 + timedelta(seconds=10))
    _push_once(relay)
    assert len(upstream.pushed) == 1, "not due yet: no second attempt before the backoff"
    clock.now = T0 + timedelta(seconds=10)
    _push_once(relay)
    with database.transaction(readonly=True) as session:
        row = session.scalars(select(OutboxConsignment)).one()
        assert (row.state, row.attempts, row.next_attempt_at) == ("waiting", 2, clock.now + timedelta(seconds=20))
    clock.now += timedelta(seconds=20)
    _push_once(relay)
    assert len(set(upstream.pushed)) == 1 and len(upstream.pushed) == 3, "the same consignment id every time"
    with database.transaction(readonly=True) as session:
        row = session.scalars(select(OutboxConsignment)).one()
        assert row.state == "failed" and "still down" in (row.last_error or "")
    history = province.history(caller(province, COMMUNE), receipt.document_id)
    (report,) = [e for e in history if e.status_code == "90"]
    assert report.recipient_code == MINISTRY
    assert report.reporter_code == "gateway:HA"
    assert report.status_name.startswith("not delivered (relay failed after 3 attempts): ")

    with database.transaction() as session:
        assert outbox.requeue(session, row.id, clock.now) is not None
    upstream.answers.append(True)
    _push_once(relay)
    with database.transaction(readonly=True) as session:
        row = session.scalars(select(OutboxConsignment)).one()
        assert (row.state, row.attempts) == ("delivered", 1), "a requeue resets the attempts"


def test_a_refusal_no_retry_can_change_fails_at_once(
    province: ExchangeService, database: Database, clock: Clock
) -> None:
    province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [MINISTRY])))
    upstream = FakeUpstream([PeerFault("Client.RelayLoop", "loop")])
    _push_once(_push_relay(province, upstream, clock))
    with database.transaction(readonly=True) as session:
        row = session.scalars(select(OutboxConsignment)).one()
        assert (row.state, row.attempts) == ("failed", 1)


def test_a_push_interrupted_by_a_crash_is_retried_with_the_same_id(
    province: ExchangeService, database: Database, clock: Clock
) -> None:
    province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [MINISTRY])))
    with database.transaction() as session:
        row = session.scalars(select(OutboxConsignment)).one()
        outbox.start_push(row, clock.now, 240)  # the relay that did this was SIGKILLed
        consignment_id = row.id
    upstream = FakeUpstream([True])
    relay = _push_relay(province, upstream, clock)
    with database.transaction() as session:
        assert outbox.recover_pushes(session, "national") == 1
    _push_once(relay)
    assert upstream.pushed == [consignment_id]
    with database.transaction(readonly=True) as session:
        assert session.get_one(OutboxConsignment, consignment_id).state == "delivered"


def test_singleton_admits_one_holder(database: Database, tmp_path: Path) -> None:
    with singleton(database, "relay", tmp_path) as first:
        assert first is True
        with singleton(database, "relay", tmp_path) as second:
            assert second is False
        with singleton(database, "other-job", tmp_path) as other:
            assert other is True
    with singleton(database, "relay", tmp_path) as again:
        assert again is True, "released when the holder left"


def test_a_consignment_failing_at_the_hub_is_reported_back_towards_the_sender(
    database: Database, tmp_path: Path, clock: Clock
) -> None:
    hub = hub_with_a_consignment_never_acknowledged(database, tmp_path, clock)
    assert hub.pull("HB", 10) == [], "after the last lease the consignment fails instead"
    with database.transaction(readonly=True) as session:
        rows = {r.kind: r for r in session.scalars(select(OutboxConsignment))}
        assert rows["document"].state == "failed"
        report = outbox.header(rows["status"])
    assert rows["status"].next_hop == "HA"
    assert (report.status_code, report.recipient_code, report.recipients) == ("90", B_DEPARTMENT, (COMMUNE,))
    assert report.staff_department == "gateway:national" and report.payload_size == 0
    assert report.description is not None and "relay failed after 3 attempts" in report.description


def test_directory_versions_register_and_incremental_pages(database: Database, tmp_path: Path) -> None:
    from gateway import directory
    from gateway.federation import directory_sync
    from gateway.federation.model import DirectoryEntry

    settings = Settings(data_dir=tmp_path, database_url=str(database.url), instance_id="national")
    with database.transaction() as session:
        directory.add_agency(session, MINISTRY, "Bộ Nội vụ", 1, T0)
        directory.issue_credential(session, MINISTRY, T0)
    with database.transaction(readonly=True) as session:
        version, entries = directory_sync.page(session, settings, 0)
    assert [(e.code, e.home_instance) for e in entries] == [(MINISTRY, "national")]

    claims = [
        DirectoryEntry(COMMUNE, "UBND xã", 3, None, True, "HA"),
        DirectoryEntry(MINISTRY, "Bộ giả mạo", 1, None, True, "HA"),  # served here, with a live credential
    ]
    with database.transaction() as session:
        assert directory_sync.register(session, settings, "HA", claims, T0) == 1
    with database.transaction(readonly=True) as session:
        after, entries = directory_sync.page(session, settings, version)
        ministry = session.scalars(select(Agency).where(Agency.code == MINISTRY)).one()
    assert [(e.code, e.home_instance) for e in entries] == [(COMMUNE, "HA")], "only what changed since"
    assert (ministry.name, ministry.home_instance) == ("Bộ Nội vụ", None), "a province cannot take over"
    with database.transaction() as session:
        directory.disable_agency(session, MINISTRY, T0)
    with database.transaction(readonly=True) as session:
        last, entries = directory_sync.page(session, settings, after)
        assert directory_sync.page(session, settings, last)[1] == []
    assert [(e.code, e.active) for e in entries] == [(MINISTRY, False)] and last > after > version


def test_a_relayed_recall_document_takes_back_the_unfetched_copy_and_answers_15_upstream(
    province_b: FederationService, database: Database
) -> None:
    from gateway.edxml import Business

    original = official_letter(COMMUNE, [B_DEPARTMENT], number="11")
    first = province_b.receive("national", consignment_header(original), stage(province_b.exchange, original))
    original_id = f"{COMMUNE},2026/11/20,11/VPCP-TTĐT"
    recall = official_letter(
        COMMUNE, [B_DEPARTMENT], number="12", business=Business(doc_type=1, document_id=original_id)
    )
    second = province_b.receive("national", consignment_header(recall), stage(province_b.exchange, recall))
    with database.transaction(readonly=True) as session:
        states = dict(
            session.execute(select(Delivery.document_id, Delivery.state).where(Delivery.kind == "document")).all()
        )
        back = session.scalars(select(OutboxConsignment).where(OutboxConsignment.kind == "status")).one()
        superseded = session.get_one(Document, second.local_document_id).supersedes_id
    assert states == {first.local_document_id: "withdrawn", second.local_document_id: "pending"}
    assert superseded == first.local_document_id
    header = outbox.header(back)
    assert (back.next_hop, header.status_code, header.recipient_code) == ("national", "15", B_DEPARTMENT)
    assert header.origin_instance == "HA", "the answer names the original by its origin, for the sender's instance"


def test_the_operator_requeues_a_failed_consignment_from_the_dashboard(
    province: ExchangeService, database: Database, clock: Clock
) -> None:
    import base64
    import io

    from gateway.store.models import AuditEntry
    from gateway.web.dashboard import Dashboard, RelayRequeue, requeue_token

    province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [MINISTRY])))
    relay = _push_relay(province, FakeUpstream([PeerUnreachable("down")] * 3), clock)
    for wait in (0, 10, 20):
        clock.now += timedelta(seconds=wait)
        _push_once(relay)
    with database.transaction(readonly=True) as session:
        failed = session.scalars(select(OutboxConsignment)).one()
    assert failed.state == "failed"
    settings = replace(province.settings, operator_password="pw")
    login = "Basic " + base64.b64encode(b"operator:pw").decode()

    def call(app: object, method: str, body: bytes = b"") -> tuple[str, bytes]:
        seen: dict[str, str] = {}
        environ = {
            "REQUEST_METHOD": method,
            "HTTP_AUTHORIZATION": login,
            "HTTP_HOST": "gw",
            "PATH_INFO": "/",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "QUERY_STRING": "",
        }
        answer = b"".join(app(environ, lambda status, headers: seen.update(status=status)))  # type: ignore[operator]
        return seen["status"], answer

    status, page = call(Dashboard(database, settings, clock=clock), "GET")
    assert status.startswith("200") and b'action="/relay-requeue"' in page and failed.id.encode() in page
    requeue = RelayRequeue(database, settings, clock=clock)
    forged = f"consignment={failed.id}&token=guess".encode()
    assert call(requeue, "POST", forged)[0].startswith("403")
    form = f"consignment={failed.id}&token={requeue_token('pw')}".encode()
    assert call(requeue, "POST", form)[0].startswith("303")
    with database.transaction(readonly=True) as session:
        row = session.get_one(OutboxConsignment, failed.id)
        actors = list(session.scalars(select(AuditEntry.actor).where(AuditEntry.action == "relay_requeue")))
    assert (row.state, row.attempts) == ("waiting", 0) and actors == ["operator (dashboard)"]
