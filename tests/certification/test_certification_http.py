"""A certification run over real HTTP: started by the agency's software, played by the reference agent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import urllib3
from support.letters import official_letter
from support.live import NGHE_AN, LiveGateway, live_gateway_for, secret_of

from gateway.agent import Agent, Folders, queue_report
from gateway.certification import Certifications
from gateway.certification.script import SANDBOX_CODE, SANDBOX_NAME
from gateway.client import AgencyClient, Fault
from gateway.config import Settings
from gateway.reports import REPORTS_STATUS, SENDS_AND_RECEIVES

PASSWORD = "operator-password"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveGateway]:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'gw.sqlite3'}",
        certify_large_bytes=500_000,
        operator_password=PASSWORD,
    )
    with live_gateway_for(settings) as live:
        yield live


def _certifications(gateway: LiveGateway, shift: timedelta = timedelta(0)) -> Certifications:
    from gateway.exchange.service import ExchangeService
    from gateway.store.blobs import BlobStore

    assert gateway.settings.blob_dir is not None
    exchange = ExchangeService(gateway.db, BlobStore(gateway.settings.blob_dir), gateway.settings)
    return Certifications(exchange, large_bytes=500_000, clock=lambda: datetime.now(UTC) + shift)


class Clerk:
    """A person at the desk: does what each test document's instruction says, via the agent's folders."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self.done: set[str] = set()

    def work(self) -> None:
        for meta in sorted(self.folders.inbox.glob("*.json")) + sorted(self.folders.status_messages.glob("*.json")):
            if meta.name in self.done:
                continue
            self.done.add(meta.name)
            item = json.loads(meta.read_text(encoding="utf-8"))
            subject, document = item["subject"], item["documentId"]
            if item["kind"] == "status" and item["statusCode"] == "13":
                queue_report(self.folders, document, "15", "Đồng ý thu hồi")
            elif item["kind"] == "document" and subject.startswith("[EDXML-CERTIFY:REJECT]"):
                queue_report(self.folders, document, "02", "Văn bản gửi nhầm đơn vị")
            elif item["kind"] == "document" and subject.startswith(("[EDXML-CERTIFY:PROCESS]", "[EDXML-CERTIFY:ATT")):
                for code in ("03", "04", "05", "06"):
                    queue_report(self.folders, document, code, None, staff="Trần Văn Bình", department="Văn thư")


def _play(gateway: LiveGateway, tmp_path: Path, clerk_works: bool, rounds: int = 12) -> str:
    client = AgencyClient(gateway.url, NGHE_AN, secret_of(NGHE_AN))
    run_id = str(client.call("startCertification", minutes=30).runId)
    folders = Folders(tmp_path / "agent")
    agent = Agent(client, folders)
    clerk = Clerk(folders)
    outgoing = folders.outbox / "reply.edxml"
    outgoing.write_bytes(official_letter(NGHE_AN, [SANDBOX_CODE], number="77"))
    watcher = _certifications(gateway)
    for _ in range(rounds):
        agent.cycle()
        if clerk_works:
            clerk.work()
        watcher.advance(run_id)
    return run_id


def test_the_reference_agent_with_a_clerk_earns_the_top_grade(gateway: LiveGateway, tmp_path: Path) -> None:
    run_id = _play(gateway, tmp_path, clerk_works=True)
    run = AgencyClient(gateway.url, NGHE_AN, secret_of(NGHE_AN)).call("getCertification", runId=run_id)
    states = {check.key: check.state for check in run.checks.CertificationCheck}
    assert set(states.values()) == {"passed"}, states
    assert run.grade == REPORTS_STATUS and run.active is False


def test_the_reference_agent_that_never_reports_statuses_sends_and_receives(
    gateway: LiveGateway, tmp_path: Path
) -> None:
    run_id = _play(gateway, tmp_path, clerk_works=False)
    run = _certifications(gateway, shift=timedelta(minutes=31)).view(run_id)
    assert run.grade == SENDS_AND_RECEIVES
    assert {c.key for c in run.checks if c.state == "failed"} == {
        "status:process",
        "status:attachments",
        "status:reject",
        "status:recall",
    }


