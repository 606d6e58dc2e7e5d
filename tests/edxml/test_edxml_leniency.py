"""Deliberate leniencies: what real senders do that the SDK parser accepts, so the gateway accepts it too.

Spec §2: the official parser matches children by local name, ignores their order, and Bkav code
spells ``Business*``. The gateway normalises a copy of the tree before validation; the stored
original bytes are never changed.
"""

from __future__ import annotations

from datetime import date

from edxml_samples import VALID

from gateway.edxml import ResponseFor, read_document, read_status

SAMPLE = VALID / "reordered-business-spelling.edxml"


def test_reordered_children_and_business_spelling_are_accepted() -> None:
    original = SAMPLE.read_bytes()
    doc = read_document(SAMPLE)
    assert doc.sender.organ_id == "000.00.00.G22"
    assert [r.organ_id for r in doc.recipients] == ["000.00.00.H41", "000.00.00.H14"]
    assert doc.code == "7816/VPCP-TTĐT"
    assert doc.place == "Hà Nội"
    assert doc.business.doc_type == 0
    assert doc.business.reason == "Văn bản điện tử mới"
    assert doc.response_for == (
        ResponseFor("000.00.00.H41", "120/UBND-VX", "000.00.00.H41,2016/03/15,120/UBND-VX", date(2016, 3, 15)),
    )
    assert SAMPLE.read_bytes() == original


def test_leaf_text_is_trimmed() -> None:
    assert read_document(SAMPLE).subject == "V/v kết nối, liên thông phần mềm quản lý văn bản"


def test_wrapped_base64_is_counted_without_whitespace() -> None:
    (attachment,) = read_document(SAMPLE).attachments
    assert attachment.size == len(b"%PDF-1.4\n% Cong van 7816/VPCP-TTDT\n%%EOF\n")


def test_unqualified_elements_below_the_root_are_qcvn_elements() -> None:
    data = (VALID / "minimal.edxml").read_bytes().replace(b"edXML:", b"").replace(b' xmlns:edXML="', b' xmlns:x="')
    assert read_document(data).subject.startswith("V/v")


def test_status_in_any_order() -> None:
    text = (VALID / "status-05-processing.edxml").read_text(encoding="utf-8")
    block_start = text.index("        <edXML:StaffInfo>")
    block_end = text.index("        <edXML:StatusCode>")
    staff = text[block_start:block_end]
    end_tag = "      </edXML:MessageHeader>"
    reordered = text[:block_start] + text[block_end:].replace(end_tag, staff + end_tag)
    assert read_status(reordered.encode()).staff is not None
