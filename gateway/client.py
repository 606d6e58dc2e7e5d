"""A SOAP client for one agency, built on the gateway's own WSDL with zeep.

This is what an agency's software does, written once: the agency commands of the CLI and the
reference agent (:mod:`gateway.agent`) both use it. Faults come back as :class:`Fault` with the
gateway's stable code; a gateway that cannot be reached, or answers something that is not SOAP,
raises :class:`Unreachable`, which callers treat as "try again later".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

NS = "urn:edxml-gateway:soap:v1"
CLIENT_EXTRA_MISSING = "the agency client needs zeep (not installed): pip install 'edxml-gateway[client]'"


class ClientError(Exception):
    """Base of the errors this client raises."""


class Fault(ClientError):
    """A SOAP fault from the gateway; ``code`` is the stable code without its namespace prefix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"error {code}: {message}")
        self.code = code
        self.message = message


class Unreachable(ClientError):
    """The gateway did not answer, or answered with something that is not a SOAP response."""


@dataclass(frozen=True)
class Fetched:
    """An item's edXML file as received, its sha256 already checked against the gateway's."""

    item_id: str
    kind: str
    document_id: str
    sha256: str
    edxml: bytes


def items(value: Any) -> list[Any]:
    """The elements of a SOAP array however zeep shaped it (None, a list, or a wrapper object)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    for key in (
        "PendingItem",
        "StatusEntry",
        "Agency",
        "CertificationCheck",
        "ConsignmentHeader",
        "DirectoryEntry",
        "string",
    ):
        inner = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        if inner is not None:
            return list(inner) if isinstance(inner, list) else [inner]
    return [value]


@contextmanager
def _translated(url: str) -> Iterator[None]:
    """zeep's and requests' exceptions as :class:`Fault`, or :class:`Unreachable` saying what to check."""
    try:
        import requests
        from zeep.exceptions import Error as ZeepError
        from zeep.exceptions import Fault as ZeepFault
        from zeep.exceptions import TransportError
    except ModuleNotFoundError as error:  # pragma: no cover - depends on the install
        raise ClientError(CLIENT_EXTRA_MISSING) from error
    try:
        yield
    except ZeepFault as fault:
        code = str(fault.code or "Server").rpartition(":")[2]
        raise Fault(code, str(fault.message or "").strip()) from None
    except requests.exceptions.ConnectionError:
        raise Unreachable(
            f"cannot reach the gateway at {url} (is it running? check --url or EDXML_GATEWAY_URL)."
        ) from None
    except requests.exceptions.Timeout:
        raise Unreachable(f"the gateway at {url} did not answer in time.") from None
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else "an error"
        raise Unreachable(f"{url} answered HTTP {status}; is --url the gateway's /soap endpoint?") from None
    except requests.exceptions.RequestException as error:
        raise Unreachable(f"request to {url} failed: {error}") from None
    except TransportError as error:
        raise Unreachable(f"{url} answered HTTP {error.status_code}; is --url the gateway's /soap endpoint?") from None
    except ZeepError as error:
        raise Unreachable(f"unexpected answer from {url}: {error}") from None


class AgencyClient:
    """Calls the gateway at ``url`` (the ``/soap`` endpoint) as ``agency``.

    The WSDL is loaded on first use, so a client can be created while the gateway is down.
    """

    def __init__(self, url: str, agency: str, secret: str, timeout: float = 30, operation_timeout: float = 600) -> None:
        self.url = url
        self.agency = agency
        self._secret = secret
        self._timeouts = (timeout, operation_timeout)
        self._service: Any = None
        self._client: Any = None
        self._header: Any = None

    def connect(self) -> Any:
        """Load the WSDL now (calls do it on first use); Unreachable when the gateway cannot be read."""
        if self._service is None:
            if not self.url.lower().startswith(("http://", "https://")):
                # zeep would read anything else as a local file path and fail with FileNotFoundError.
                raise Unreachable(
                    f"{self.url!r} is not an http:// or https:// address; --url (or EDXML_GATEWAY_URL) is the "
                    "gateway's /soap endpoint, e.g. http://127.0.0.1:8080/soap"
                )
            try:
                import zeep
                from zeep.transports import Transport
            except ModuleNotFoundError as error:  # pragma: no cover - depends on the install
                raise ClientError(CLIENT_EXTRA_MISSING) from error
            with _translated(self.url):
                timeout, operation_timeout = self._timeouts
                transport = Transport(timeout=timeout, operation_timeout=operation_timeout)
                client = zeep.Client(
                    f"{self.url}?wsdl", transport=transport, settings=zeep.Settings(xml_huge_tree=True)
                )
                binding = next(iter(client.wsdl.bindings), None)
                if binding is None:
                    raise Unreachable(
                        f"{self.url}?wsdl is not the gateway's WSDL (it declares no SOAP binding); "
                        "is --url the gateway's /soap endpoint?"
                    )
                self._service = client.create_service(binding, self.url)
                self._header = client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=self.agency, secret=self._secret)
                self._client = client
        return self._service

    def call(self, operation: str, **arguments: Any) -> Any:
        """Call ``operation`` with the agency's AuthHeader; faults raise :class:`Fault`."""
        service = self.connect()
        with _translated(self.url):
            return getattr(service, operation)(**arguments, _soapheaders=[self._header])

    def send(self, edxml: bytes) -> Any:
        """``sendDocument``: the receipt (documentId, edxmlDocumentId, recipients, duplicate)."""
        return self.call("sendDocument", document=edxml)

    def pending(self, max_items: int | None = None) -> list[Any]:
        """``getPendingDocuments``: lease what waits for the agency."""
        return items(self.call("getPendingDocuments", maxItems=max_items))

    def fetch(self, item_id: str) -> Fetched:
        """``getDocument``, with the bytes checked against the sha256 the gateway states."""
        result = self.call("getDocument", itemId=item_id)
        data: bytes = result.edxml
        if hashlib.sha256(data).hexdigest() != result.sha256:
            raise Unreachable(f"the edXML of item {item_id} arrived damaged (sha256 mismatch); fetch it again")
        return Fetched(result.itemId, result.kind, result.documentId, result.sha256, data)

    def acknowledge(self, item_id: str) -> None:
        """``confirmReceived``: the item leaves the pending list for good."""
        self.call("confirmReceived", itemId=item_id)

    def report(
        self,
        document_id: str,
        code: str,
        description: str | None = None,
        staff: str | None = None,
        department: str | None = None,
    ) -> Any:
        """``updateStatus``: report a processing status (or 13 to recall, as the sender)."""
        arguments: dict[str, Any] = {"documentId": document_id, "statusCode": code, "description": description}
        if staff or department:
            arguments["staff"] = self.staff(department=department, staff=staff)
        return self.call("updateStatus", **arguments)

    def staff(self, **fields: str | None) -> Any:
        """A wire ``StaffInfo`` (department, staff, email, mobile) for updateStatus."""
        self.connect()
        return self._client.get_type(f"{{{NS}}}StaffInfo")(**fields)

    def history(self, document_id: str) -> list[Any]:
        """``getStatusHistory``."""
        return items(self.call("getStatusHistory", documentId=document_id))

    def agencies(self, parent_code: str | None = None) -> list[Any]:
        """``getAgencies``."""
        return items(self.call("getAgencies", parentCode=parent_code))
