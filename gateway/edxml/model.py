"""Plain data read from, or written to, edXML messages.

These dataclasses are the only edXML shapes the rest of the gateway sees: the exchange
service never walks XML trees. Field names follow QCVN 102:2016 element names in snake case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Organization:
    """``From``/``To`` (and status ``From``): an agency, keyed by its official code ``OrganId``."""

    organ_id: str
    organ_name: str | None = None
    organization_in_charge: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass(frozen=True)
class ResponseFor:
    """Reference to an earlier document: its issuer, ``CodeNumber/CodeNotation`` and ``DocumentId``."""

    organ_id: str
    code: str
    document_id: str
    promulgation_date: date | None = None


@dataclass(frozen=True)
class AttachmentInfo:
    """One ``AttachmentEncoded/Attachment``; ``size`` is the decoded byte count."""

    content_id: str
    name: str
    content_type: str
    description: str | None = None
    size: int = 0


@dataclass(frozen=True)
class Business:
    """``TraceHeaderList/Bussiness``: what this packet does (0 new, 1 recall, 2 update, 3 replace)."""

    doc_type: int = 0
    document_id: str | None = None
    reason: str | None = None
    paper: int | None = None
    replaced_document_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class StaffInfo:
    """Person who handled a status: ``StaffInfo`` of a status message."""

    department: str | None = None
    department_id: str | None = None
    staff: str | None = None
    staff_id: str | None = None
    email: str | None = None
    mobile: str | None = None


@dataclass(frozen=True)
class DocumentMessage:
    """The metadata of an edoc (document message); attachments are described, not carried."""

    sender: Organization
    recipients: tuple[Organization, ...]
    code_number: str
    code_notation: str
    promulgation_date: date
    type_code: int
    type_name: str
    subject: str
    document_id: str | None = None
    place: str | None = None
    type_detail: int | None = None
    content: str | None = None
    signer_competence: str | None = None
    signer_position: str | None = None
    signer_full_name: str | None = None
    due_date: date | None = None
    priority: int | None = None
    steering_type: int | None = None
    to_places: tuple[str, ...] = ()
    response_for: tuple[ResponseFor, ...] = ()
    business: Business = field(default_factory=Business)
    trace_organ_ids: tuple[str, ...] = ()
    attachments: tuple[AttachmentInfo, ...] = ()
    signed: bool = False

    @property
    def code(self) -> str:
        """``CodeNumber/CodeNotation``, the form ``ResponseFor/Code`` uses."""
        return f"{self.code_number}/{self.code_notation}"


@dataclass(frozen=True)
class StatusMessage:
    """A status message (gói tin trạng thái): who reports which code about which document."""

    sender: Organization
    response_for: ResponseFor
    status_code: str
    timestamp: datetime
    staff: StaffInfo | None = None
    description: str | None = None
