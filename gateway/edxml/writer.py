"""Write edXML exactly as the official SDK lays it out (docs/edxml-profile.md §2, §3, §9).

Root ``edXML`` with the QCVN default namespace, ``edXML:`` prefix from the envelope down, SDK
element order, ``Bussiness`` spelling, ``cid:`` content ids, single-line base64. Attachment bytes
are streamed from their files in chunks, so a 50 MB attachment never sits whole in memory.
Before the first byte is written, the document (with empty attachment contents) goes through the
reader's own parse-normalise-validate path: the gateway never emits edXML it would itself refuse.
"""

from __future__ import annotations

import base64
import io
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from xml.sax.saxutils import escape

from gateway.edxml.model import DocumentMessage, Organization, ResponseFor, StatusMessage
from gateway.edxml.ns import QCVN
from gateway.edxml.reader import DATE_FORMAT, TIMESTAMP_FORMAT, check_written, load


class Writable(Protocol):
    """Where a document is written: a file, a BytesIO, or a blob store's staged document."""

    def write(self, data: bytes, /) -> object: ...


READ_CHUNK = 3 * (1 << 16)
"""Bytes read per step; a multiple of 3 so chunk encodings concatenate into one base64 string."""

DEFAULT_REASONS = {
    0: "Văn bản điện tử mới",
    1: "Thu hồi văn bản điện tử",
    2: "Cập nhật văn bản điện tử",
    3: "Thay thế văn bản điện tử",
}
"""``BussinessDocReason`` the SDK samples use when the sender gives none."""

_ATTACHMENT_END = "</ContentTransferEncoded>\n    </Attachment>\n"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class AttachmentSource:
    """A file to attach: from ``path`` (streamed) or in-memory ``data``; ``content_id`` defaults to ``cid:<uuid4>``."""

    name: str
    content_type: str
    path: Path | None = None
    data: bytes | None = None
    description: str | None = None
    content_id: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError(f"attachment {self.name!r} needs exactly one of path or data")

    def chunks(self) -> Iterator[bytes]:
        """The raw bytes in :data:`READ_CHUNK` pieces."""
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, len(view), READ_CHUNK):
                yield bytes(view[start : start + READ_CHUNK])
            return
        assert self.path is not None
        with self.path.open("rb") as stream:
            while chunk := stream.read(READ_CHUNK):
                yield chunk


