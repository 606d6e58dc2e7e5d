"""The relay loop of one instance against a stand-in upstream, on both backends: a run that fails is
logged and retried, directory pages and push/pull batches are followed to the end, a pull that
names agencies unknown here waits for the directory, and the national sweep fails abandoned leases.
Also the SOAP client's mapping of the peer's answers to PeerFault / PeerUnreachable."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import zeep
from sqlalchemy import select
from support.clock import Clock
from support.federation import (
    B_DEPARTMENT,
    COMMUNE,
    MINISTRY,
    FakeUpstream,
    caller,
    consignment_header,
    hub_with_a_consignment_never_acknowledged,
)
from support.letters import official_letter
from support.staging import stage

from gateway.exchange.service import ExchangeService
from gateway.federation import directory_sync, outbox, relay
from gateway.federation.model import DirectoryEntry
from gateway.federation.relay import PeerFault, PeerUnreachable, Relay, RelayClient
from gateway.federation.service import FederationService
from gateway.store.database import Database
from gateway.store.models import Agency, Document, OutboxConsignment


class StopOnWait(threading.Event):
    """A stop event that records each wait and ends the loop there (no test waits for real time)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.set()
        return True


def _relay(federation: FederationService, upstream: FakeUpstream, clock: Clock) -> Relay:
    return Relay(federation, client_factory=lambda: upstream, clock=clock)  # type: ignore[arg-type,return-value]


