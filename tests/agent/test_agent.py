"""The reference agent against a real gateway: one pass at a time, in this process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.letters import official_letter
from support.live import NGHE_AN, VPCP, LiveGateway, live_gateway_for, secret_of

from gateway.agent import SENDING, Agent, Folders, queue_report
from gateway.client import AgencyClient, Unreachable
from gateway.config import Settings


@pytest.fixture
def gateway(tmp_path: Path, db_url: str) -> Iterator[LiveGateway]:
    settings = Settings(data_dir=tmp_path / "var", database_url=db_url, lease_seconds=1)
    with live_gateway_for(settings) as live:
        yield live


def _client(gateway: LiveGateway, code: str) -> AgencyClient:
    return AgencyClient(gateway.url, code, secret_of(code))


@pytest.fixture
def agent(gateway: LiveGateway, tmp_path: Path) -> Agent:
    return Agent(_client(gateway, NGHE_AN), Folders(tmp_path / "agent"), interval=0.1)


def test_received_documents_are_saved_then_acknowledged(gateway: LiveGateway, agent: Agent) -> None:
    vpcp = _client(gateway, VPCP)
    letters = [official_letter(VPCP, [NGHE_AN], number=str(n)) for n in (1, 2)]
    receipts = [vpcp.send(letter) for letter in letters]

    assert agent.cycle().received == 2

    for receipt, letter in zip(receipts, letters, strict=True):
        saved = agent.folders.inbox / f"{receipt.documentId}.edxml"
        assert saved.read_bytes() == letter
        assert json.loads(saved.with_suffix(".json").read_text(encoding="utf-8"))["senderCode"] == VPCP
    assert not [p for p in agent.folders.inbox.iterdir() if p.name.startswith(".")]
    assert agent.client.pending() == []


def test_a_saved_item_that_comes_back_is_acknowledged_without_a_second_file(gateway: LiveGateway, agent: Agent) -> None:
    receipt = _client(gateway, VPCP).send(official_letter(VPCP, [NGHE_AN]))
    [item] = agent.client.pending()
    fetched = agent.client.fetch(item.itemId)
    (agent.folders.inbox / f"{receipt.documentId}.edxml").write_bytes(fetched.edxml)
    time.sleep(1.2)  # the agent "crashed" before acknowledging: the lease runs out

    assert agent.cycle().received == 1

    assert sorted(p.name for p in agent.folders.inbox.glob("*.edxml")) == [f"{receipt.documentId}.edxml"]
    assert agent.client.pending() == []


def test_outbox_files_are_sent_or_set_aside_with_the_fault(gateway: LiveGateway, agent: Agent) -> None:
    good = official_letter(NGHE_AN, [VPCP], number="11")
    (agent.folders.outbox / "good.edxml").write_bytes(good)
    (agent.folders.outbox / "forged.edxml").write_bytes(official_letter(VPCP, [NGHE_AN], number="12"))
    (agent.folders.outbox / ".half-written.edxml").write_bytes(b"<edXML")

    assert agent.cycle().sent == 1

    receipt = json.loads((agent.folders.sent / "good.edxml.receipt.json").read_text(encoding="utf-8"))
    assert receipt["recipients"] == [VPCP] and receipt["duplicate"] is False
    assert (agent.folders.sent / "good.edxml").read_bytes() == good
    assert (agent.folders.failed / "forged.edxml.fault.txt").read_text().startswith("Client.SenderMismatch")
    assert [p.name for p in agent.folders.outbox.iterdir()] == [".half-written.edxml"]
    [item] = _client(gateway, VPCP).pending()
    assert item.documentId == receipt["documentId"]


def test_a_file_sent_before_a_crash_is_not_delivered_twice(gateway: LiveGateway, agent: Agent) -> None:
    letter = official_letter(NGHE_AN, [VPCP], number="21")
    first = agent.client.send(letter)  # the agent died before moving the file to sent/
    (agent.folders.outbox / "letter.edxml").write_bytes(letter)

    agent.cycle()

    receipt = json.loads((agent.folders.sent / "letter.edxml.receipt.json").read_text(encoding="utf-8"))
    assert receipt == {**receipt, "documentId": first.documentId, "duplicate": True}
    assert len(_client(gateway, VPCP).pending()) == 1


def test_status_reports_are_made_and_refusals_set_aside(gateway: LiveGateway, agent: Agent) -> None:
    receipt = _client(gateway, VPCP).send(official_letter(VPCP, [NGHE_AN]))
    agent.cycle()
    queue_report(agent.folders, receipt.documentId, "03", "Đã vào sổ", staff="Nguyễn Văn A", department="Văn thư")
    queue_report(agent.folders, receipt.documentId, "06")
    queue_report(agent.folders, receipt.documentId, "04")

    assert agent.cycle().reported == 2

    history = _client(gateway, VPCP).history(receipt.documentId)
    assert [(e.statusCode, e.reportedBy) for e in history] == [("01", NGHE_AN), ("03", NGHE_AN), ("06", NGHE_AN)]
    assert history[1].staffName == "Nguyễn Văn A"
    [refused] = agent.folders.report_failed.glob("*.fault.txt")
    assert refused.read_text().startswith("Client.IllegalTransition")
    assert len(list(agent.folders.reported.iterdir())) == 2


def test_an_interrupted_report_is_not_made_twice(gateway: LiveGateway, agent: Agent) -> None:
    receipt = _client(gateway, VPCP).send(official_letter(VPCP, [NGHE_AN]))
    agent.cycle()
    marker = queue_report(agent.folders, receipt.documentId, "05", "Đang xử lý")
    marker.rename(marker.with_name(marker.name + SENDING))
    agent.client.report(receipt.documentId, "05", "Đang xử lý")  # reached the gateway, then the agent died

    agent.cycle()

    codes = [e.statusCode for e in _client(gateway, VPCP).history(receipt.documentId)]
    assert codes == ["01", "05"]
    assert [p.name for p in agent.folders.reported.iterdir()] == [marker.name + SENDING]


def test_an_interrupted_report_the_gateway_never_got_is_made(gateway: LiveGateway, agent: Agent) -> None:
    receipt = _client(gateway, VPCP).send(official_letter(VPCP, [NGHE_AN]))
    agent.cycle()
    marker = queue_report(agent.folders, receipt.documentId, "03")
    marker.rename(marker.with_name(marker.name + SENDING))

    agent.cycle()

    assert [e.statusCode for e in _client(gateway, VPCP).history(receipt.documentId)] == ["01", "03"]


def test_a_gateway_that_is_down_is_reported_as_unreachable(tmp_path: Path) -> None:
    agent = Agent(AgencyClient("http://127.0.0.1:9/soap", NGHE_AN, "x", timeout=2), Folders(tmp_path / "a"))
    with pytest.raises(Unreachable):
        agent.cycle()
