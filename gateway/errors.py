"""Domain errors, each with the stable fault code a client sees.

Every refusal the gateway makes is a :class:`GatewayError` subclass. The SOAP layer turns it
into a SOAP Fault whose ``faultcode`` is ``soap:<code>`` and whose detail repeats the code, so a
client can branch on the code and show the message to a clerk. Codes are part of the published
contract (README, "Fault codes"): never rename one.
"""

from __future__ import annotations


class GatewayError(Exception):
    """A request the gateway refuses; ``code`` is stable, ``message`` is for people."""

    code: str = "Server.Internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(GatewayError):
    """The caller can fix it by changing the request."""

    code = "Client.BadRequest"


class MalformedRequest(ClientError):
    """The SOAP request is not well-formed XML, not SOAP, or names no known operation."""

    code = "Client.MalformedRequest"


class TooLarge(ClientError):
    """The request body exceeds the configured maximum size."""

    code = "Client.TooLarge"


class AuthenticationFailed(ClientError):
    """No credentials, unknown agency, wrong secret, or a disabled agency."""

    code = "Client.AuthenticationFailed"


class MalformedEdxml(ClientError):
    """The edXML payload is not base64, not well-formed XML, or uses forbidden XML features."""

    code = "Client.MalformedEdxml"


class SchemaInvalid(ClientError):
    """The edXML payload does not conform to the QCVN 102 schema in xsd/."""

    code = "Client.SchemaInvalid"


class InvalidEdxml(ClientError):
    """The edXML payload is schema-valid but inconsistent (e.g. a manifest reference without attachment)."""

    code = "Client.InvalidEdxml"


class SenderMismatch(ClientError):
    """The edXML ``From/OrganId`` is not the authenticated agency: an agency may only send as itself."""

    code = "Client.SenderMismatch"


class UnknownRecipient(ClientError):
    """A ``To/OrganId`` is not in the directory, or is disabled."""

    code = "Client.UnknownRecipient"


class NotFound(ClientError):
    """No such item for this agency. Also used for another agency's items, so existence never leaks."""

    code = "Client.NotFound"


class Forbidden(ClientError):
    """The agency may see the item but not perform this action on it."""

    code = "Client.Forbidden"


class IllegalTransition(ClientError):
    """The status change breaks the processing workflow (e.g. 06 completed back to 04 assigned)."""

    code = "Client.IllegalTransition"


class InvalidStatus(ClientError):
    """Unknown status code, or status fields that fail validation."""

    code = "Client.InvalidStatus"


class SignatureInvalid(ClientError):
    """The document carries an XML-DSig signature that does not verify."""

    code = "Client.SignatureInvalid"


class SignatureRequired(ClientError):
    """The sender's agency is configured to sign its documents, and this one is unsigned."""

    code = "Client.SignatureRequired"


class DocumentIdConflict(ClientError):
    """The sender already sent a different document under this DocumentId: a resend must be the same bytes."""

    code = "Client.DocumentIdConflict"


class RelayLoop(ClientError):
    """A relayed consignment already passed this instance, or has travelled too many hops."""

    code = "Client.RelayLoop"


class CertificationInProgress(ClientError):
    """A certification run for this agency is already active (docs/certification.md)."""

    code = "Client.CertificationInProgress"


class ServerError(GatewayError):
    """The gateway could not complete the request; the client may retry later."""

    code = "Server.Internal"


class Unavailable(ServerError):
    """The store is unreachable or busy; nothing was stored, retry later."""

    code = "Server.Unavailable"


def fault_codes() -> frozenset[str]:
    """Every fault code a gateway error can carry, read from the classes themselves.

    The single list of codes: metrics accept only these as label values, and a test checks each
    has a row in README's fault-code table. Subclasses count once their module is imported, which
    is why every error the SOAP layer can answer is defined in this module.
    """
    found: set[str] = set()
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        found.add(cls.code)
        pending.extend(cls.__subclasses__())
    return frozenset(found)
