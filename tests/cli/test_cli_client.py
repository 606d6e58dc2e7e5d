"""Client commands against a real gateway served from a thread: send → pending → fetch → ack → status → history."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from support.live import serving_in_thread

from gateway.app import create_app
from gateway.cli import main
from gateway.config import Settings
from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes, read_document
from gateway.store.database import Database
from gateway.store.models import Delivery

VPCP, NGHE_AN, CAO_BANG = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"


@dataclass
class Live:
    url: str
    settings: Settings
    secrets: dict[str, str]
    run: Callable[..., Result]

    def as_agency(self, code: str, *args: str) -> Result:
        return self.run(*args, "--url", self.url, "--agency", code, "--secret", self.secrets[code])


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    for name in ("GATEWAY_DATA_DIR", "GATEWAY_DATABASE_URL", "EDXML_GATEWAY_URL", "EDXML_AGENCY", "EDXML_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path / "gateway")

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args], env=env)

    assert run("db", "upgrade").exit_code == 0
    assert run("agencies", "load-shipped").exit_code == 0
    secrets = {}
    for code in (VPCP, NGHE_AN, CAO_BANG):
        issued = run("credentials", "issue", code)
        assert issued.exit_code == 0, issued.output
        secrets[code] = issued.stdout.strip()
    app = create_app(settings)
    try:
        with serving_in_thread(app) as base:
            yield Live(f"{base}/soap", settings, secrets, run)
    finally:
        app.gateway.db.dispose()


def _document_id(output: str) -> str:
    match = re.search(r"documentId (\S+)", output)
    assert match, output
    return match.group(1)


def _letter(tmp_path: Path, number: str) -> Path:
    message = DocumentMessage(
        sender=Organization(VPCP, "Văn phòng Chính phủ"),
        recipients=(Organization(CAO_BANG, "Ủy ban nhân dân tỉnh Cao Bằng"),),
        code_number=number,
        code_notation="VPCP-TTĐT",
        promulgation_date=date(2016, 1, 15),
        type_code=1,
        type_name="Công văn",
        subject=f"Công văn số {number}",
    )
    path = tmp_path / f"letter-{number}.edxml"
    path.write_bytes(document_bytes(message, [AttachmentSource("cv.pdf", "application/pdf", data=b"%PDF-1.4\n")]))
    return path


def test_round_trip_through_the_cli(live: Live, tmp_path: Path) -> None:
    note = tmp_path / "ghi-chu.txt"
    note.write_text("Kính gửi UBND tỉnh Nghệ An", encoding="utf-8")
    pdf = tmp_path / "ke-hoach.pdf"
    pdf.write_bytes(b"%PDF-1.4 ke hoach\n")
    sent = live.as_agency(
        VPCP,
        "send",
        str(note),
        str(pdf),
        "--to",
        NGHE_AN,
        "--subject",
        "Kế hoạch kết nối liên thông",
        "--code-number",
        "7816",
        "--code-notation",
        "VPCP-TTĐT",
    )
    assert sent.exit_code == 0, sent.output
    document_id = _document_id(sent.stdout)
    assert re.search(r"edxmlDocumentId 000\.00\.00\.G22,\d{4}/\d{2}/\d{2},7816/VPCP-TTĐT ", sent.stdout)
    assert f"to {NGHE_AN}" in sent.stdout

    pending = live.as_agency(NGHE_AN, "pending", "--json")
    assert pending.exit_code == 0, pending.output
    items = json.loads(pending.stdout)
    assert [(i["kind"], i["documentId"], i["senderCode"], i["subject"]) for i in items] == [
        ("document", document_id, VPCP, "Kế hoạch kết nối liên thông")
    ]
    item_id = items[0]["itemId"]

    target = tmp_path / "received.edxml"
    fetched = live.as_agency(NGHE_AN, "fetch", item_id, "-o", str(target))
    assert fetched.exit_code == 0, fetched.output
    message = read_document(target)
    assert message.sender.organ_id == VPCP and message.sender.organ_name == "Văn phòng Chính phủ"
    assert [r.organ_id for r in message.recipients] == [NGHE_AN]
    assert message.code == "7816/VPCP-TTĐT"
    assert sorted(a.name for a in message.attachments) == ["ghi-chu.txt", "ke-hoach.pdf"]

    acked = live.as_agency(NGHE_AN, "ack", item_id)
    assert acked.exit_code == 0 and f"Acknowledged {item_id}." in acked.stdout
    with Database(live.settings.database_url).transaction() as session:
        assert session.scalar(select(Delivery.state).where(Delivery.id == item_id)) == "acked"

    reported = live.as_agency(
        NGHE_AN,
        "status",
        document_id,
        "03",
        "--description",
        "Đã tiếp nhận",
        "--staff",
        "Nguyễn Văn A",
        "--department",
        "Văn thư",
    )
    assert reported.exit_code == 0, reported.output
    assert f"Recorded status 03 for {document_id}" in reported.stdout and f"notified {VPCP}" in reported.stdout

    history = live.as_agency(VPCP, "history", document_id, "--json")
    assert history.exit_code == 0, history.output
    entries = json.loads(history.stdout)
    assert [(e["recipientCode"], e["statusCode"], e["reportedBy"]) for e in entries] == [
        (NGHE_AN, "01", NGHE_AN),
        (NGHE_AN, "03", NGHE_AN),
    ]
    assert entries[1]["description"] == "Đã tiếp nhận"
    assert entries[1]["staffName"] == "Nguyễn Văn A" and entries[1]["staffDepartment"] == "Văn thư"
    table = live.as_agency(VPCP, "history", document_id)
    assert "03 accepted" in table.stdout and "Nguyễn Văn A / Văn thư" in table.stdout

    statuses = json.loads(live.as_agency(VPCP, "pending", "--json").stdout)
    assert sorted((i["kind"], i["statusCode"]) for i in statuses) == [("status", "01"), ("status", "03")]

    evidence_file = tmp_path / "evidence.json"
    exported = live.run("audit", "export", document_id, "-o", str(evidence_file))
    assert exported.exit_code == 0, exported.output
    evidence = json.loads(evidence_file.read_text(encoding="utf-8"))
    assert evidence["document"]["id"] == document_id and evidence["document"]["sender_code"] == VPCP
    assert [(r["agency_code"], r["status"]) for r in evidence["recipients"]] == [(NGHE_AN, "03")]
    assert [e["code"] for e in evidence["status_events"]] == ["01", "03"]
    assert [e["action"] for e in evidence["audit_entries"]] == ["send", "status", "fetch", "ack", "status"]
    assert evidence["blob_intact"] is True and evidence["audit_chain"]["ok"] is True


def test_bulk_send_of_edxml_files(live: Live, tmp_path: Path) -> None:
    files = [str(_letter(tmp_path, str(n))) for n in range(1, 4)]
    sent = live.as_agency(VPCP, "send", *files)
    assert sent.exit_code == 0, sent.output
    assert len(set(re.findall(r"documentId (\S+)", sent.stdout))) == 3
    again = live.as_agency(VPCP, "send", files[0])
    assert "already sent before" in again.stdout
    items = json.loads(live.as_agency(CAO_BANG, "pending", "--json", "--max", "2").stdout)
    assert len(items) == 2


def test_faults_print_code_and_message(live: Live, tmp_path: Path) -> None:
    bad = tmp_path / "bad.edxml"
    bad.write_text("<x/>", encoding="utf-8")
    refused = live.as_agency(VPCP, "send", str(bad))
    assert refused.exit_code == 1
    assert "error Client.SchemaInvalid: " in refused.stderr and "Traceback" not in refused.output

    wrong = live.run("pending", "--url", live.url, "--agency", VPCP, "--secret", "not-the-secret")
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("error Client.AuthenticationFailed: Authentication failed")

    missing = live.as_agency(NGHE_AN, "fetch", "no-such-item")
    assert missing.exit_code == 1 and missing.stderr.startswith("error Client.NotFound: ")

    illegal = live.as_agency(NGHE_AN, "status", "no-such-document", "07")
    assert illegal.exit_code == 1 and illegal.stderr.startswith("error Client.InvalidStatus: ")


def test_client_usage_and_connection_errors(live: Live, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nowhere = f"http://127.0.0.1:{closed_port}/soap"
    unreachable = live.run("pending", "--url", nowhere, "--agency", VPCP, "--secret", "s")
    assert unreachable.exit_code == 1
    assert unreachable.stderr.startswith(f"error: cannot reach the gateway at {nowhere}")
    assert "Traceback" not in unreachable.output

    wrong_path = live.run("pending", "--url", live.url.replace("/soap", "/nothing"), "--agency", VPCP, "--secret", "s")
    assert wrong_path.exit_code == 1 and "HTTP 404" in wrong_path.stderr

    anonymous = live.run("pending", "--url", live.url)
    assert anonymous.exit_code == 1 and "give --agency and --secret" in anonymous.stderr

    from_env = live.run(
        "pending",
        "--json",
        env={
            "EDXML_GATEWAY_URL": live.url,
            "EDXML_AGENCY": NGHE_AN,
            "EDXML_SECRET": live.secrets[NGHE_AN],
        },
    )
    assert from_env.exit_code == 0 and json.loads(from_env.stdout) == []

    note = tmp_path / "note.txt"
    note.write_text("x", encoding="utf-8")
    no_recipient = live.as_agency(VPCP, "send", str(note))
    assert no_recipient.exit_code == 2 and "needs at least one --to" in no_recipient.output


def test_pending_table_and_fetch_to_stdout(live: Live, tmp_path: Path) -> None:
    """The human-readable listing names each item; ``fetch -o -`` writes the edXML bytes as stored."""
    letter = _letter(tmp_path, "0042")
    sent = live.as_agency(VPCP, "send", str(letter))
    assert sent.exit_code == 0, sent.output
    document_id = _document_id(sent.stdout)

    listed = live.as_agency(CAO_BANG, "pending")
    assert listed.exit_code == 0, listed.output
    assert "1 item(s) for 000.00.00.H14" in listed.stdout
    assert document_id in listed.stdout and "Công văn số 0042" in listed.stdout and VPCP in listed.stdout
    with Database(live.settings.database_url).transaction() as session:
        [item_id] = session.scalars(select(Delivery.id).where(Delivery.document_id == document_id))
    assert item_id in listed.stdout

    fetched = live.as_agency(CAO_BANG, "fetch", item_id, "-o", "-")
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout_bytes == letter.read_bytes()

    unreachable = live.run("pending", "--url", "http://127.0.0.1:9/soap", "--agency", VPCP, "--secret", "x")
    assert unreachable.exit_code == 1
    assert unreachable.stderr.startswith("error: cannot reach the gateway at http://127.0.0.1:9/soap")
