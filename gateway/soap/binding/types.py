"""The wire types of the SOAP contract (namespace ``urn:edxml-gateway:soap:v1``).

Every field is declared with its real cardinality (``min_occurs``/``nillable``) so the WSDL
tells stub generators the truth: required fields are not ``nillable`` and optional ones are
``minOccurs="0"``. Integers are ``xs:int``/``xs:long`` (``xs:integer`` becomes a string in .NET).
Changing anything here changes the published WSDL: update wsdl/ (the drift test says how).
"""

from __future__ import annotations

from spyne import Array, Boolean, ByteArray, ComplexModel, Date, DateTime, Fault, Integer32, Long, Unicode

from gateway.soap.namespaces import NAMESPACE

Required = Unicode(min_occurs=1, nillable=False)
Optional = Unicode(min_occurs=0, nillable=False)


class AuthHeader(ComplexModel):
    """SOAP header with the calling agency's code and secret (a WS-Security UsernameToken works too)."""

    __namespace__ = NAMESPACE
    _type_info = [("agencyCode", Required), ("secret", Required)]


class GatewayFault(Fault):
    """Fault detail: the stable fault code again, and the message, for stubs that type faults."""

    __namespace__ = NAMESPACE
    _type_info = [("code", Required), ("message", Required)]


class SendReceipt(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("documentId", Required),
        ("edxmlDocumentId", Required),
        ("duplicate", Boolean(min_occurs=1, nillable=False)),
        ("recipients", Array(Required, min_occurs=1, nillable=False)),
        ("signer", Optional),
    ]


class PendingItem(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("itemId", Required),
        ("kind", Required),
        ("documentId", Required),
        ("edxmlDocumentId", Required),
        ("senderCode", Required),
        ("senderName", Required),
        ("code", Required),
        ("subject", Required),
        ("promulgationDate", Date(min_occurs=1, nillable=False)),
        ("dueDate", Date(min_occurs=0, nillable=False)),
        ("priority", Integer32(min_occurs=0, nillable=False)),
        ("businessType", Integer32(min_occurs=1, nillable=False)),
        ("statusCode", Optional),
        ("statusFrom", Optional),
        ("size", Long(min_occurs=1, nillable=False)),
        ("queuedAt", DateTime(min_occurs=1, nillable=False)),
        ("leaseExpiresAt", DateTime(min_occurs=1, nillable=False)),
        ("attempts", Integer32(min_occurs=1, nillable=False)),
        ("signer", Optional),
    ]


class FetchedDocument(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("itemId", Required),
        ("kind", Required),
        ("documentId", Required),
        ("sha256", Required),
        ("size", Long(min_occurs=1, nillable=False)),
        ("edxml", ByteArray(min_occurs=1, nillable=False)),
    ]


class StaffInfo(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("department", Optional),
        ("staff", Optional),
        ("email", Optional),
        ("mobile", Optional),
    ]


class StatusReceipt(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("documentId", Required),
        ("agencyCode", Required),
        ("statusCode", Required),
        ("reportedAt", DateTime(min_occurs=1, nillable=False)),
        ("notified", Array(Required, min_occurs=1, nillable=False)),
    ]


class StatusEntry(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("documentId", Required),
        ("recipientCode", Required),
        ("recipientName", Required),
        ("statusCode", Required),
        ("statusName", Required),
        ("description", Optional),
        ("staffDepartment", Optional),
        ("staffName", Optional),
        ("reportedBy", Required),
        ("reportedAt", DateTime(min_occurs=1, nillable=False)),
    ]


class Agency(ComplexModel):
    """A directory entry. ``homeInstance`` (the gateway serving the agency) is an addition at the
    end of the sequence, sent only to a caller that asks for it (getAgencies includeHomeInstance):
    a strict parser built from the earlier WSDL (zeep's default) refuses an element it does not know."""

    __namespace__ = NAMESPACE
    _type_info = [
        ("code", Required),
        ("name", Required),
        ("level", Integer32(min_occurs=1, nillable=False)),
        ("parentCode", Optional),
        ("active", Boolean(min_occurs=1, nillable=False)),
        ("homeInstance", Optional),
    ]


class CertificationCheck(ComplexModel):
    """One expectation of a certification run and where it stands (pending, passed, failed, skipped)."""

    __namespace__ = NAMESPACE
    _type_info = [
        ("key", Required),
        ("title", Required),
        ("state", Required),
        ("deadline", DateTime(min_occurs=1, nillable=False)),
        ("decidedAt", DateTime(min_occurs=0, nillable=False)),
    ]


class CertificationRun(ComplexModel):
    """A certification run of the calling agency; ``grade`` is provisional while ``active``."""

    __namespace__ = NAMESPACE
    _type_info = [
        ("runId", Required),
        ("agencyCode", Required),
        ("startedAt", DateTime(min_occurs=1, nillable=False)),
        ("deadline", DateTime(min_occurs=1, nillable=False)),
        ("active", Boolean(min_occurs=1, nillable=False)),
        ("grade", Required),
        ("checks", Array(CertificationCheck, min_occurs=1, nillable=False)),
    ]
