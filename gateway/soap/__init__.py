"""The SOAP 1.1 endpoint.

Spyne is confined to :mod:`gateway.soap.binding` (wire types, operations, Spyne's Application and
protocol subclasses, WSDL rendering). Everything else here is Spyne-free: the WSGI endpoint
(:mod:`~gateway.soap.endpoint`), fault envelopes built with lxml (:mod:`~gateway.soap.faults`),
the streaming envelope reader and the credentials header. Code outside this package uses only
what is exported below and never touches Spyne.
"""

from __future__ import annotations

from gateway.soap import wsgi_keys
from gateway.soap.binding import OPERATIONS, RELAY_OPERATIONS
from gateway.soap.namespaces import NAMESPACE

__all__ = ["NAMESPACE", "OPERATIONS", "RELAY_OPERATIONS", "wsgi_keys"]
