"""The network of gateways: routing, the relay outbox, inbound custody, directory sync, the relay loop.

The design is docs/federation.md. Nothing here speaks SOAP: the ``/relay`` binding lives in
:mod:`gateway.soap.relay` and calls :class:`gateway.federation.service.FederationService`.
"""
