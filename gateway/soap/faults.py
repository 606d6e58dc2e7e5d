"""SOAP 1.1 faults built from gateway errors, with the same shape whoever raises them.

``faultcode`` is ``soap:<code>`` (e.g. ``soap:Client.SchemaInvalid``), ``faultstring`` the
clerk-readable message, and ``detail`` holds ``GatewayFault{code, message}`` as the WSDL
declares, so stubs that type faults get both.
"""

from __future__ import annotations

from lxml import etree
from spyne import Fault

from gateway.errors import GatewayError
from gateway.soap.streaming import SOAP11_ENV
from gateway.soap.types import NAMESPACE

_SOAP_PREFIX = "soap11env"


def fault_detail(error: GatewayError) -> etree._Element:
    """``<tns:GatewayFault><tns:code/><tns:message/></tns:GatewayFault>`` for ``error``."""
    detail = etree.Element(f"{{{NAMESPACE}}}GatewayFault", nsmap={"tns": NAMESPACE})
    etree.SubElement(detail, f"{{{NAMESPACE}}}code").text = error.code
    etree.SubElement(detail, f"{{{NAMESPACE}}}message").text = error.message
    return detail


def spyne_fault(error: GatewayError) -> Fault:
    """The Spyne fault a handler raises for ``error``.

    A plain ``Fault`` carrying the detail element: raising the declared ``GatewayFault`` class
    itself would make Spyne also write its fields, nil, straight inside ``soap:Fault``, which
    strict SOAP 1.1 parsers (gSOAP with SOAP_XML_STRICT) refuse.
    """
    return Fault(faultcode=error.code, faultstring=error.message, detail=fault_detail(error))


def fault_envelope(error: GatewayError) -> bytes:
    """A complete SOAP 1.1 fault envelope, for errors found before Spyne sees the request."""
    envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={_SOAP_PREFIX: SOAP11_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"{_SOAP_PREFIX}:{error.code}"
    etree.SubElement(fault, "faultstring").text = error.message
    etree.SubElement(fault, "detail").append(fault_detail(error))
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def http_status(error: GatewayError) -> str:
    """HTTP status line for a fault: SOAP 1.1 says 500, except an oversize body gets 413."""
    return "413 Payload Too Large" if error.code == "Client.TooLarge" else "500 Internal Server Error"
