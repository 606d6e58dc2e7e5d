"""What a certification run sends and what it expects: the script, as data.

Each test document carries its instruction in plain Vietnamese for the clerk (``Subject`` and
``Content``), after a marker (``[EDXML-CERTIFY:<ROLE>]``, e.g. ``PROCESS``, ``REJECT``, ``RECALL``)
that scripted desk software can match in the pending list's ``subject`` without parsing the edXML.
The documents cover what real traffic carries (mission.md; docs/edxml-profile.md): one and
several attachments, Vietnamese text in every field, a large attachment, ToPlaces and a DueDate,
an update (BussinessDocType 2) and a recall (13) of earlier ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from gateway.edxml import AttachmentSource, Business, DocumentMessage, Organization, ResponseFor

SANDBOX_CODE = "000.00.00.Z99"
SANDBOX_NAME = "Hộp cát kiểm thử liên thông (sandbox)"
MARKER = "[EDXML-CERTIFY:{role}]"

PROCESS, ATTACHMENTS, LARGE, REJECT, RECALL, UPDATE = "process", "attachments", "large", "reject", "recall", "update"
SIGNED = "signed"
INITIAL_ROLES = (PROCESS, ATTACHMENTS, LARGE, REJECT, RECALL, SIGNED)
"""Documents sent when the run starts (``signed`` only where signatures are configured)."""

PROCESSING_CODES = ("03", "04", "05", "06")

INSTRUCTIONS = {
    PROCESS: "Văn bản kiểm thử: tiếp nhận và báo trạng thái 03, 04, 05, 06 theo thứ tự.",
    ATTACHMENTS: "Văn bản kiểm thử nhiều tệp đính kèm: tiếp nhận và báo trạng thái 03, 04, 05, 06.",
    LARGE: "Văn bản kiểm thử có tệp đính kèm lớn: nhận đầy đủ và xác nhận đã nhận.",
    REJECT: "Văn bản kiểm thử gửi nhầm: từ chối tiếp nhận (trạng thái 02) và ghi rõ lý do.",
    RECALL: "Văn bản kiểm thử sẽ bị thu hồi (13) sau khi được nhận: trả lời đồng ý (15) hoặc từ chối (16).",
    SIGNED: "Văn bản kiểm thử có chữ ký số XML-DSig: nhận đầy đủ, xác nhận đã nhận và kiểm tra chữ ký.",
    UPDATE: "Văn bản kiểm thử cập nhật văn bản nhiều tệp đính kèm: nhận đầy đủ và xác nhận đã nhận.",
}


@dataclass(frozen=True)
class CheckSpec:
    """One expectation: its key, what it asks in words, and when it is due (fraction of the run)."""

    key: str
    title: str
    due: float = 1.0


def checks(signed: bool) -> list[CheckSpec]:
    """The checks of a run, in the order they are shown."""
    specs = [
        CheckSpec(
            f"receive:{PROCESS}", "Pull, fetch and acknowledge a document with Vietnamese text in every field", 0.5
        ),
        CheckSpec(f"receive:{ATTACHMENTS}", "Pull, fetch and acknowledge a document with several attachments", 0.5),
        CheckSpec(f"receive:{LARGE}", "Pull, fetch and acknowledge a document with a large attachment", 0.5),
        CheckSpec(f"receive:{REJECT}", "Pull, fetch and acknowledge the document to be rejected", 0.5),
        CheckSpec(f"receive:{RECALL}", "Pull, fetch and acknowledge the document that will be recalled", 0.5),
    ]
    if signed:
        specs.append(CheckSpec(f"receive:{SIGNED}", "Pull, fetch and acknowledge an XML-DSig signed document", 0.5))
    specs += [
        CheckSpec(f"receive:{UPDATE}", "Pull, fetch and acknowledge an update (BussinessDocType 2)"),
        CheckSpec(f"status:{PROCESS}", "Report 03, 04, 05, 06 on the document marked for processing"),
        CheckSpec(f"status:{ATTACHMENTS}", "Report 03, 04, 05, 06 on the document with several attachments"),
        CheckSpec(f"status:{REJECT}", "Reject the document marked for rejection: 02 with a reason"),
        CheckSpec(f"status:{RECALL}", "Answer the recall (13) with 15 (agreed) or 16 (refused)"),
        CheckSpec("send", "Send one document to the sandbox agency"),
        CheckSpec("status-messages", "Pull and acknowledge the status messages 03-06 about the document sent"),
    ]
    return specs


@dataclass(frozen=True)
class TestDocument:
    """A document of the script: its metadata and attachments."""

    message: DocumentMessage
    attachments: tuple[AttachmentSource, ...]


def _filler(size: int) -> Callable[[], bytes]:
    pattern = ("Nội dung tệp đính kèm kiểm thử liên thông văn bản điện tử. " * 64).encode("utf-8")

    def make() -> bytes:
        return (pattern * (size // len(pattern) + 1))[:size]

    return make


def document(
    role: str,
    agency: Organization,
    run_number: str,
    now: datetime,
    large_bytes: int,
    original: DocumentMessage | None = None,
) -> TestDocument:
    """The test document for ``role`` from the sandbox to ``agency`` in run ``run_number``."""
    sandbox = Organization(
        SANDBOX_CODE,
        SANDBOX_NAME,
        organization_in_charge="Cổng trao đổi văn bản điện tử",
        organ_add="Số 1 Hoàng Hoa Thám, Ba Đình, Hà Nội",
        email="kiemthu@edxml-gateway.invalid",
    )
    number = f"{run_number}{INITIAL_ROLES.index(role) + 1 if role in INITIAL_ROLES else 9}"
    business = Business()
    response_for: tuple[ResponseFor, ...] = ()
    if role == UPDATE and original is not None:
        business = Business(doc_type=2, document_id=original.document_id, reason="Cập nhật văn bản điện tử")
        response_for = (
            ResponseFor(SANDBOX_CODE, original.code, original.document_id or "", original.promulgation_date),
        )
    pdf = AttachmentSource(
        name="Công văn kiểm thử.pdf",
        content_type="application/pdf",
        data=b"%PDF-1.4\n% Vai tro: " + role.encode() + b"\n",
        description="Tệp chính của công văn",
    )
    attachments: tuple[AttachmentSource, ...] = (pdf,)
    if role in (ATTACHMENTS, UPDATE):
        attachments = (
            pdf,
            AttachmentSource(
                name="Phụ lục số liệu.xlsx",
                content_type="application/xslx",
                data=_filler(40_000)(),
                description="Phụ lục kèm theo",
            ),
            AttachmentSource(
                name="Hồ sơ gốc.zip",
                content_type="application/zip",
                data=b"PK\x05\x06" + bytes(18),
                description="Hồ sơ nén",
            ),
        )
    elif role == LARGE:
        attachments = (
            AttachmentSource(
                name="Bản đồ quy hoạch.pdf",
                content_type="application/pdf",
                data=_filler(large_bytes)(),
                description="Tệp đính kèm dung lượng lớn",
            ),
        )
    today: date = now.date()
    message = DocumentMessage(
        sender=sandbox,
        recipients=(agency,),
        code_number=number,
        code_notation="KTLT-HCS",
        promulgation_date=today,
        type_code=1,
        type_name="Công văn",
        subject=f"{MARKER.format(role=role.upper())} Kiểm thử liên thông văn bản điện tử: {INSTRUCTIONS[role]}",
        document_id=f"{SANDBOX_CODE},{today:%Y/%m/%d},{number}/KTLT-HCS",
        place="Hà Nội",
        content=f"{MARKER.format(role=role.upper())} {INSTRUCTIONS[role]}",
        signer_competence="KT. GIÁM ĐỐC",
        signer_position="Phó Giám đốc",
        signer_full_name="Nguyễn Thị Hồng Nhung",
        due_date=today + timedelta(days=7),
        priority=1,
        to_places=(agency.organ_name or agency.organ_id, "Lưu: VT, Phòng Kiểm thử."),
        business=business,
        response_for=response_for,
    )
    return TestDocument(message, attachments)
