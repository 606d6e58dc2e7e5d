"""The reference agent against a real gateway: one pass at a time, in this process."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from support.letters import official_letter
from support.live import NGHE_AN, VPCP, LiveGateway, secret_of
from support.stopping import StopAfterWaits

from gateway.agent import SENDING, Agent, CycleResult, Folders, queue_report, run_agent
from gateway.client import AgencyClient, Fetched, Unreachable


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


def test_status_messages_about_sent_documents_are_saved_apart(gateway: LiveGateway, tmp_path: Path) -> None:
    sender = Agent(_client(gateway, VPCP), Folders(tmp_path / "vpcp"))
    receipt = sender.client.send(official_letter(VPCP, [NGHE_AN]))
    recipient = _client(gateway, NGHE_AN)
    [item] = recipient.pending()
    recipient.fetch(item.itemId)
    recipient.acknowledge(item.itemId)
    recipient.report(receipt.documentId, "03", "Đã vào sổ")

    assert sender.cycle().received == 2

    described = {}
    for saved in sender.folders.status_messages.glob("*.edxml"):
        about = json.loads(saved.with_suffix(".json").read_text(encoding="utf-8"))
        assert saved.stem == about["itemId"] and saved.read_bytes().startswith(b"<?xml")
        described[about["statusCode"]] = (about["kind"], about["documentId"])
    assert described == {"01": ("status", receipt.documentId), "03": ("status", receipt.documentId)}
    assert list(sender.folders.inbox.iterdir()) == []


def test_run_rests_for_the_interval_when_there_is_nothing_to_do(agent: Agent) -> None:
    stop = StopAfterWaits(waits=1)
    agent.run(stop)
    assert stop.timeouts == [0.1]


def test_a_file_named_like_one_already_sent_is_kept_beside_it(gateway: LiveGateway, agent: Agent) -> None:
    first, second = (official_letter(NGHE_AN, [VPCP], number=n) for n in ("41", "42"))
    (agent.folders.outbox / "letter.edxml").write_bytes(first)
    assert agent.cycle().sent == 1
    (agent.folders.outbox / "letter.edxml").write_bytes(second)

    assert agent.cycle().sent == 1

    assert (agent.folders.sent / "letter.edxml").read_bytes() == first
    [renamed] = [p for p in agent.folders.sent.glob("letter-*.edxml")]
    assert renamed.read_bytes() == second
    receipt = json.loads(renamed.with_name(renamed.name + ".receipt.json").read_text(encoding="utf-8"))
    assert receipt["duplicate"] is False and len(_client(gateway, VPCP).pending()) == 2


def test_an_item_withdrawn_before_it_is_fetched_is_skipped(
    gateway: LiveGateway, agent: Agent, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    vpcp = _client(gateway, VPCP)
    receipt = vpcp.send(official_letter(VPCP, [NGHE_AN]))
    fetch = agent.client.fetch

    def fetch_after_recall(item_id: str) -> Fetched:
        vpcp.report(receipt.documentId, "13", "Gửi nhầm đơn vị")
        return fetch(item_id)

    monkeypatch.setattr(agent.client, "fetch", fetch_after_recall)
    with caplog.at_level(logging.WARNING, logger="gateway.agent"):
        assert agent.receive() == 0

    assert list(agent.folders.inbox.iterdir()) == []
    assert "not fetched: Client.NotFound" in caplog.text and "withdrawn by its sender" in caplog.text


def test_unreadable_reports_are_set_aside_and_other_files_left_alone(tmp_path: Path) -> None:
    folders = Folders(tmp_path / "agent")
    agent = Agent(AgencyClient("http://127.0.0.1:9/soap", NGHE_AN, "x"), folders)
    (folders.report / "broken.json").write_text("{not json", encoding="utf-8")
    (folders.report / "no-code.json").write_text(json.dumps({"documentId": "d-1"}), encoding="utf-8")
    (folders.report / ".being-written.json").write_text("{", encoding="utf-8")
    (folders.report / "notes.txt").write_text("not a report", encoding="utf-8")

    assert agent.report_statuses() == 0

    assert sorted(p.name for p in folders.report.iterdir()) == [".being-written.json", "notes.txt"]
    broken = (folders.report_failed / "broken.json.fault.txt").read_text(encoding="utf-8")
    assert broken.startswith("unreadable report: Expecting property name")
    assert (folders.report_failed / "no-code.json.fault.txt").read_text(encoding="utf-8") == (
        "unreadable report: 'statusCode'\n"
    )


def test_an_interrupted_report_whose_history_cannot_be_read_is_made_again(gateway: LiveGateway, agent: Agent) -> None:
    marker = queue_report(agent.folders, "000.00.00.G22,2026/11/20,1/NO-SUCH", "03")
    marker.rename(marker.with_name(marker.name + SENDING))

    assert agent.report_statuses() == 0

    [refused] = agent.folders.report_failed.glob("*.fault.txt")
    assert refused.name == marker.name + SENDING + ".fault.txt"
    assert refused.read_text(encoding="utf-8").startswith("Client.NotFound")


class FlakyClient(AgencyClient):
    """The agency's client while the gateway restarts: unreachable for the first ``failures`` passes."""

    def __init__(self, gateway: LiveGateway, failures: int) -> None:
        super().__init__(gateway.url, NGHE_AN, secret_of(NGHE_AN))
        self.failures = failures

    def pending(self, max_items: int | None = None) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise Unreachable("the gateway is restarting")
        return super().pending(max_items)


def test_run_waits_longer_while_the_gateway_is_unreachable_then_works_again(
    gateway: LiveGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receipt = _client(gateway, VPCP).send(official_letter(VPCP, [NGHE_AN]))
    agent = Agent(FlakyClient(gateway, failures=4), Folders(tmp_path / "agent"), interval=100)
    stop = StopAfterWaits(waits=10)
    cycles: list[CycleResult] = []

    def after_cycle(result: CycleResult) -> None:
        cycles.append(result)
        stop.set()

    with caplog.at_level(logging.WARNING, logger="gateway.agent"):
        agent.run(stop, on_cycle=after_cycle)

    assert stop.timeouts == [100, 200, 300, 300], "doubling from the interval, at most 300 s"
    assert "gateway unreachable, retrying in 100 s: the gateway is restarting" in caplog.text
    assert [c.received for c in cycles] == [1]
    assert (agent.folders.inbox / f"{receipt.documentId}.edxml").is_file()


def test_run_agent_retries_after_a_refusal(
    gateway: LiveGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = StopAfterWaits(waits=1)
    with caplog.at_level(logging.ERROR, logger="gateway.agent"):
        run_agent(AgencyClient(gateway.url, NGHE_AN, "not-the-secret"), Folders(tmp_path / "agent"), 7, stop)
    assert stop.timeouts == [7]
    assert "agent error, retrying in 7 s: error Client.AuthenticationFailed" in caplog.text


def test_run_agent_retries_when_its_folders_cannot_be_used(
    gateway: LiveGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folders = Folders(tmp_path / "agent")
    (folders.outbox / "not-a-file.edxml").mkdir(parents=True)
    stop = StopAfterWaits(waits=1)
    with caplog.at_level(logging.ERROR, logger="gateway.agent"):
        run_agent(_client(gateway, NGHE_AN), folders, 7, stop)
    assert stop.timeouts == [7]
    assert "cannot use the agent's folders ([Errno 21] Is a directory" in caplog.text
    assert "retrying in 7 s" in caplog.text
