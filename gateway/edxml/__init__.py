"""edXML (QCVN 102:2016/BTTTT): read, validate and write document and status messages.

The rest of the gateway uses only this API and the dataclasses of :mod:`gateway.edxml.model`;
it never walks XML trees. Readers raise MalformedEdxml (not XML, DOCTYPE), SchemaInvalid (breaks
``xsd/``, with ``issues``) or InvalidEdxml (inconsistent), all :class:`~gateway.errors.GatewayError`.
"""

from gateway.edxml.model import (
    AttachmentInfo,
    Business,
    DocumentMessage,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusMessage,
)
from gateway.edxml.normalize import MessageKind
from gateway.edxml.reader import read_document, read_status
from gateway.edxml.validation import ValidationIssue
from gateway.edxml.writer import AttachmentSource, document_bytes, status_bytes, write_document

__all__ = [
    "AttachmentInfo",
    "AttachmentSource",
    "Business",
    "DocumentMessage",
    "MessageKind",
    "Organization",
    "ResponseFor",
    "StaffInfo",
    "StatusMessage",
    "ValidationIssue",
    "document_bytes",
    "read_document",
    "read_status",
    "status_bytes",
    "write_document",
]
