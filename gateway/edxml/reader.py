"""Read edXML into the data model: parse → normalise → validate → extract → cross-check.

The tree is validated completely (schema, base64 of every attachment, real calendar dates) before
anything is extracted, so extraction can rely on required elements being present. Checks the XSD
cannot express raise :class:`~gateway.errors.InvalidEdxml`.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import cast

from lxml import etree

from gateway.edxml.model import (
    AttachmentInfo,
    Business,
    DocumentMessage,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusMessage,
)
from gateway.edxml.normalize import MessageKind, normalize
from gateway.edxml.ns import DSIG, q
from gateway.edxml.parsing import ParsedEdxml, parse
from gateway.edxml.validation import ValidationIssue, element_path, schema_invalid, schema_issues
from gateway.errors import InvalidEdxml

Source = Path | bytes | bytearray
"""A file, or the document's bytes (a staged document held in memory is a ``bytearray``)."""

DATE_FORMAT = "%Y/%m/%d"
TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M:%S"
_OWN_OUTPUT = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
"""libxml2, for bytes the gateway wrote itself (:func:`check_written`); callers' bytes go through :func:`parse`."""


def read_document(source: Source) -> DocumentMessage:
    """Validate an edXML document (file path or bytes) and return its metadata and attachment summary."""
    parsed = load(source, "document")
    root = parsed.root
    header = _header(root)
    attachments = _attachment_infos(root, parsed)
    code = header.find(q("Code"))
    promulgation = cast(etree._Element, header.find(q("PromulgationInfo")))  # the schema requires it
    doc_type = header.find(q("DocumentType"))
    signer = header.find(q("SignerInfo"))
    trace_list = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}/{q('TraceHeaderList')}")
    edxml_header = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}")
    signed = edxml_header is not None and any(
        child.tag in (q("Signature"), f"{{{DSIG}}}Signature") for child in edxml_header
    )
    return DocumentMessage(
        sender=_organization(header.find(q("From"))),
        recipients=tuple(_organization(to) for to in header.iterfind(q("To"))),
        code_number=_text(code, "CodeNumber") or "",
        code_notation=_text(code, "CodeNotation") or "",
        promulgation_date=_date(promulgation.find(q("PromulgationDate"))),
        type_code=int(_text(doc_type, "Type") or 0),
        type_name=_text(doc_type, "TypeName") or "",
        subject=_text(header, "Subject") or "",
        document_id=_text(header, "DocumentId"),
        place=_text(promulgation, "Place"),
        type_detail=_int(_text(doc_type, "TypeDetail")),
        content=_text(header, "Content"),
        signer_competence=_text(signer, "Competence"),
        signer_position=_text(signer, "Position"),
        signer_full_name=_text(signer, "FullName"),
        due_date=_optional_date(header.find(q("DueDate"))),
        priority=_int(_text(header.find(q("OtherInfo")), "Priority")),
        steering_type=_int(_text(header, "SteeringType")),
        to_places=tuple(place.text or "" for place in header.iterfind(f"{q('ToPlaces')}/{q('Place')}") if place.text),
        response_for=tuple(_response_for(item) for item in header.iterfind(q("ResponseFor"))),
        business=_business(trace_list),
        trace_organ_ids=tuple(
            organ.text or ""
            for organ in (trace_list.iterfind(f"{q('TraceHeader')}/{q('OrganId')}") if trace_list is not None else ())
        ),
        attachments=attachments,
        signed=signed,
    )


def read_status(source: Source) -> StatusMessage:
    """Validate an edXML status message (file path or bytes) and return it."""
    parsed = load(source, "status")
    header = _header(parsed.root)
    staff = header.find(q("StaffInfo"))
    return StatusMessage(
        sender=_organization(header.find(q("From"))),
        response_for=_response_for(header.find(q("ResponseFor"))),
        status_code=_text(header, "StatusCode") or "",
        timestamp=_timestamp(header.find(q("Timestamp"))),
        staff=_staff(staff) if staff is not None else None,
        description=_text(header, "Description"),
    )