def test_get_agencies_names_the_sandbox_as_a_test_agency_in_the_usual_shape(gateway: LiveGateway) -> None:
    """The agency's software finds the sandbox with getAgencies (it must send it a document).

    The answer's shape is the WSDL's, so no flag is added: the sandbox is told apart by its code
    and by its name, which says it is a test sandbox in Vietnamese and in English.
    """
    from zeep.helpers import serialize_object

    client = AgencyClient(gateway.url, NGHE_AN, secret_of(NGHE_AN))
    client.call("startCertification", minutes=30)
    listed = {a.code: serialize_object(a, dict) for a in client.agencies()}
    sandbox = listed[SANDBOX_CODE]
    assert sandbox["name"] == SANDBOX_NAME and "kiểm thử" in sandbox["name"] and "(sandbox)" in sandbox["name"]
    assert set(sandbox) == set(listed[NGHE_AN]) == {"code", "name", "level", "parentCode", "active", "homeInstance"}
    assert sandbox["homeInstance"] is None, "sent only to a caller that asks for it (getAgencies includeHomeInstance)"
    assert not any("sandbox" in (a["name"] or "").lower() for code, a in listed.items() if code != SANDBOX_CODE)


def test_a_second_run_is_refused_and_runs_are_private(gateway: LiveGateway) -> None:
    client = AgencyClient(gateway.url, NGHE_AN, secret_of(NGHE_AN))
    run_id = client.call("startCertification").runId
    with pytest.raises(Fault) as refused:
        client.call("startCertification")
    assert refused.value.code == "Client.CertificationInProgress" and run_id in refused.value.message
    other = AgencyClient(gateway.url, "000.00.00.G22", secret_of("000.00.00.G22"))
    with pytest.raises(Fault) as hidden:
        other.call("getCertification", runId=run_id)
    assert hidden.value.code == "Client.NotFound"


def test_the_operator_page_lists_starts_and_prints_runs(gateway: LiveGateway) -> None:
    http = urllib3.PoolManager()
    base = gateway.url.removesuffix("/soap") + "/certification"
    auth = urllib3.make_headers(basic_auth=f"operator:{PASSWORD}")
    assert http.request("GET", base).status == 401
    listing = http.request("GET", base, headers=auth)
    assert listing.status == 200 and "No run yet." in listing.data.decode()
    token = listing.data.decode().split('name="token" value="')[1].split('"')[0]
    forged = http.request("POST", base, fields={"agency": NGHE_AN, "token": "x"}, headers=auth, encode_multipart=False)
    assert forged.status == 403
    started = http.request(
        "POST",
        base,
        fields={"agency": NGHE_AN, "minutes": "10", "token": token},
        headers=auth,
        encode_multipart=False,
        redirect=False,
    )
    assert started.status == 303
    certificate = http.request("GET", base + started.headers["Location"], headers=auth).data.decode()
    assert f'<b id="agency">{NGHE_AN}</b>' in certificate and "receive:large" in certificate
    again = http.request(
        "POST", base, fields={"agency": NGHE_AN, "token": token}, headers=auth, encode_multipart=False
    ).data.decode()
    assert "already active" in again


def test_faults_the_agency_provokes_during_its_run_are_kept_as_evidence(gateway: LiveGateway) -> None:
    client = AgencyClient(gateway.url, NGHE_AN, secret_of(NGHE_AN))
    with pytest.raises(Fault):
        client.fetch("no-such-item")  # before the run: not evidence of anything
    run_id = str(client.call("startCertification", minutes=30).runId)
    with pytest.raises(Fault) as refused:
        client.report("no-such-document", "03")
    run = _certifications(gateway).view(run_id)
    assert [(f.operation, f.code) for f in run.faults] == [("updateStatus", refused.value.code)]
    assert "no-such-document" in run.faults[0].message
