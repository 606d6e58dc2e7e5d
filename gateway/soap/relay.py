"""The ``/relay`` endpoint: gateway instances exchanging consignments (docs/federation.md).

Its own small Spyne application and WSDL (``/relay?wsdl``, wsdl/edxml-relay.wsdl), with the
agency endpoint's conventions: requests are streamed and size-checked before Spyne sees them
(the ``pushConsignment`` payload is decoded straight into the blob store's staging area), the
``fetchConsignment`` payload is streamed out of the blob file, and every refusal is a SOAP fault
with a stable gateway code. Callers authenticate with ``PeerHeader{instanceId, secret}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lxml import etree
from spyne import Array, Boolean, ByteArray, Integer32, Long, ServiceBase, rpc
from spyne.server.wsgi import WsgiApplication

from gateway.errors import GatewayError, MalformedRequest
from gateway.federation.model import ConsignmentHeader as Header
from gateway.federation.model import DirectoryEntry as Entry
from gateway.federation.service import FederationService
from gateway.soap import relay_types as rt
from gateway.soap import types as t
from gateway.soap.application import (
    SLIM_BODY_LIMIT,
    SoapEndpoint,
    StartResponse,
    _content_length,
    _fault_response,
    _GatewayApplication,
    _Soap11,
    _SpyneWsgi,
    render_wsdl,
)
from gateway.soap.context import OutboundFile
from gateway.soap.faults import http_status
from gateway.soap.streaming import Payload, ResponseStreamer, stage_request
from gateway.store.blobs import BlobWriter

RELAY_SERVICE_NAME = "EdxmlGatewayRelay"
RELAY_WSDL_LOCATION = "http://localhost:8080/relay"
RELAY_PAYLOADS = {"pushConsignment": Payload(rt.RELAY_NAMESPACE, "pushConsignment", "payload")}

_rpc = partial(rpc, _throws=[t.GatewayFault], _wsdl_part_name="parameters")


@dataclass
class RelayContext:
    """What one relay call carries besides its parameters."""

    federation: FederationService
    credentials: tuple[str | None, str | None]
    staged: BlobWriter | None
    placeholder: bytes
    environ: dict[str, Any]
    outbound: list[OutboundFile] = field(default_factory=list)

    def peer(self) -> str:
        peer = self.federation.authenticate_peer(*self.credentials)
        self.environ["gateway.peer"] = peer
        return peer

    def stream_file(self, path: Path, size: int) -> bytes:
        self.outbound.append(OutboundFile(path, size))
        return self.placeholder


def _context(ctx: Any) -> RelayContext:
    context: RelayContext = ctx.udc
    return context


def to_header(wire: Any) -> Header:
    """The domain header of a wire ConsignmentHeader."""
    return Header(
        consignment_id=wire.consignmentId,
        kind=wire.kind,
        origin_instance=wire.originInstance,
        origin_document_id=wire.originDocumentId,
        sender_code=wire.senderCode,
        recipients=tuple(wire.recipients or ()),
        payload_sha256=wire.payloadSha256,
        payload_size=int(wire.payloadSize),
        hop_count=int(wire.hopCount),
        path=tuple(wire.path or ()),
        status_code=wire.statusCode,
        recipient_code=wire.recipientCode,
        reporter_code=wire.reporterCode,
        reported_at=wire.reportedAt,
        description=wire.description,
        staff_department=wire.staffDepartment,
        staff_name=wire.staffName,
    )


def to_wire(header: Header) -> rt.ConsignmentHeader:
    return rt.ConsignmentHeader(
        consignmentId=header.consignment_id,
        kind=header.kind,
        originInstance=header.origin_instance,
        originDocumentId=header.origin_document_id,
        senderCode=header.sender_code,
        recipients=list(header.recipients),
        payloadSha256=header.payload_sha256,
        payloadSize=header.payload_size,
        hopCount=header.hop_count,
        path=list(header.path),
        statusCode=header.status_code,
        recipientCode=header.recipient_code,
        reporterCode=header.reporter_code,
        reportedAt=header.reported_at,
        description=header.description,
        staffDepartment=header.staff_department,
        staffName=header.staff_name,
    )


class EdxmlGatewayRelayService(ServiceBase):
    """Consignments between gateway instances: push up, pull down (lease + fetch + ack), directory."""

    __in_header__ = rt.PeerHeader

    @_rpc(
        rt.ConsignmentHeader.customize(min_occurs=1, nillable=False),
        ByteArray(min_occurs=1, nillable=False),
        _returns=rt.PushReceipt,
    )
    def pushConsignment(ctx: Any, consignment: Any, payload: Any) -> rt.PushReceipt:
        """Hand a consignment to this instance; answered once it is stored durably (duplicate=true on a repeat)."""
        context = _context(ctx)
        peer = context.peer()
        if context.staged is None:
            raise MalformedRequest("pushConsignment needs the edXML file in its payload element.")
        received = context.federation.receive(peer, to_header(consignment), context.staged)
        return rt.PushReceipt(consignmentId=received.consignment_id, duplicate=received.duplicate)

    @_rpc(Integer32(min_occurs=0, nillable=False), _returns=Array(rt.ConsignmentHeader))
    def pullConsignments(ctx: Any, maxItems: int | None) -> list[rt.ConsignmentHeader]:
        """Lease the consignments routed to the calling instance (they come back if not acknowledged)."""
        context = _context(ctx)
        return [to_wire(h) for h in context.federation.pull(context.peer(), maxItems)]

    @_rpc(t.Required, _returns=rt.FetchedConsignment)
    def fetchConsignment(ctx: Any, consignmentId: str) -> rt.FetchedConsignment:
        """A leased consignment's header and payload."""
        context = _context(ctx)
        header, path, size = context.federation.fetch(context.peer(), consignmentId)
        return rt.FetchedConsignment(header=to_wire(header), payload=context.stream_file(path, size))

    @_rpc(t.Required, _returns=Boolean(min_occurs=1, nillable=False))
    def acknowledgeConsignment(ctx: Any, consignmentId: str) -> bool:
        """The calling instance stored the consignment: custody has moved to it."""
        context = _context(ctx)
        return context.federation.acknowledge(context.peer(), consignmentId)

    @_rpc(Array(rt.DirectoryEntry, min_occurs=1, nillable=False), _returns=Integer32(min_occurs=1, nillable=False))
    def registerAgencies(ctx: Any, agencies: list[Any]) -> int:
        """A province registers its own agencies; returns how many were accepted."""
        context = _context(ctx)
        entries = [
            Entry(a.code, a.name, int(a.level), a.parentCode, bool(a.active), a.homeInstance) for a in agencies or ()
        ]
        return context.federation.register_agencies(context.peer(), entries)

    @_rpc(Long(min_occurs=1, nillable=False), _returns=rt.DirectoryPage)
    def getDirectory(ctx: Any, sinceVersion: int) -> rt.DirectoryPage:
        """Agencies changed after ``sinceVersion``, and the version to ask from next."""
        context = _context(ctx)
        context.peer()
        version, entries = context.federation.directory_page(int(sinceVersion))
        return rt.DirectoryPage(
            version=version,
            entries=[
                rt.DirectoryEntry(
                    code=e.code,
                    name=e.name,
                    level=e.level,
                    parentCode=e.parent_code,
                    active=e.active,
                    homeInstance=e.home_instance,
                )
                for e in entries
            ],
        )