def load(source: Source, expected: MessageKind) -> ParsedEdxml:
    """Parse, normalise and validate completely; the writer checks its own output with it too."""
    parsed = parse(source)
    kind = normalize(parsed.root)
    if kind != expected:
        line = _status_code_line(parsed.root)
        found = "a status message (its MessageHeader has a StatusCode)" if kind == "status" else "a document"
        path = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
        raise schema_invalid([ValidationIssue(line, path, f"expected a {expected}, found {found}")], expected)
    issues = schema_issues(parsed.root, kind)
    if not issues:
        issues = _content_issues(parsed) + _date_issues(parsed.root)
    if issues:
        raise schema_invalid(issues, kind)
    if kind == "document":
        _check_recipients(_header(parsed.root))
        _check_manifest(parsed.root)
    return parsed


def check_written(data: bytes, kind: MessageKind) -> None:
    """Raise what :func:`load` raises if ``data``, written by the gateway itself, is not what its reader accepts.

    The bytes are the writer's, not a caller's, so libxml2 parses them and the schema validates the
    tree as it stands (the writer emits SDK namespace and order, which normalising leaves unchanged),
    and the calendar check follows. A status message passes in about 12 µs this way against 225 µs
    through :func:`load`'s hardened reader, and every first fetch of a document writes one (issue 13,
    docs/performance.md). Output that fails any of these goes through :func:`load`, the authority,
    whose error says where and why.
    """
    try:
        root = etree.fromstring(data, _OWN_OUTPUT)
    except etree.XMLSyntaxError:
        load(data, kind)
        return
    if schema_issues(root, kind) or _date_issues(root):
        load(data, kind)


def _status_code_line(root: etree._Element) -> int | None:
    status = root.find(f".//{q('MessageHeader')}/{q('StatusCode')}")
    return status.sourceline if status is not None else None


def _content_issues(parsed: ParsedEdxml) -> list[ValidationIssue]:
    """Base64 problems found while streaming attachment contents (the XSD saw them as empty)."""
    return [
        ValidationIssue(content.line, element_path(element), f"ContentTransferEncoded {content.error}")
        for element, content in parsed.contents.items()
        if content.error is not None
    ]


def _date_issues(root: etree._Element) -> list[ValidationIssue]:
    """Dates the XSD pattern lets through but the calendar does not have (2023/02/29)."""
    issues = []
    for name, fmt in (("PromulgationDate", DATE_FORMAT), ("DueDate", DATE_FORMAT), ("Timestamp", TIMESTAMP_FORMAT)):
        for element in root.iter(q(name)):
            try:
                datetime.strptime(element.text or "", fmt)
            except ValueError:
                message = f"{name} '{element.text}' is not a real date"
                issues.append(ValidationIssue(element.sourceline, element_path(element), message))
    return issues


def _header(root: etree._Element) -> etree._Element:
    header = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}/{q('MessageHeader')}")
    if header is None:
        raise InvalidEdxml("The edXML has no edXMLEnvelope/edXMLHeader/MessageHeader.")
    return header


def _check_recipients(header: etree._Element) -> None:
    """Each recipient once: a duplicate To would deliver the document twice (Bkav hubs refuse it too)."""
    seen: dict[str, etree._Element] = {}
    for organ in header.iterfind(f"{q('To')}/{q('OrganId')}"):
        organ_id = organ.text or ""
        if organ_id in seen:
            raise InvalidEdxml(
                f"The edXML names recipient {organ_id} twice: line {organ.sourceline}, {element_path(organ)} "
                f"repeats line {seen[organ_id].sourceline}, {element_path(seen[organ_id])}."
            )
        seen[organ_id] = organ


