"""Every valid sample reads into the expected dataclass values."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from edxml_samples import VALID
from support.edxml_kinds import message_kind

from gateway.edxml import (
    AttachmentInfo,
    Business,
    Organization,
    ResponseFor,
    StaffInfo,
    read_document,
    read_status,
)

PDF_SIZE = len(b"%PDF-1.4\n% Cong van 7816/VPCP-TTDT\n%%EOF\n")
DOCX_SIZE = len(b"PK\x03\x04 du thao van ban")
SUBJECT = "V/v kết nối, liên thông phần mềm quản lý văn bản"


def test_minimal() -> None:
    doc = read_document(VALID / "minimal.edxml")
    assert doc.sender == Organization("000.00.00.G22", organ_name="Văn phòng Chính phủ")
    assert doc.recipients == (Organization("000.00.00.H41", organ_name="Ủy ban nhân dân tỉnh Nghệ An"),)
    assert (doc.code_number, doc.code_notation, doc.code) == ("7816", "VPCP-TTĐT", "7816/VPCP-TTĐT")
    assert doc.promulgation_date == date(2016, 4, 1)
    assert (doc.type_code, doc.type_name, doc.type_detail) == (1, "Công văn", None)
    assert doc.subject == SUBJECT
    assert doc.document_id == "000.00.00.G22,2016/04/01,7816/VPCP-TTĐT"
    assert doc.business == Business(doc_type=0, reason="Văn bản điện tử mới", paper=0)
    assert doc.trace_organ_ids == ("000.00.00.G22",)
    assert doc.attachments == ()
    assert doc.signed is False
    assert doc.due_date is None and doc.priority is None and doc.response_for == ()


def test_full_document_every_optional_element() -> None:
    doc = read_document(VALID / "full.edxml")
    assert doc.sender == Organization(
        "000.00.00.G22",
        "Văn phòng Chính phủ",
        "Chính phủ",
        "Số 1 Hoàng Hoa Thám, Quận Ba Đình, Hà Nội",
        "vpcp@chinhphu.vn",
        "080 43100",
        "080 44130",
        "vpcp.chinhphu.vn",
    )
    assert [r.organ_id for r in doc.recipients] == ["000.00.00.H41", "000.00.00.H14"]
    assert doc.recipients[0].website == "nghean.gov.vn"
    assert doc.recipients[1].organ_add == "Số 011 Hoàng Đình Giong, Thành phố Cao Bằng"
    assert doc.place == "Hà Nội"
    assert doc.type_detail == 0
    assert doc.content == "Đề nghị các địa phương hoàn thành kết nối trước ngày 30/6/2016."
    assert (doc.signer_competence, doc.signer_position, doc.signer_full_name) == (
        "KT. BỘ TRƯỞNG, CHỦ NHIỆM",
        "Phó Chủ nhiệm",
        "Nguyễn Văn A",
    )
    assert doc.due_date == date(2016, 6, 30)
    assert doc.priority == 2
    assert doc.steering_type == 1
    assert doc.to_places == ("Như trên", "Lưu: VT, TTĐT")
    assert doc.response_for == (
        ResponseFor("000.00.00.H41", "120/UBND-VX", "000.00.00.H41,2016/03/15,120/UBND-VX", date(2016, 3, 15)),
    )
    assert doc.business == Business(doc_type=0, reason="Văn bản điện tử mới", paper=1)
    assert doc.attachments == (
        AttachmentInfo("cid:7816-1", "7816_VPCP-TTDT.pdf", "application/pdf", "Công văn 7816 (bản ký số)", PDF_SIZE),
        AttachmentInfo("cid:7816-2", "du_thao.docx", "application/docx", "Dự thảo", DOCX_SIZE),
    )
    assert doc.signed is True


@pytest.mark.parametrize("name", ["signature-qcvn-unprefixed.edxml", "signature-xmldsig.edxml"])
def test_signature_in_either_namespace(name: str) -> None:
    doc = read_document(VALID / name)
    assert doc.signed is True
    assert doc.subject == SUBJECT


def test_recall() -> None:
    doc = read_document(VALID / "recall.edxml")
    assert doc.business.doc_type == 1
    assert doc.business.document_id == "000.00.00.G22,2016/04/01,7816/VPCP-TTĐT"
    assert doc.business.reason == "Thu hồi văn bản điện tử"
    assert doc.response_for == (
        ResponseFor("000.00.00.G22", "7816/VPCP-TTĐT", "000.00.00.G22,2016/04/01,7816/VPCP-TTĐT", date(2016, 4, 1)),
    )
    assert doc.code == "7900/VPCP-TTĐT"
    assert doc.promulgation_date == date(2016, 4, 5)


def test_status_sample() -> None:
    status = read_status(VALID / "status-05-processing.edxml")
    assert status.sender == Organization("000.00.00.H41", organ_name="Ủy ban nhân dân tỉnh Nghệ An")
    assert status.response_for == ResponseFor(
        "000.00.00.G22", "7816/VPCP-TTĐT", "000.00.00.G22,2016/04/01,7816/VPCP-TTĐT", date(2016, 4, 1)
    )
    assert status.staff == StaffInfo(
        department="Văn phòng UBND tỉnh", staff="Lê Văn Cường", email="vanthu@nghean.gov.vn", mobile="0912000002"
    )
    assert status.status_code == "05"
    assert status.description == "Đang xử lý"
    assert status.timestamp == datetime(2016, 4, 2, 9, 15)


@pytest.mark.parametrize("path", sorted(VALID.iterdir()), ids=lambda p: p.name)
def test_kind_and_reader_agree(path: Path) -> None:
    kind = message_kind(path)
    assert kind == ("status" if path.name.startswith("status") else "document")
    (read_status if kind == "status" else read_document)(path.read_bytes())


def test_reading_the_wrong_kind_is_refused() -> None:
    from gateway.errors import SchemaInvalid

    with pytest.raises(SchemaInvalid, match="expected a document, found a status message"):
        read_document(VALID / "status-05-processing.edxml")
    with pytest.raises(SchemaInvalid, match="expected a status, found a document"):
        read_status(VALID / "minimal.edxml")
