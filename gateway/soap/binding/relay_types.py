"""Wire types of the relay contract between gateway instances (namespace ``urn:edxml-gateway:relay:v1``).

Changing anything here changes wsdl/edxml-relay.wsdl (``tools/write_wsdl.py`` regenerates it).
Routing facts travel in ``ConsignmentHeader`` beside the payload, never inside the edXML.
"""

from __future__ import annotations

from spyne import Array, Boolean, ByteArray, ComplexModel, DateTime, Integer32, Long

from gateway.soap.binding.types import Optional, Required
from gateway.soap.namespaces import RELAY_NAMESPACE


class PeerHeader(ComplexModel):
    """SOAP header: the calling instance's id and the secret the national instance issued to it."""

    __namespace__ = RELAY_NAMESPACE
    _type_info = [("instanceId", Required), ("secret", Required)]


class ConsignmentHeader(ComplexModel):
    __namespace__ = RELAY_NAMESPACE
    _type_info = [
        ("consignmentId", Required),
        ("kind", Required),
        ("originInstance", Required),
        ("originDocumentId", Required),
        ("senderCode", Required),
        ("recipients", Array(Required, min_occurs=1, nillable=False)),
        ("payloadSha256", Required),
        ("payloadSize", Long(min_occurs=1, nillable=False)),
        ("hopCount", Integer32(min_occurs=1, nillable=False)),
        ("path", Array(Required, min_occurs=1, nillable=False)),
        ("statusCode", Optional),
        ("recipientCode", Optional),
        ("reporterCode", Optional),
        ("reportedAt", DateTime(min_occurs=0, nillable=False)),
        ("description", Optional),
        ("staffDepartment", Optional),
        ("staffName", Optional),
    ]


class PushReceipt(ComplexModel):
    __namespace__ = RELAY_NAMESPACE
    _type_info = [("consignmentId", Required), ("duplicate", Boolean(min_occurs=1, nillable=False))]


class FetchedConsignment(ComplexModel):
    __namespace__ = RELAY_NAMESPACE
    _type_info = [
        ("header", ConsignmentHeader.customize(min_occurs=1, nillable=False)),
        ("payload", ByteArray(min_occurs=1, nillable=False)),
    ]


class DirectoryEntry(ComplexModel):
    __namespace__ = RELAY_NAMESPACE
    _type_info = [
        ("code", Required),
        ("name", Required),
        ("level", Integer32(min_occurs=1, nillable=False)),
        ("parentCode", Optional),
        ("active", Boolean(min_occurs=1, nillable=False)),
        ("homeInstance", Required),
    ]


class DirectoryPage(ComplexModel):
    __namespace__ = RELAY_NAMESPACE
    _type_info = [
        ("version", Long(min_occurs=1, nillable=False)),
        ("entries", Array(DirectoryEntry, min_occurs=1, nillable=False)),
    ]