def _check_manifest(root: etree._Element) -> None:
    """Manifest references and attachments must match one to one by ContentId."""
    references = root.findall(
        f"{q('edXMLEnvelope')}/{q('edXMLBody')}/{q('edXMLManifest')}/{q('Reference')}/{q('ContentId')}"
    )
    attachments = root.findall(f"{q('AttachmentEncoded')}/{q('Attachment')}")
    # The schema requires a ContentId in every Attachment.
    attachment_ids = [cast(etree._Element, attachment.find(q("ContentId"))) for attachment in attachments]
    for counted, what in ((references, "manifest Reference"), (attachment_ids, "Attachment")):
        duplicates = [cid for cid, count in Counter(e.text for e in counted).items() if count > 1]
        if duplicates:
            element = next(e for e in counted if e.text == duplicates[0])
            raise InvalidEdxml(
                f"The edXML has two {what}s with ContentId {duplicates[0]}: line {element.sourceline}, "
                f"{element_path(element)}."
            )
    attached = {e.text for e in attachment_ids}
    referenced = {e.text for e in references}
    for reference in references:
        if reference.text not in attached:
            raise InvalidEdxml(
                f"The manifest lists an attachment that is not in the edXML: ContentId {reference.text} "
                f"(line {reference.sourceline}, {element_path(reference)}) has no Attachment with that ContentId."
            )
    for content_id in attachment_ids:
        if content_id.text not in referenced:
            raise InvalidEdxml(
                f"The edXML carries an attachment the manifest does not list: ContentId {content_id.text} "
                f"(line {content_id.sourceline}, {element_path(content_id)}) has no manifest Reference."
            )


def _attachment_infos(root: etree._Element, parsed: ParsedEdxml) -> tuple[AttachmentInfo, ...]:
    """Describe each attachment; sizes come from the streaming base64 count."""
    attachments = root.findall(f"{q('AttachmentEncoded')}/{q('Attachment')}")
    infos = []
    for attachment in attachments:
        encoded = attachment.find(q("ContentTransferEncoded"))
        content = parsed.contents.get(encoded) if encoded is not None else None
        infos.append(
            AttachmentInfo(
                content_id=_text(attachment, "ContentId") or "",
                name=_text(attachment, "AttachmentName") or "",
                content_type=_text(attachment, "ContentType") or "",
                description=_text(attachment, "Description"),
                size=content.size if content is not None else 0,
            )
        )
    return tuple(infos)


def _text(parent: etree._Element | None, name: str) -> str | None:
    if parent is None:
        return None
    child = parent.find(q(name))
    if child is None:
        return None
    return child.text or ""


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _date(element: etree._Element | None) -> date:
    return datetime.strptime((element.text if element is not None else None) or "", DATE_FORMAT).date()


def _optional_date(element: etree._Element | None) -> date | None:
    return _date(element) if element is not None else None


def _timestamp(element: etree._Element | None) -> datetime:
    return datetime.strptime((element.text if element is not None else None) or "", TIMESTAMP_FORMAT)


def _organization(element: etree._Element | None) -> Organization:
    return Organization(
        organ_id=_text(element, "OrganId") or "",
        organ_name=_text(element, "OrganName"),
        organization_in_charge=_text(element, "OrganizationInCharge"),
        organ_add=_text(element, "OrganAdd"),
        email=_text(element, "Email"),
        telephone=_text(element, "Telephone"),
        fax=_text(element, "Fax"),
        website=_text(element, "Website"),
    )


def _response_for(element: etree._Element | None) -> ResponseFor:
    return ResponseFor(
        organ_id=_text(element, "OrganId") or "",
        code=_text(element, "Code") or "",
        document_id=_text(element, "DocumentId") or "",
        promulgation_date=_optional_date(element.find(q("PromulgationDate")) if element is not None else None),
    )


def _staff(element: etree._Element) -> StaffInfo:
    return StaffInfo(
        department=_text(element, "Department"),
        department_id=_text(element, "DepartmentId"),
        staff=_text(element, "Staff"),
        staff_id=_text(element, "StaffId"),
        email=_text(element, "Email"),
        mobile=_text(element, "Mobile"),
    )


def _business(trace_list: etree._Element | None) -> Business:
    business = trace_list.find(q("Bussiness")) if trace_list is not None else None
    if business is None:
        return Business()
    return Business(
        doc_type=int(_text(business, "BussinessDocType") or 0),
        document_id=_text(business, "DocumentId"),
        reason=_text(business, "BussinessDocReason"),
        paper=_int(_text(business, "Paper")),
        replaced_document_ids=tuple(
            element.text or ""
            for element in business.iterfind(f"{q('ReplacementInfoList')}/{q('ReplacementInfo')}/{q('DocumentId')}")
        ),
    )
