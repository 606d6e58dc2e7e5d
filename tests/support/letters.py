"""edXML documents for tests, built with the gateway's own writer."""

from __future__ import annotations

from datetime import date

from gateway.edxml import AttachmentSource, Business, DocumentMessage, Organization, ResponseFor, document_bytes

NAMES = {
    "000.00.00.G22": "Văn phòng Chính phủ",
    "000.00.00.H41": "Ủy ban nhân dân tỉnh Nghệ An",
    "000.00.00.H14": "Ủy ban nhân dân tỉnh Cao Bằng",
    "000.00.00.H30": "Ủy ban nhân dân tỉnh Hậu Giang",
}


def letter_message(
    sender: str,
    recipients: list[str],
    number: str = "7816",
    document_id: str | None = None,
    business: Business | None = None,
    response_for: tuple[ResponseFor, ...] = (),
) -> DocumentMessage:
    """The metadata of a Công văn from ``sender`` to ``recipients``; DocumentId follows the SDK convention."""
    return DocumentMessage(
        sender=Organization(sender, NAMES.get(sender, sender)),
        recipients=tuple(Organization(code, NAMES.get(code, code)) for code in recipients),
        code_number=number,
        code_notation="VPCP-TTĐT",
        promulgation_date=date(2026, 11, 20),
        type_code=1,
        type_name="Công văn",
        subject="Về việc triển khai kết nối liên thông văn bản điện tử",
        document_id=document_id or f"{sender},2026/11/20,{number}/VPCP-TTĐT",
        due_date=date(2026, 12, 31),
        priority=1,
        business=business or Business(),
        response_for=response_for,
    )


def official_letter(
    sender: str,
    recipients: list[str],
    number: str = "7816",
    document_id: str | None = None,
    business: Business | None = None,
    response_for: tuple[ResponseFor, ...] = (),
    attachment: bytes = b"%PDF-1.4 test letter\n",
) -> bytes:
    """A Công văn from ``sender`` to ``recipients`` with one PDF attachment, as edXML bytes."""
    message = letter_message(sender, recipients, number, document_id, business, response_for)
    pdf = AttachmentSource(name="cong-van.pdf", content_type="application/pdf", data=attachment)
    return document_bytes(message, [pdf])