class _Xml:
    """Indented element writer; values are escaped and refused if XML 1.0 cannot carry them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []
        self.depth = 0

    def open(self, name: str, attrs: str = "") -> None:
        self.lines.append(f"{'  ' * self.depth}<{self.prefix}{name}{attrs}>")
        self.depth += 1

    def close(self, name: str) -> None:
        self.depth -= 1
        self.lines.append(f"{'  ' * self.depth}</{self.prefix}{name}>")

    def leaf(self, name: str, value: object) -> None:
        """Write ``<name>value</name>``; ``None`` writes nothing (the element is optional)."""
        if value is None:
            return
        text = value.strftime(DATE_FORMAT) if hasattr(value, "strftime") else str(value)
        if _NOT_XML.search(text):
            raise ValueError(f"{name} contains control characters that XML cannot carry")
        self.lines.append(f"{'  ' * self.depth}<{self.prefix}{name}>{escape(text)}</{self.prefix}{name}>")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _organization(xml: _Xml, name: str, organization: Organization) -> None:
    xml.open(name)
    xml.leaf("OrganId", organization.organ_id)
    xml.leaf("OrganizationInCharge", organization.organization_in_charge)
    xml.leaf("OrganName", organization.organ_name)
    xml.leaf("OrganAdd", organization.organ_add)
    xml.leaf("Email", organization.email)
    xml.leaf("Telephone", organization.telephone)
    xml.leaf("Fax", organization.fax)
    xml.leaf("Website", organization.website)
    xml.close(name)


def _response_for(xml: _Xml, item: ResponseFor) -> None:
    xml.open("ResponseFor")
    xml.leaf("OrganId", item.organ_id)
    xml.leaf("Code", item.code)
    xml.leaf("DocumentId", item.document_id)
    xml.leaf("PromulgationDate", item.promulgation_date)
    xml.close("ResponseFor")


def _envelope_start(xml: _Xml) -> None:
    xml.lines.append('<?xml version="1.0" encoding="UTF-8"?>')
    xml.lines.append(f'<edXML xmlns="{QCVN}">')
    xml.depth = 1
    xml.open("edXMLEnvelope", f' xmlns:edXML="{QCVN}"')
    xml.open("edXMLHeader")
    xml.open("MessageHeader")


def default_document_id(msg: DocumentMessage) -> str:
    """The conventional ``<sender OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>`` (docs/edxml-profile.md §3.1)."""
    return f"{msg.sender.organ_id},{msg.promulgation_date.strftime(DATE_FORMAT)},{msg.code}"


def _content_id(source: AttachmentSource) -> str:
    if source.content_id is None:
        return f"cid:{uuid.uuid4()}"
    return source.content_id if source.content_id.startswith("cid:") else f"cid:{source.content_id}"


def _document_parts(
    msg: DocumentMessage, attachments: Sequence[AttachmentSource], now: datetime
) -> tuple[str, list[tuple[str, AttachmentSource]], str]:
    """Header text, then (opening text, source) per attachment, then the closing text."""
    xml = _Xml("edXML:")
    _envelope_start(xml)
    _organization(xml, "From", msg.sender)
    for recipient in msg.recipients:
        _organization(xml, "To", recipient)
    xml.leaf("DocumentId", msg.document_id or default_document_id(msg))
    xml.open("Code")
    xml.leaf("CodeNumber", msg.code_number)
    xml.leaf("CodeNotation", msg.code_notation)
    xml.close("Code")
    xml.open("PromulgationInfo")
    xml.leaf("Place", msg.place)
    xml.leaf("PromulgationDate", msg.promulgation_date)
    xml.close("PromulgationInfo")
    xml.open("DocumentType")
    xml.leaf("Type", msg.type_code)
    xml.leaf("TypeDetail", msg.type_detail)
    xml.leaf("TypeName", msg.type_name)
    xml.close("DocumentType")
    xml.leaf("Subject", msg.subject)
    xml.leaf("Content", msg.content)
    if any(v is not None for v in (msg.signer_competence, msg.signer_position, msg.signer_full_name)):
        xml.open("SignerInfo")
        xml.leaf("Competence", msg.signer_competence)
        xml.leaf("Position", msg.signer_position)
        xml.leaf("FullName", msg.signer_full_name)
        xml.close("SignerInfo")
    xml.leaf("DueDate", msg.due_date)
    if msg.priority is not None:
        xml.open("OtherInfo")
        xml.leaf("Priority", msg.priority)
        xml.close("OtherInfo")
    for item in msg.response_for:
        _response_for(xml, item)
    xml.leaf("SteeringType", msg.steering_type)
    if msg.to_places:
        xml.open("ToPlaces")
        for place in msg.to_places:
            xml.leaf("Place", place)
        xml.close("ToPlaces")
    xml.close("MessageHeader")
    _trace_header_list(xml, msg, now)
    xml.close("edXMLHeader")
    content_ids = [_content_id(source) for source in attachments]
    if attachments:
        xml.open("edXMLBody")
        xml.open("edXMLManifest", ' version="1.0"')
        for content_id, source in zip(content_ids, attachments, strict=True):
            xml.open("Reference")
            xml.leaf("ContentId", content_id)
            xml.leaf("ContentType", source.content_type)
            xml.leaf("Description", source.description)
            xml.leaf("AttachmentName", source.name)
            xml.close("Reference")
        xml.close("edXMLManifest")
        xml.close("edXMLBody")
    xml.close("edXMLEnvelope")
    head = xml.text()
    openings: list[tuple[str, AttachmentSource]] = []
    for index, (content_id, source) in enumerate(zip(content_ids, attachments, strict=True)):
        fields = _Xml("")
        fields.depth = 3
        fields.leaf("ContentId", content_id)
        fields.leaf("AttachmentName", source.name)
        fields.leaf("Description", source.description)
        fields.leaf("ContentType", source.content_type)
        before = "  <AttachmentEncoded>\n" if index == 0 else _ATTACHMENT_END
        openings.append((f"{before}    <Attachment>\n{fields.text()}      <ContentTransferEncoded>", source))
    tail = f"{_ATTACHMENT_END}  </AttachmentEncoded>\n</edXML>\n" if attachments else "</edXML>\n"
    return head, openings, tail


def _trace_header_list(xml: _Xml, msg: DocumentMessage, now: datetime) -> None:
    business = msg.business
    xml.open("TraceHeaderList")
    xml.open("Bussiness")
    xml.leaf("DocumentId", business.document_id)
    xml.leaf("BussinessDocType", business.doc_type)
    xml.leaf("BussinessDocReason", business.reason or DEFAULT_REASONS.get(business.doc_type))
    xml.leaf("Paper", business.paper)
    if business.replaced_document_ids:
        xml.open("ReplacementInfoList")
        for document_id in business.replaced_document_ids:
            xml.open("ReplacementInfo")
            xml.leaf("DocumentId", document_id)
            xml.open("OrganIdList")
            for recipient in msg.recipients:
                xml.leaf("OrganId", recipient.organ_id)
            xml.close("OrganIdList")
            xml.close("ReplacementInfo")
        xml.close("ReplacementInfoList")
    xml.close("Bussiness")
    for organ_id in msg.trace_organ_ids or (msg.sender.organ_id,):
        xml.open("TraceHeader")
        xml.leaf("OrganId", organ_id)
        xml.leaf("Timestamp", now.strftime(TIMESTAMP_FORMAT))
        xml.close("TraceHeader")
    xml.close("TraceHeaderList")


def write_document(
    msg: DocumentMessage,
    attachments: Sequence[AttachmentSource],
    out: Writable,
    *,
    now: datetime | None = None,
) -> None:
    """Validate, then write ``msg`` with ``attachments`` (``msg.attachments`` is ignored) to ``out``.

    ``now`` stamps the TraceHeader (default: local time). Raises SchemaInvalid / InvalidEdxml
    if the message would not be valid edXML; nothing is written then.
    """
    head, openings, tail = _document_parts(msg, attachments, now or datetime.now().replace(microsecond=0))
    load(_skeleton_bytes(head, openings, tail), "document")
    out.write(head.encode("utf-8"))
    for opening, source in openings:
        out.write(opening.encode("utf-8"))
        for chunk in source.chunks():
            out.write(base64.b64encode(chunk))
    out.write(tail.encode("utf-8"))


def _skeleton_bytes(head: str, openings: list[tuple[str, AttachmentSource]], tail: str) -> bytes:
    """The document exactly as it will be written, attachment contents left empty."""
    return (head + "".join(opening for opening, _ in openings) + tail).encode("utf-8")


def document_bytes(
    msg: DocumentMessage, attachments: Sequence[AttachmentSource] = (), *, now: datetime | None = None
) -> bytes:
    """:func:`write_document` into memory, for small documents and tests."""
    buffer = io.BytesIO()
    write_document(msg, attachments, buffer, now=now)
    return buffer.getvalue()


def status_bytes(msg: StatusMessage) -> bytes:
    """A status message in SDK layout, validated against the status schema before it is returned."""
    xml = _Xml("edXML:")
    _envelope_start(xml)
    _organization(xml, "From", msg.sender)
    _response_for(xml, msg.response_for)
    if msg.staff is not None:
        xml.open("StaffInfo")
        xml.leaf("Department", msg.staff.department)
        xml.leaf("DepartmentId", msg.staff.department_id)
        xml.leaf("Staff", msg.staff.staff)
        xml.leaf("StaffId", msg.staff.staff_id)
        xml.leaf("Email", msg.staff.email)
        xml.leaf("Mobile", msg.staff.mobile)
        xml.close("StaffInfo")
    xml.leaf("StatusCode", msg.status_code)
    xml.leaf("Description", msg.description)
    xml.leaf("Timestamp", msg.timestamp.strftime(TIMESTAMP_FORMAT))
    xml.close("MessageHeader")
    xml.close("edXMLHeader")
    xml.close("edXMLEnvelope")
    xml.lines.append("</edXML>")
    data = xml.text().encode("utf-8")
    check_written(data, "status")
    return data
