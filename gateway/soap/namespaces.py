"""XML namespaces of the SOAP contract, shared by the Spyne binding and the Spyne-free code around it."""

from __future__ import annotations

NAMESPACE = "urn:edxml-gateway:soap:v1"
"""Target namespace of the WSDL: every wire type, the AuthHeader and GatewayFault live in it."""

RELAY_NAMESPACE = "urn:edxml-gateway:relay:v1"
"""The relay contract between gateway instances (wsdl/edxml-relay.wsdl)."""
