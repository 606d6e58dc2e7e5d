"""The ``/relay`` contract in Spyne: the operations gateway instances call on each other.

Its own Application and WSDL (``/relay?wsdl``, wsdl/edxml-relay.wsdl), built like the agency
binding (document/literal wrapped, validated input, every refusal a fault with a gateway code).
The Spyne-free endpoint (:mod:`gateway.soap.relay`) streams requests, authenticates the calling
peer at ``<Body>`` and hands each handler a :class:`~gateway.soap.context.RelayContext`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from spyne import Application, Array, Boolean, ByteArray, Integer32, Long, ServiceBase, rpc

from gateway.errors import MalformedRequest
from gateway.federation.model import ConsignmentHeader as Header
from gateway.federation.model import DirectoryEntry as Entry
from gateway.soap.binding import relay_types as rt
from gateway.soap.binding import types as t
from gateway.soap.binding.application import build_application
from gateway.soap.binding.wsdl import render_wsdl
from gateway.soap.context import RelayContext
from gateway.soap.namespaces import RELAY_NAMESPACE

RELAY_SERVICE_NAME = "EdxmlGatewayRelay"
RELAY_WSDL_LOCATION = "http://localhost:8080/relay"
"""The address written into the published relay WSDL; served copies carry the gateway's own."""

_rpc = partial(rpc, _throws=[t.GatewayFault], _wsdl_part_name="parameters")


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
        peer = context.peer
        if context.staged is None:
            raise MalformedRequest("pushConsignment needs the edXML file in its payload element.")
        received = context.federation.receive(peer, to_header(consignment), context.staged)
        return rt.PushReceipt(consignmentId=received.consignment_id, duplicate=received.duplicate)

    @_rpc(Integer32(min_occurs=0, nillable=False), _returns=Array(rt.ConsignmentHeader))
    def pullConsignments(ctx: Any, maxItems: int | None) -> list[rt.ConsignmentHeader]:
        """Lease the consignments routed to the calling instance (they come back if not acknowledged)."""
        context = _context(ctx)
        return [to_wire(h) for h in context.federation.pull(context.peer, maxItems)]

    @_rpc(t.Required, _returns=rt.FetchedConsignment)
    def fetchConsignment(ctx: Any, consignmentId: str) -> rt.FetchedConsignment:
        """A leased consignment's header and payload."""
        context = _context(ctx)
        header, path, size = context.federation.fetch(context.peer, consignmentId)
        return rt.FetchedConsignment(header=to_wire(header), payload=context.stream_file(path, size))

    @_rpc(t.Required, _returns=Boolean(min_occurs=1, nillable=False))
    def acknowledgeConsignment(ctx: Any, consignmentId: str) -> bool:
        """The calling instance stored the consignment: custody has moved to it."""
        context = _context(ctx)
        return context.federation.acknowledge(context.peer, consignmentId)

    @_rpc(Array(rt.DirectoryEntry, min_occurs=1, nillable=False), _returns=Integer32(min_occurs=1, nillable=False))
    def registerAgencies(ctx: Any, agencies: list[Any]) -> int:
        """A province registers its own agencies; returns how many were accepted."""
        context = _context(ctx)
        entries = [
            Entry(a.code, a.name, int(a.level), a.parentCode, bool(a.active), a.homeInstance) for a in agencies or ()
        ]
        return context.federation.register_agencies(context.peer, entries)

    @_rpc(Long(min_occurs=1, nillable=False), _returns=rt.DirectoryPage)
    def getDirectory(ctx: Any, sinceVersion: int) -> rt.DirectoryPage:
        """Agencies changed after ``sinceVersion``, and the version to ask from next."""
        context = _context(ctx)
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


RELAY_OPERATIONS: frozenset[str] = frozenset(EdxmlGatewayRelayService.public_methods)


def build_relay_application() -> Application:
    """The relay service's Spyne application."""
    return build_application(EdxmlGatewayRelayService, RELAY_NAMESPACE, RELAY_SERVICE_NAME)


def published_relay_wsdl() -> bytes:
    """The relay contract as published in wsdl/: the WSDL with the placeholder address."""
    return render_wsdl(build_relay_application(), RELAY_WSDL_LOCATION)
