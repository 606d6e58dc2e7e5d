"""The ``/relay`` endpoint as a WSGI callable: gateway instances exchanging consignments. Spyne-free.

It reads requests exactly as the agency endpoint does (:class:`~gateway.soap.endpoint.SoapEndpoint`:
size limit, hostile XML, the ``pushConsignment`` payload decoded straight into the blob store's
staging area, ``fetchConsignment`` payloads streamed out of the blob file), but the caller is a
peer instance: ``PeerHeader{instanceId, secret}`` is checked when the reader reaches ``<Body>``,
before any payload byte is decoded (docs/federation.md).
"""

from __future__ import annotations

from typing import Any

from gateway.exchange.results import Caller
from gateway.exchange.service import StagedDocument
from gateway.federation.service import FederationService
from gateway.soap import wsgi_keys
from gateway.soap.binding import SpyneBinding
from gateway.soap.binding.relay import RELAY_OPERATIONS, RELAY_WSDL_LOCATION, build_relay_application
from gateway.soap.context import RelayContext
from gateway.soap.credentials import HeaderCredentials
from gateway.soap.endpoint import SLIM_BODY_LIMIT, SoapEndpoint
from gateway.soap.namespaces import RELAY_NAMESPACE
from gateway.soap.streaming import Payload

RELAY_PAYLOADS = {"pushConsignment": Payload(RELAY_NAMESPACE, "pushConsignment", "payload")}


class RelayEndpoint(SoapEndpoint):
    """WSGI callable for ``/relay``: GET ?wsdl, POST a relay SOAP request from a peer instance."""

    operations = RELAY_OPERATIONS
    payloads = RELAY_PAYLOADS

    def __init__(
        self,
        federation: FederationService,
        max_request_bytes: int,
        *,
        public_url: str = "",
        trusted_proxy: bool = False,
    ) -> None:
        """``public_url`` is the agency endpoint's (``.../soap``); the relay's is beside it (``.../relay``)."""
        super().__init__(
            federation.exchange,
            max_request_bytes,
            public_url=public_url.rsplit("/", 1)[0] + "/relay" if public_url else "",
            trusted_proxy=trusted_proxy,
            binding=SpyneBinding(SLIM_BODY_LIMIT, build_relay_application(), RELAY_WSDL_LOCATION),
        )
        self.federation = federation

    def _authenticate(self, credentials: HeaderCredentials) -> Caller:
        """The peer instance the PeerHeader proves, as the caller of this request."""
        peer = self.federation.authenticate_peer(credentials.agency_code, credentials.secret)
        return Caller(agency_id=0, code=peer, name=f"gateway instance {peer}")

    def _record_caller(self, environ: dict[str, Any], caller: Caller) -> None:
        environ[wsgi_keys.PEER] = caller.code

    def _context(self, staged: StagedDocument | None, caller: Caller) -> RelayContext:
        return RelayContext(self.streamer.placeholder, federation=self.federation, peer=caller.code, staged=staged)
