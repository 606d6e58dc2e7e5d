"""Writer → reader round trips, SDK layout, streaming from files, and status messages for every code."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.edxml import (
    AttachmentSource,
    Business,
    DocumentMessage,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusMessage,
    document_bytes,
    read_document,
    read_status,
    status_bytes,
    write_document,
)
from gateway.edxml.ns import QCVN
from gateway.edxml.reader import check_written, load
from gateway.errors import GatewayError, InvalidEdxml, SchemaInvalid

NOW = datetime(2016, 4, 1, 8, 30, 0)
VPCP = Organization("000.00.00.G22", "Văn phòng Chính phủ", "Chính phủ", "Số 1 Hoàng Hoa Thám, Hà Nội")
NGHE_AN = Organization("000.00.00.H41", "Ủy ban nhân dân tỉnh Nghệ An")
CAO_BANG = Organization("000.00.00.H14", "Ủy ban nhân dân tỉnh Cao Bằng")
ORIGINAL = ResponseFor("000.00.00.G22", "7816/VPCP-TTĐT", "000.00.00.G22,2016/04/01,7816/VPCP-TTĐT", date(2016, 4, 1))


def _message(**changes: object) -> DocumentMessage:
    values: dict[str, object] = {
        "sender": VPCP,
        "recipients": (NGHE_AN, CAO_BANG),
        "code_number": "7816",
        "code_notation": "VPCP-TTĐT",
        "promulgation_date": date(2016, 4, 1),
        "type_code": 1,
        "type_name": "Công văn",
        "subject": 'V/v kết nối <liên thông> & "thử"',
        "document_id": "000.00.00.G22,2016/04/01,7816/VPCP-TTĐT",
        "place": "Hà Nội",
        "type_detail": 0,
        "content": "Nội dung tóm tắt",
        "signer_competence": "KT. BỘ TRƯỞNG",
        "signer_position": "Phó Chủ nhiệm",
        "signer_full_name": "Nguyễn Văn A",
        "due_date": date(2016, 6, 30),
        "priority": 3,
        "steering_type": 1,
        "to_places": ("Như trên", "Lưu: VT"),
        "response_for": (ResponseFor("000.00.00.H41", "120/UBND-VX", "000.00.00.H41,2016/03/15,120/UBND-VX"),),
        "business": Business(doc_type=0, reason="Văn bản điện tử mới", paper=1),
        "trace_organ_ids": ("000.00.00.G22",),
    }
    values.update(changes)
    return DocumentMessage(**values)  # type: ignore[arg-type]


def test_round_trip_with_attachments(tmp_path: Path) -> None:
    pdf = tmp_path / "cong-van.pdf"
    pdf.write_bytes(bytes(range(256)) * 1000 + b"x")
    msg = _message()
    sources = [
        AttachmentSource("cong-van.pdf", "application/pdf", path=pdf, description="Bản ký số"),
        AttachmentSource("phu-luc.docx", "application/docx", data=b"PK\x03\x04", content_id="pl-1"),
    ]
    read = read_document(document_bytes(msg, sources, now=NOW))
    assert read.attachments[0].size == pdf.stat().st_size
    assert read.attachments[0].content_id.startswith("cid:")
    assert read.attachments[0].description == "Bản ký số"
    assert read.attachments[1].content_id == "cid:pl-1"
    assert read.attachments[1].size == 4
    from dataclasses import replace

    assert replace(read, attachments=()) == msg


def test_attachment_content_survives(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 2000 + b"tail"
    (tmp_path / "a.bin").write_bytes(payload)
    data = document_bytes(_message(), [AttachmentSource("a.zip", "application/zip", path=tmp_path / "a.bin")], now=NOW)
    encoded = etree.fromstring(data).find(f".//{{{QCVN}}}ContentTransferEncoded")
    assert encoded is not None and "\n" not in (encoded.text or "")
    assert base64.b64decode(encoded.text or "") == payload


def test_sdk_layout() -> None:
    data = document_bytes(_message(), [AttachmentSource("a.pdf", "application/pdf", data=b"%PDF")], now=NOW)
    text = data.decode("utf-8")
    assert text.startswith(f'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="{QCVN}">\n')
    assert f'<edXML:edXMLEnvelope xmlns:edXML="{QCVN}">' in text
    assert "<edXML:Bussiness>" in text and "Business>" not in text
    assert "<edXML:Timestamp>2016/04/01 08:30:00</edXML:Timestamp>" in text
    assert "\n  <AttachmentEncoded>\n    <Attachment>\n      <ContentId>cid:" in text
    root = etree.fromstring(data)
    header = root.find(f"{{{QCVN}}}edXMLEnvelope/{{{QCVN}}}edXMLHeader/{{{QCVN}}}MessageHeader")
    assert header is not None
    names = [etree.QName(child).localname for child in header]
    assert names == [
        "From",
        "To",
        "To",
        "DocumentId",
        "Code",
        "PromulgationInfo",
        "DocumentType",
        "Subject",
        "Content",
        "SignerInfo",
        "DueDate",
        "OtherInfo",
        "ResponseFor",
        "SteeringType",
        "ToPlaces",
    ]


def test_defaults_document_id_and_trace() -> None:
    msg = _message(document_id=None, trace_organ_ids=(), business=Business())
    read = read_document(document_bytes(msg, now=NOW))
    assert read.document_id == "000.00.00.G22,2016/04/01,7816/VPCP-TTĐT"
    assert read.trace_organ_ids == ("000.00.00.G22",)
    assert read.business.reason == "Văn bản điện tử mới"


def test_replace_business_round_trip() -> None:
    business = Business(doc_type=3, document_id=ORIGINAL.document_id, reason="Thay thế", replaced_document_ids=("X,1",))
    read = read_document(document_bytes(_message(business=business, response_for=(ORIGINAL,)), now=NOW))
    assert read.business == business


def test_streams_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out.edxml"
    with target.open("wb") as out:
        write_document(_message(), [AttachmentSource("a.pdf", "application/pdf", data=b"1234")], out, now=NOW)
    assert read_document(target).attachments[0].size == 4


def test_invalid_message_writes_nothing() -> None:
    out = io.BytesIO()
    with pytest.raises(SchemaInvalid, match="OrganId 'bad' must be written"):
        write_document(_message(recipients=(Organization("bad"),)), [], out, now=NOW)
    assert out.getvalue() == b""
    with pytest.raises(InvalidEdxml, match="twice"):
        write_document(_message(recipients=(NGHE_AN, NGHE_AN)), [], out, now=NOW)
    assert out.getvalue() == b""


def test_control_characters_refused() -> None:
    with pytest.raises(ValueError, match="Subject"):
        document_bytes(_message(subject="bell\x07"), now=NOW)


def test_attachment_source_needs_one_origin(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        AttachmentSource("a", "application/pdf")
    with pytest.raises(ValueError, match="exactly one"):
        AttachmentSource("a", "application/pdf", path=tmp_path, data=b"")


@pytest.mark.parametrize("code", ["01", "02", "03", "04", "05", "06", "13", "15", "16"])
def test_status_every_code(code: str) -> None:
    msg = StatusMessage(
        sender=NGHE_AN,
        response_for=ORIGINAL,
        status_code=code,
        timestamp=datetime(2016, 4, 2, 9, 15, 0),
        staff=StaffInfo(department="Văn thư", staff="Lê Văn Cường", staff_id="42"),
        description=f"Trạng thái {code}",
    )
    data = status_bytes(msg)
    assert f"<edXML:StatusCode>{code}</edXML:StatusCode>" in data.decode("utf-8")
    assert read_status(data) == msg


def test_status_minimal_round_trip() -> None:
    msg = StatusMessage(NGHE_AN, ORIGINAL, "01", datetime(2016, 4, 2, 9, 15, 0))
    assert read_status(status_bytes(msg)) == msg


@pytest.mark.parametrize("code", ["07", "14", "1", ""])
def test_status_unknown_code_refused(code: str) -> None:
    with pytest.raises(SchemaInvalid, match="StatusCode"):
        status_bytes(StatusMessage(NGHE_AN, ORIGINAL, code, datetime(2016, 4, 2, 9, 15, 0)))


def _outcome(check: Callable[[], object]) -> tuple[type[Exception], str] | None:
    try:
        check()
    except GatewayError as refused:
        return type(refused), str(refused)
    return None


@pytest.mark.parametrize(
    ("old", "new", "accepted"),
    [
        ("<edXML:StatusCode>01</edXML:StatusCode>", "<edXML:StatusCode>99</edXML:StatusCode>", False),  # the schema
        ("2016/04/02 09:15:00", "2016/02/30 09:15:00", False),  # the calendar, which the schema cannot check
        ("<edXML:StatusCode>01</edXML:StatusCode>", "<edXML:StatusCode>01</edXML:StatusCod>", False),  # malformed
        ("</edXML:ResponseFor>", "</edXML:ResponseFor><edXML:Extra/>", False),
        # Valid only once normalised (qualified): the quick check doubts it, load accepts it.
        ("<edXML:StatusCode>01</edXML:StatusCode>", '<StatusCode xmlns="">01</StatusCode>', True),
    ],
)
def test_the_writers_quick_self_check_judges_as_the_reader_does(old: str, new: str, accepted: bool) -> None:
    """check_written trusts libxml2 with the gateway's own bytes; whatever it doubts, load judges, in load's words."""
    written = status_bytes(StatusMessage(NGHE_AN, ORIGINAL, "01", datetime(2016, 4, 2, 9, 15, 0)))
    check_written(written, "status")
    changed = written.decode("utf-8").replace(old, new, 1).encode("utf-8")
    assert changed != written
    outcome = _outcome(lambda: check_written(changed, "status"))
    assert outcome == _outcome(lambda: load(changed, "status"))
    assert (outcome is None) == accepted


def test_the_self_check_takes_a_document_for_a_status_only_as_load_does() -> None:
    document = document_bytes(_message())
    outcome = _outcome(lambda: check_written(document, "status"))
    assert outcome is not None
    assert outcome == _outcome(lambda: load(document, "status"))


def test_memory_bench_stays_within_budget() -> None:
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[2] / "tools" / "bench_edxml_memory.py"
    result = subprocess.run([sys.executable, str(tool), "--mb", "8"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "growth / file size" in result.stdout
