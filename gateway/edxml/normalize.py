"""Deliberate leniency: bring a parsed edXML tree into the SDK's shape before validation.

The official parser matches children by local name, in any order, and Bkav code spells
``Business*`` as well as the SDK's ``Bussiness*`` (docs/edxml-profile.md §2). Senders rely on that, so the gateway
accepts it too, but validates against a strict schema: this module rewrites the *parsed tree*
(never the stored original bytes) to SDK order and spelling, and moves unqualified elements
below the root into the QCVN namespace (they are QCVN elements written without a default
namespace). Elements in any other namespace are left alone for the schema to refuse.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal, cast

from lxml import etree

from gateway.edxml.ns import local_name, namespace_of, q

MessageKind = Literal["document", "status"]

SPELLING = {
    "Business": "Bussiness",
    "BusinessDocType": "BussinessDocType",
    "BusinessDocReason": "BussinessDocReason",
    "BusinessDocumentInfo": "BussinessDocumentInfo",
}
"""Accepted alternative spellings (Bkav) and the SDK spelling they become."""

_ORGANIZATION = (
    "OrganId",
    "OrganizationInCharge",
    "OrganName",
    "OrganAdd",
    "Email",
    "Telephone",
    "Fax",
    "Website",
)

DOCUMENT_HEADER_ORDER = (
    "From",
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
    "ResponseForTask",
    "ApplicationType",
    "ToPlaces",
)
STATUS_HEADER_ORDER = ("From", "ResponseFor", "StaffInfo", "StatusCode", "Description", "Timestamp")

SDK_ORDER: dict[str, tuple[str, ...]] = {
    "edXML": ("edXMLEnvelope", "AttachmentEncoded"),
    "edXMLEnvelope": ("edXMLHeader", "edXMLBody"),
    "edXMLHeader": ("MessageHeader", "TraceHeaderList", "Signature"),
    "From": _ORGANIZATION,
    "To": _ORGANIZATION,
    "Code": ("CodeNumber", "CodeNotation"),
    "PromulgationInfo": ("Place", "PromulgationDate"),
    "DocumentType": ("Type", "TypeDetail", "TypeName"),
    "SignerInfo": ("Competence", "Position", "FullName"),
    "OtherInfo": (
        "Priority",
        "SphereOfPromulgation",
        "TyperNotation",
        "PromulgationAmount",
        "PageAmount",
        "ReplyFors",
        "Direction",
        "ReferenceCodes",
        "Appendixes",
    ),
    "ResponseFor": ("OrganId", "Code", "DocumentId", "PromulgationDate"),
    "StaffInfo": ("Department", "DepartmentId", "Staff", "StaffId", "Email", "Mobile"),
    "TraceHeaderList": ("Paper", "Bussiness", "TraceHeader"),
    "TraceHeader": ("OrganId", "Timestamp"),
    "Bussiness": (
        "DocumentId",
        "BussinessDocType",
        "BussinessDocReason",
        "Paper",
        "StaffInfo",
        "BussinessDocumentInfo",
        "ReplacementInfoList",
    ),
    "BussinessDocumentInfo": ("DocumentInfo", "DocumentReceiver", "ReceiverList"),
    "Receiver": ("OrganId", "ReceiverType"),
    "ReplacementInfo": ("DocumentId", "OrganIdList"),
    "edXMLBody": ("edXMLManifest",),
    "Reference": ("ContentId", "ContentType", "Description", "AttachmentName"),
    "Attachment": (
        "ContentId",
        "AttachmentName",
        "Description",
        "FieldName",
        "MimeType",
        "ContentType",
        "ContentTransferEncoded",
    ),
}
"""Child order the SDK writes, per parent local name (docs/edxml-profile.md §3, §4.1).

``MessageHeader`` depends on the kind.
"""

_KEEP_TEXT = frozenset({"ContentTransferEncoded"})

_IN_QCVN = q("")
"""The Clark prefix ``{QCVN}`` of every QCVN tag: one comparison instead of splitting each tag."""


def _ranks(order: tuple[str, ...]) -> dict[str, int]:
    return {child_name: index for index, child_name in enumerate(order)}


_RANKS = {name: _ranks(order) for name, order in SDK_ORDER.items()}
_HEADER_RANKS: dict[MessageKind, dict[str, int]] = {
    "document": _ranks(DOCUMENT_HEADER_ORDER),
    "status": _ranks(STATUS_HEADER_ORDER),
}


def kind_of(root: etree._Element) -> MessageKind:
    """``status`` when the MessageHeader has a StatusCode child, else ``document`` (any order, any spelling)."""
    for header in root.iter(q("MessageHeader"), "MessageHeader"):
        if any(local_name(child.tag) == "StatusCode" for child in header):
            return "status"
    return "document"


def normalize(root: etree._Element) -> MessageKind:
    """Rewrite ``root`` in place into SDK namespace, spelling, order and trimmed leaf text; return its kind."""
    tag = cast(str, root.tag)  # parsed tags are str; types-lxml types any settable tag value
    if namespace_of(tag) is None:
        root.tag = q(tag)
    _adopt(root)
    kind = kind_of(root)
    _reorder(root, kind)
    return kind


def _adopt(root: etree._Element) -> None:
    """Qualify unqualified descendants, fix spelling, trim leaf text; leave signature insides untouched."""
    stack = list(root)
    while stack:
        element = stack.pop()
        tag = element.tag
        if not isinstance(tag, str):
            continue
        if tag.startswith("{"):
            if not tag.startswith(_IN_QCVN):
                continue
            name = tag[len(_IN_QCVN) :]
        else:
            name = tag
            element.tag = _IN_QCVN + name
        spelled = SPELLING.get(name)
        if spelled is not None:
            element.tag = _IN_QCVN + spelled
        if name == "Signature":
            continue
        if len(element):
            stack.extend(element)
        elif name not in _KEEP_TEXT:
            text = element.text
            if text:
                stripped = text.strip()
                if stripped != text:
                    element.text = stripped


def _reorder(root: etree._Element, kind: MessageKind) -> None:
    """Stable-sort QCVN children into SDK order; unknown elements go last, for the schema to name."""
    header = _HEADER_RANKS[kind]
    stack = [root]
    while stack:
        element = stack.pop()
        tag = cast(str, element.tag)  # only str-tagged elements are stacked
        if not tag.startswith(_IN_QCVN):
            continue
        name = tag[len(_IN_QCVN) :]
        if name == "Signature":
            continue
        children = list(element)
        stack.extend(child for child in children if isinstance(child.tag, str))
        rank = header if name == "MessageHeader" else _RANKS.get(name)
        if rank is None or len(children) < 2:
            continue
        unknown = len(rank)
        ranks = [rank.get(local_name(child.tag), unknown) for child in children]
        if all(earlier <= later for earlier, later in pairwise(ranks)):
            continue
        ordered = [children[index] for index in sorted(range(len(children)), key=ranks.__getitem__)]
        for child in children:
            element.remove(child)
        element.extend(ordered)
