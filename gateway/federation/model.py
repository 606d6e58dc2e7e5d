"""The routing facts of one consignment, as they travel beside (never inside) its edXML payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

KIND_DOCUMENT = "document"
KIND_STATUS = "status"
KIND_RECALL = "recall"
KINDS = (KIND_DOCUMENT, KIND_STATUS, KIND_RECALL)
MAX_HOPS = 4
DELIVERY_REPORT = "90"
"""Status code of the gateway's own "not delivered" report: outside the edXML list on purpose."""


@dataclass(frozen=True)
class ConsignmentHeader:
    """What a hop needs to route, verify and deduplicate a consignment (docs/federation.md)."""

    consignment_id: str
    kind: str
    origin_instance: str
    origin_document_id: str
    sender_code: str
    recipients: tuple[str, ...]
    payload_sha256: str
    payload_size: int
    hop_count: int
    path: tuple[str, ...]
    status_code: str | None = None
    recipient_code: str | None = None
    reporter_code: str | None = None
    reported_at: datetime | None = None
    description: str | None = None
    staff_department: str | None = None
    staff_name: str | None = None


@dataclass(frozen=True)
class DirectoryEntry:
    """One agency as instances exchange it; ``home_instance`` is never empty on the wire."""

    code: str
    name: str
    level: int
    parent_code: str | None
    active: bool
    home_instance: str