class _RelayApplication(_GatewayApplication):
    """Records the fault code for the access log and metrics before the fault leaves."""

    def call_wrapper(self, ctx: Any) -> Any:
        try:
            return super().call_wrapper(ctx)
        except Exception as error:
            code = getattr(error, "faultcode", None)
            if code and ctx.transport is not None:
                ctx.transport.req_env["gateway.fault_code"] = code
            raise


def build_relay_application() -> _GatewayApplication:
    application = _RelayApplication(
        [EdxmlGatewayRelayService],
        tns=rt.RELAY_NAMESPACE,
        name=RELAY_SERVICE_NAME,
        in_protocol=_Soap11(validator="lxml"),
        out_protocol=_Soap11(),
    )
    application.transport = WsgiApplication.transport
    for prefix in ("wsdlsoap12", "soap12env", "soap12enc"):
        application.interface.nsmap.pop(prefix, None)
    return application


def render_relay_wsdl(location: str = RELAY_WSDL_LOCATION) -> bytes:
    return render_wsdl(build_relay_application(), location)


class RelayEndpoint(SoapEndpoint):
    """WSGI callable for ``/relay``: GET ?wsdl, POST a relay SOAP request."""

    def __init__(self, federation: FederationService, max_request_bytes: int) -> None:
        self.federation = federation
        self.exchange = federation.exchange
        self.max_request_bytes = max_request_bytes
        self.application = build_relay_application()
        self.application.event_manager.add_listener("method_call", self._attach_context)
        self.spyne = _SpyneWsgi(self.application, max_content_length=SLIM_BODY_LIMIT)
        self.streamer = ResponseStreamer()
        self.wsdl = render_wsdl(self.application, RELAY_WSDL_LOCATION)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("QUERY_STRING", "").lower() == "wsdl":
            from wsgiref.util import request_uri

            body = self.wsdl.replace(RELAY_WSDL_LOCATION.encode(), request_uri(environ, include_query=False).encode())
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
            return [body]
        return super().__call__(environ, start_response)

    def _call(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        staged = None
        try:
            request = stage_request(
                environ["wsgi.input"],
                _content_length(environ),
                self.max_request_bytes,
                RELAY_PAYLOADS,
                self.federation.begin_staging,
                environ.get("HTTP_SOAPACTION"),
                envelope_limit=SLIM_BODY_LIMIT,
            )
            staged = request.staged
            if request.operation:
                environ["gateway.operation"] = request.operation
            return self._dispatch(environ, start_response, request.body, staged)
        except GatewayError as error:
            environ["gateway.fault_code"] = error.code
            return _fault_response(start_response, error, http_status(error))
        finally:
            if staged is not None:
                staged.discard()

    def _attach_context(self, ctx: Any) -> None:
        environ = ctx.transport.req_env
        context = RelayContext(
            federation=self.federation,
            credentials=_peer_credentials(ctx.in_header_doc),
            staged=environ.get("gateway.staged"),
            placeholder=self.streamer.placeholder,
            environ=environ,
        )
        environ["gateway.context"] = context
        ctx.udc = context


def _peer_credentials(header_elements: Iterable[etree._Element] | None) -> tuple[str | None, str | None]:
    for element in header_elements or ():
        if isinstance(element.tag, str) and element.tag == f"{{{rt.RELAY_NAMESPACE}}}PeerHeader":
            return _text(element, "instanceId"), _text(element, "secret")
    return None, None


def _text(parent: etree._Element, name: str) -> str | None:
    child = parent.find(f"{{{rt.RELAY_NAMESPACE}}}{name}")
    if child is None or child.text is None:
        return None
    return child.text.strip() or None
