"""The SOAP operations: authenticate, call the exchange service, map results to wire types.

No rules live here; every decision is the exchange service's. Handlers read the per-request
context (``ctx.udc``, a :class:`~gateway.soap.context.RequestContext` the endpoint builds): the
exchange service, the caller (authenticated before any handler runs), the staged edXML payload
and the streaming hook for large edXML responses.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from spyne import Array, Boolean, ByteArray, Integer32, ServiceBase, rpc

from gateway.certification import Certifications, RunView
from gateway.edxml.model import StaffInfo as StaffInfoModel
from gateway.errors import AuthenticationFailed, MalformedRequest, NotFound
from gateway.exchange.results import Caller, FetchedItem
from gateway.soap.binding import types as t
from gateway.soap.context import RequestContext

Required = t.Required
Optional = t.Optional
_rpc = partial(rpc, _throws=[t.GatewayFault], _wsdl_part_name="parameters")
"""Every operation: document/literal wrapped with the body part named ``parameters`` (what .NET's
wsdl.exe and Mono's wsdl need to recognise the wrapped style) and the declared GatewayFault."""


def _request(ctx: Any) -> RequestContext:
    context: RequestContext = ctx.udc
    return context


def _caller(ctx: Any) -> Caller:
    """The caller the envelope reader authenticated (gateway.soap.streaming) before the payload was read."""
    caller = _request(ctx).caller
    if caller is None:
        raise AuthenticationFailed("Authentication failed: send your agency code and secret in the AuthHeader.")
    return caller


def _fetched(context: RequestContext, item: FetchedItem) -> t.FetchedDocument:
    """A fetched item on the wire, its file registered to be streamed in place of ``edxml``."""
    return t.FetchedDocument(
        itemId=item.item_id,
        kind=item.kind,
        documentId=item.document_id,
        sha256=item.sha256,
        size=item.size,
        edxml=context.stream_file(item.path, item.size),
    )


class EdxmlGatewayService(ServiceBase):
    """edXML document exchange: send, pull, fetch, acknowledge, report and follow status."""

    __in_header__ = t.AuthHeader

    @_rpc(ByteArray(min_occurs=1, nillable=False), _returns=t.SendReceipt)
    def sendDocument(ctx: Any, document: Any) -> t.SendReceipt:
        """Send an edXML document (the whole .edxml file, base64); returns the gateway's document id."""
        context = _request(ctx)
        caller = _caller(ctx)
        staged = context.staged_document
        if staged is None:
            raise MalformedRequest("sendDocument needs the edXML file in its document element.")
        receipt = context.exchange.send_document(caller, staged)
        return t.SendReceipt(
            documentId=receipt.document_id,
            edxmlDocumentId=receipt.edxml_document_id,
            duplicate=receipt.duplicate,
            recipients=list(receipt.recipients),
            signer=receipt.signer,
        )

    @_rpc(Integer32(min_occurs=0, nillable=False), _returns=Array(t.PendingItem))
    def getPendingDocuments(ctx: Any, maxItems: int | None) -> list[t.PendingItem]:
        """Lease the documents and status messages waiting for the caller (hidden from other pulls
        until the lease expires; confirmReceived removes them for good)."""
        context = _request(ctx)
        items = context.exchange.pending(_caller(ctx), maxItems, fresh_caller=True)
        return [
            t.PendingItem(
                itemId=i.item_id,
                kind=i.kind,
                documentId=i.document_id,
                edxmlDocumentId=i.edxml_document_id,
                senderCode=i.sender_code,
                senderName=i.sender_name,
                code=i.code,
                subject=i.subject,
                promulgationDate=i.promulgation_date,
                dueDate=i.due_date,
                priority=i.priority,
                businessType=i.business_type,
                statusCode=i.status_code,
                statusFrom=i.status_from,
                size=i.size,
                queuedAt=i.queued_at,
                leaseExpiresAt=i.lease_expires_at,
                attempts=i.attempts,
                signer=i.signer,
            )
            for i in items
        ]

    @_rpc(Required, _returns=t.FetchedDocument)
    def getDocument(ctx: Any, itemId: str) -> t.FetchedDocument:
        """Fetch an item's edXML file; fetching a document records status 01 (arrived)."""
        context = _request(ctx)
        return _fetched(context, context.exchange.fetch(_caller(ctx), itemId))

    @_rpc(Required, _returns=Boolean(min_occurs=1, nillable=False))
    def confirmReceived(ctx: Any, itemId: str) -> bool:
        """Acknowledge an item: it leaves the pending list for good."""
        context = _request(ctx)
        context.exchange.acknowledge(_caller(ctx), itemId)
        return True

    @_rpc(
        Required,
        Required,
        Optional,
        t.StaffInfo.customize(min_occurs=0, nillable=False),
        _returns=t.StatusReceipt,
    )
    def updateStatus(
        ctx: Any,
        documentId: str,
        statusCode: str,
        description: str | None,
        staff: t.StaffInfo | None,
    ) -> t.StatusReceipt:
        """Report a processing status (recipient: 01-06, 15, 16; sender: 13 to recall)."""
        context = _request(ctx)
        staff_info = (
            StaffInfoModel(department=staff.department, staff=staff.staff, email=staff.email, mobile=staff.mobile)
            if staff is not None
            else None
        )
        receipt = context.exchange.update_status(_caller(ctx), documentId, statusCode, description, staff_info)
        return t.StatusReceipt(
            documentId=receipt.document_id,
            agencyCode=receipt.agency_code,
            statusCode=receipt.status_code,
            reportedAt=receipt.reported_at,
            notified=list(receipt.notified),
        )

    @_rpc(Required, _returns=Array(t.StatusEntry))
    def getStatusHistory(ctx: Any, documentId: str) -> list[t.StatusEntry]:
        """Every status of a document with its time: per recipient for the sender, own copy for a recipient."""
        context = _request(ctx)
        return [
            t.StatusEntry(
                documentId=e.document_id,
                recipientCode=e.recipient_code,
                recipientName=e.recipient_name,
                statusCode=e.status_code,
                statusName=e.status_name,
                description=e.description,
                staffDepartment=e.staff_department,
                staffName=e.staff_name,
                reportedBy=e.reporter_code,
                reportedAt=e.reported_at,
            )
            for e in context.exchange.history(_caller(ctx), documentId)
        ]

    @_rpc(Optional, Boolean(min_occurs=0, nillable=False), _returns=Array(t.Agency))
    def getAgencies(ctx: Any, parentCode: str | None, includeHomeInstance: bool | None) -> list[t.Agency]:
        """The agency directory, or the direct children of ``parentCode``.

        ``includeHomeInstance`` (an addition) asks for each agency's home gateway; without it the
        answer is exactly what stubs generated before the addition parse, strict parsers included.
        """
        context = _request(ctx)
        return [
            t.Agency(
                code=a.code,
                name=a.name,
                level=a.level,
                parentCode=a.parent_code,
                active=a.active,
                homeInstance=a.home_instance if includeHomeInstance else None,
            )
            for a in context.exchange.agencies(parentCode)
        ]

    # -- confirmReceivedItems (issue 13.2): an addition to the contract; the existing operations are unchanged.

    @_rpc(Array(Required, min_occurs=1, nillable=False), _returns=Integer32(min_occurs=1, nillable=False))
    def confirmReceivedItems(ctx: Any, itemIds: list[str | None] | None) -> int:
        """Acknowledge several of the caller's items at once (all or none); returns how many were still pending.

        Same rules as confirmReceived: only the caller's own items, a NotFound fault naming the first
        unknown or foreign id (and nothing acknowledged), repeating is harmless.
        """
        context = _request(ctx)
        return context.exchange.acknowledge_many(_caller(ctx), [i for i in itemIds or [] if i is not None])

    # -- getDocuments (issue 13.2): an addition to the contract; getDocument is unchanged.

    @_rpc(Array(Required, min_occurs=1, nillable=False), _returns=Array(t.FetchedDocument))
    def getDocuments(ctx: Any, itemIds: list[str | None] | None) -> list[t.FetchedDocument]:
        """Fetch several of the caller's items at once, in the order asked, each as getDocument would.

        Answers the items in order while their files together fit in the gateway's limit
        (GATEWAY_MAX_FETCH_BYTES, 64 MiB unless the operator changed it; the first item always), at
        most maxItems' cap of them; the others stay pending: ask again for them. All or none: a
        NotFound fault names the first unknown, foreign or withdrawn id, and nothing is fetched.
        """
        context = _request(ctx)
        items = context.exchange.fetch_many(_caller(ctx), [i for i in itemIds or [] if i is not None])
        return [_fetched(context, item) for item in items]

    @_rpc(Integer32(min_occurs=0, nillable=False), _returns=t.CertificationRun)
    def startCertification(ctx: Any, minutes: int | None) -> t.CertificationRun:
        """Start an interconnection test of the caller's software: the sandbox agency sends it test documents."""
        caller = _caller(ctx)
        duration = timedelta(minutes=min(max(minutes or 120, 1), 1440))
        return _run(_certifications(ctx).start(caller.code, "agency", duration))

    @_rpc(Required, _returns=t.CertificationRun)
    def getCertification(ctx: Any, runId: str) -> t.CertificationRun:
        """One of the caller's certification runs: every check, and the grade so far."""
        caller = _caller(ctx)
        certifications = _certifications(ctx)
        owned = {run.run_id for run in certifications.runs(caller.code)}
        if runId not in owned:
            raise NotFound(f"No certification run '{runId}' of {caller.code}. Use the runId startCertification gave.")
        return _run(certifications.view(runId))


def _certifications(ctx: Any) -> Certifications:
    exchange = _request(ctx).exchange
    return Certifications.from_settings(exchange)


def _run(run: RunView) -> t.CertificationRun:
    return t.CertificationRun(
        runId=run.run_id,
        agencyCode=run.agency_code,
        startedAt=run.started_at,
        deadline=run.deadline,
        active=run.active,
        grade=run.grade,
        checks=[
            t.CertificationCheck(key=c.key, title=c.title, state=c.state, deadline=c.deadline, decidedAt=c.decided_at)
            for c in run.checks
        ],
    )