def test_a_failing_cycle_is_logged_and_retried_with_a_fresh_client(
    province_b: FederationService, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenUpstream(FakeUpstream):
        def directory(self, since: int) -> tuple[int, list[DirectoryEntry]]:
            raise RuntimeError("database went away")

    made: list[FakeUpstream] = []

    def factory() -> FakeUpstream:
        made.append(BrokenUpstream())
        return made[-1]

    looping = Relay(province_b, client_factory=factory, clock=clock)  # type: ignore[arg-type]
    stop = StopOnWait()
    with caplog.at_level(logging.ERROR, logger="gateway.relay"):
        looping.run(stop)
    assert "relay cycle failed" in caplog.text
    assert stop.waits == [max(province_b.settings.relay_interval, 1.0)]
    assert looping._client is None, "the next cycle builds a new client"
    with pytest.raises(RuntimeError, match="database went away"):
        looping.run(threading.Event(), once=True)
    assert len(made) == 2


def test_one_run_pulls_stores_and_acknowledges_and_a_lost_acknowledgement_is_only_repeated(
    province_b: FederationService, database: Database, clock: Clock
) -> None:
    edxml = official_letter(COMMUNE, [B_DEPARTMENT])
    header = consignment_header(edxml)
    upstream = FakeUpstream()
    upstream.waiting[header.consignment_id] = (header, edxml)
    once = _relay(province_b, upstream, clock)
    once.run(threading.Event(), once=True)
    assert upstream.acknowledged == [header.consignment_id]

    upstream.waiting[header.consignment_id] = (header, edxml)  # our acknowledgement's answer was lost
    report = once.cycle()
    assert report.pulled == 1 and report.errors == []
    assert upstream.fetched == [header.consignment_id], "stored already: acknowledged without a second fetch"
    with database.transaction(readonly=True) as session:
        assert len(list(session.scalars(select(Document)))) == 1


@pytest.mark.parametrize("listed", [True, False], ids=["after-sync", "never"])
def test_a_pulled_consignment_for_an_unknown_sender_waits_for_the_directory(
    province_b: FederationService, database: Database, clock: Clock, listed: bool
) -> None:
    edxml = official_letter(MINISTRY, [B_DEPARTMENT])
    header = consignment_header(edxml, sender_code=MINISTRY)
    upstream = FakeUpstream()
    upstream.waiting[header.consignment_id] = (header, edxml)
    upstream.pages = [(0, [])]
    if listed:
        upstream.pages.append((7, [DirectoryEntry(MINISTRY, "Bộ Nội vụ", 1, None, True, "national")]))
    report = _relay(province_b, upstream, clock).cycle()
    with database.transaction(readonly=True) as session:
        stored = len(list(session.scalars(select(Document))))
    if listed:
        assert (report.pulled, report.errors, stored) == (1, [], 1)
        assert upstream.acknowledged == [header.consignment_id]
    else:
        assert (report.pulled, stored, upstream.acknowledged) == (0, 0, [])
        assert report.errors == [
            f"pull {header.consignment_id}: The sender {MINISTRY} is not in this instance's "
            "directory yet; it will be after the next directory sync. Send the consignment again later."
        ]


def test_directory_pages_are_followed_until_a_short_page(
    province_b: FederationService, database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_sync, "PAGE_SIZE", 1)
    upstream = FakeUpstream()
    upstream.pages = [
        (1, [DirectoryEntry("X1", "Một", 1, None, True, "national")]),
        (2, [DirectoryEntry("X2", "Hai", 1, None, True, "HA")]),
        (2, []),
    ]
    report = _relay(province_b, upstream, clock).cycle()
    assert upstream.asked_since == [0, 1, 2] and report.directory_changes == 2
    with database.transaction(readonly=True) as session:
        assert directory_sync.read_counter(session, directory_sync.PULLED_VERSION) == 2
        homes = dict(
            session.execute(select(Agency.code, Agency.home_instance).where(Agency.code.in_(["X1", "X2"]))).all()
        )
    assert homes == {"X1": "national", "X2": "HA"}


def test_pushes_and_pulls_go_on_while_batches_are_full(
    province: ExchangeService, database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "BATCH", 1)
    for number in ("1", "2"):
        letter = official_letter(COMMUNE, [MINISTRY], number=number)
        province.send_document(caller(province, COMMUNE), stage(province, letter))
    upstream = FakeUpstream([True, False])
    for number in ("3", "4"):
        edxml = official_letter(MINISTRY, [COMMUNE], number=number)
        header = consignment_header(edxml, sender_code=MINISTRY, recipients=(COMMUNE,), path=("national",))
        upstream.waiting[header.consignment_id] = (header, edxml)
    report = _relay(FederationService(province), upstream, clock).cycle()
    assert (report.pushed, report.pulled, report.errors) == (2, 2, [])
    assert upstream.waiting == {}
    with database.transaction(readonly=True) as session:
        states = list(session.scalars(select(OutboxConsignment.state)))
    assert states == [outbox.DELIVERED, outbox.DELIVERED]


def test_the_first_cycle_puts_interrupted_pushes_back_in_line(
    province: ExchangeService, database: Database, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    province.send_document(caller(province, COMMUNE), stage(province, official_letter(COMMUNE, [MINISTRY])))
    with database.transaction() as session:
        outbox.start_push(session.scalars(select(OutboxConsignment)).one(), clock.now, 240)
    upstream = FakeUpstream([True])
    with caplog.at_level(logging.INFO, logger="gateway.relay"):
        report = _relay(FederationService(province), upstream, clock).cycle()
    assert "1 interrupted pushes back in line" in caplog.text
    assert report.pushed == 1 and len(upstream.pushed) == 1


def test_the_national_sweep_fails_a_consignment_leased_too_often(
    database: Database, tmp_path: Any, clock: Clock
) -> None:
    sweeper = Relay(hub_with_a_consignment_never_acknowledged(database, tmp_path, clock), clock=clock)
    assert sweeper.cycle().errors == []
    with database.transaction(readonly=True) as session:
        row = session.scalars(select(OutboxConsignment).where(OutboxConsignment.kind == "document")).one()
    assert (row.state, row.last_error) == (outbox.FAILED, "leased 3 times by HB and never acknowledged")


class _Service:
    """A zeep service proxy whose every operation raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def operation(**_: Any) -> Any:
            raise self.error

        return operation


@pytest.mark.parametrize(
    ("error", "expected", "text"),
    [
        (zeep.exceptions.Fault("loop", code="soap11env:Client.RelayLoop"), PeerFault, "Client.RelayLoop: loop"),
        (zeep.exceptions.XMLParseError("not XML"), PeerUnreachable, "unexpected answer: not XML"),
        (ConnectionRefusedError("refused"), PeerUnreachable, "http://127.0.0.1:9/relay: refused"),
    ],
    ids=["fault", "garbage", "refused"],
)
def test_the_client_maps_the_peers_answers(error: Exception, expected: type[Exception], text: str) -> None:
    client = RelayClient("http://127.0.0.1:9/", "HA", "secret")
    client.service = _Service(error)
    with pytest.raises(expected) as caught:
        client.acknowledge("00000000-0000-0000-0000-000000000000")
    assert text in str(caught.value)
    if isinstance(caught.value, PeerFault):
        assert (caught.value.code, caught.value.message) == ("Client.RelayLoop", "loop")
