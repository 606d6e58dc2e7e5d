"""SOAP 1.1 faults built from gateway errors with lxml, with the same shape whoever raises them.

``faultcode`` is ``soap11env:<code>`` (e.g. ``soap11env:Client.SchemaInvalid``), ``faultstring``
the clerk-readable message, and ``detail`` holds ``GatewayFault{code, message}`` as the WSDL
declares, so stubs that type faults get both. The Spyne binding puts the same detail element
into the faults it serialises.
"""

from __future__ import annotations

import logging
import uuid

from lxml import etree

from gateway.errors import GatewayError, ServerError
from gateway.soap.namespaces import NAMESPACE
from gateway.soap.streaming import SOAP11_ENV

log = logging.getLogger("gateway.soap")

SOAP_PREFIX = "soap11env"


def fault_detail(error: GatewayError) -> etree._Element:
    """``<tns:GatewayFault><tns:code/><tns:message/></tns:GatewayFault>`` for ``error``."""
    detail = etree.Element(f"{{{NAMESPACE}}}GatewayFault", nsmap={"tns": NAMESPACE})
    etree.SubElement(detail, f"{{{NAMESPACE}}}code").text = error.code
    etree.SubElement(detail, f"{{{NAMESPACE}}}message").text = error.message
    return detail


def fault_envelope(error: GatewayError, *, as_spyne: bool = False) -> bytes:
    """A complete SOAP 1.1 fault envelope, for errors found before or around the Spyne binding.

    ``as_spyne``: the bytes Spyne writes for an operation's fault (the service namespace declared on
    the Envelope, an empty faultactor), for answers given in its place (gateway/soap/binding/fast.py).
    """
    nsmap = {SOAP_PREFIX: SOAP11_ENV, "tns": NAMESPACE} if as_spyne else {SOAP_PREFIX: SOAP11_ENV}
    envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"{SOAP_PREFIX}:{error.code}"
    etree.SubElement(fault, "faultstring").text = error.message
    if as_spyne:
        etree.SubElement(fault, "faultactor").text = ""
    etree.SubElement(fault, "detail").append(fault_detail(error))
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def http_status(error: GatewayError) -> str:
    """HTTP status line for a fault: SOAP 1.1 says 500, except an oversize body gets 413."""
    return "413 Payload Too Large" if error.code == "Client.TooLarge" else "500 Internal Server Error"


def internal_error(where: str, cause: BaseException | None = None) -> ServerError:
    """A ``Server.Internal`` error for an unexpected failure, logged once with a reference.

    The client sees only the reference; the operator finds the traceback (``cause``, or the
    exception being handled) in the log line that carries the same reference.
    """
    reference = uuid.uuid4().hex[:12]
    log.error("internal error in %s (reference %s)", where, reference, exc_info=cause or True)
    return ServerError(
        f"The gateway failed to process the request (reference {reference}); nothing was "
        "changed. Retry later, and quote the reference to the operator if it persists."
    )
