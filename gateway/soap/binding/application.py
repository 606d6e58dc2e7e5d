"""Spyne's Application, SOAP 1.1 protocol and WSGI server, adapted to the gateway, behind one small API.

Spyne's defaults are replaced deliberately: requests are streamed and size-checked by
:mod:`gateway.soap.streaming` before Spyne sees them, so Spyne only ever parses slim envelopes
(``huge_tree`` stays off, its own cap is never the one that bites); the body is validated against
the WSDL's schema (``validator='lxml'``); Spyne's loggers that dump whole request bodies and
client-fault tracebacks are silenced; and every error leaves as a fault with one of the gateway's
stable codes. The endpoint sees none of this: it calls :meth:`SpyneBinding.answer` with the slim
envelope and a :class:`~gateway.soap.context.RequestContext`, and gets an :class:`Answer` back.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from typing import Any

import spyne.const
import spyne.model.complex
from spyne import Application, Fault
from spyne.protocol.soap import Soap11
from spyne.protocol.xml import SchemaValidationError
from spyne.server.wsgi import WsgiApplication

from gateway.errors import GatewayError, MalformedRequest, fault_codes
from gateway.soap.binding.answer import Answer
from gateway.soap.binding.fast import FAST_OPERATIONS, FastHandler
from gateway.soap.binding.service import EdxmlGatewayService
from gateway.soap.binding.wsdl import WSDL_LOCATION, render_wsdl
from gateway.soap.context import RelayContext, RequestContext
from gateway.soap.faults import fault_detail, internal_error
from gateway.soap.namespaces import NAMESPACE
from gateway.soap.streaming import SimpleBody

spyne.const.MIN_GC_INTERVAL = float("inf")
"""Spyne runs a full gc.collect() at most once a second per process to close its request files; the
gateway gives Spyne no files, and a full collection stalled a request for 60-70 ms (tools/bench.py)."""

SERVICE_NAME = "EdxmlGateway"
OPERATIONS: frozenset[str] = frozenset(EdxmlGatewayService.public_methods)
"""Every SOAP operation of the service, as Spyne registered them."""
_SOAP12_PREFIXES = ("wsdlsoap12", "soap12env", "soap12enc")
"""Declared by Spyne though no SOAP 1.2 binding exists; gSOAP then speaks SOAP 1.2 and fails."""
_CONTEXT = "gateway.soap.binding.context"
_FAULT_CODE = "gateway.soap.binding.fault_code"
_FAULT_MESSAGE = "gateway.soap.binding.fault_message"
"""Keys of the private environ Spyne is called with (never the client's environ)."""

# Spyne logs whole request bodies, a traceback per fault and a warning per response it builds from a
# customised class; the gateway logs each refusal in one line.
for _noisy in (
    "spyne.protocol.soap.soap11.invalid",
    "spyne.protocol.xml.invalid",
    "spyne.application",
    "spyne.application.client",
    "spyne.application.server",
    "spyne.model.complex",
):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL + 1)


class _NoStack:
    """Stands for ``traceback`` in ``spyne.model.complex``, whose only use of it is
    ``logger.debug(traceback.format_stack())`` on every instance of a customised class: the
    argument is built though the logger is silenced above. Every getDocument answer is one
    (Spyne's ``getDocumentResponse``); formatting the stack cost about 0.35 ms of a fetch's CPU."""

    @staticmethod
    def format_stack() -> list[str]:
        return []


spyne.model.complex.traceback = _NoStack


def gateway_fault(error: GatewayError) -> Fault:
    """The Spyne fault for ``error``.

    A plain ``Fault`` carrying the detail element: raising the declared ``GatewayFault`` class
    itself would make Spyne also write its fields, nil, straight inside ``soap:Fault``, which
    strict SOAP 1.1 parsers (gSOAP with SOAP_XML_STRICT) refuse.
    """
    return Fault(faultcode=error.code, faultstring=error.message, detail=fault_detail(error))


def _as_gateway_fault(error: Any) -> Fault:
    """``error`` if it already carries a gateway code, else the gateway fault that stands for it."""
    if isinstance(error, Fault) and error.faultcode in fault_codes():
        return error
    if isinstance(error, Fault) and error.faultcode in ("Client.ResourceNotFound", "Client.MethodNotFound"):
        return gateway_fault(MalformedRequest(f"Unknown operation: {error.faultstring}"))
    if isinstance(error, Fault) and not str(error.faultcode).startswith("Server"):
        return gateway_fault(MalformedRequest(f"The request could not be processed: {error.faultstring}"))
    cause = error if isinstance(error, BaseException) else None
    return gateway_fault(internal_error(f"Spyne ({getattr(error, 'faultstring', error)})", cause))


class _GatewayApplication(Application):
    """Runs the handler (the endpoint authenticated the caller already); every error becomes a gateway fault."""

    def call_wrapper(self, ctx: Any) -> Any:
        try:
            return super().call_wrapper(ctx)
        except GatewayError as error:
            raise gateway_fault(error) from None
        except Fault:
            raise
        except Exception:
            raise gateway_fault(internal_error(str(ctx.method_request_string))) from None


class _Soap11(Soap11):
    """SOAP 1.1 whose schema-validation faults speak the gateway's codes and words."""

    def validate_body(self, ctx: Any, message: Any) -> None:
        try:
            super().validate_body(ctx, message)
        except SchemaValidationError as exc:
            text = exc.faultstring.decode() if isinstance(exc.faultstring, bytes) else str(exc.faultstring)
            detail = text.rsplit(": ", 1)[-1] if ": " in text else text
            raise gateway_fault(MalformedRequest(f"The request does not match the WSDL: {detail}")) from None


class _SpyneWsgi(WsgiApplication):
    """Spyne's WSGI server; whatever fault it answers carries a gateway code, which is noted for the endpoint."""

    def handle_error(self, p_ctx: Any, others: Any, error: Any, start_response: Any) -> Any:
        fault = _as_gateway_fault(error)
        p_ctx.out_error = fault
        p_ctx.transport.req_env[_FAULT_CODE] = fault.faultcode
        p_ctx.transport.req_env[_FAULT_MESSAGE] = str(fault.faultstring)
        return super().handle_error(p_ctx, others, fault, start_response)


def build_application(service: type, namespace: str, name: str) -> Application:
    """A Spyne application for one service: document/literal wrapped SOAP 1.1, validated input.

    The agency service and the relay service between instances are built alike.
    """
    application = _GatewayApplication(
        [service],
        tns=namespace,
        name=name,
        in_protocol=_Soap11(validator="lxml"),
        out_protocol=_Soap11(),
    )
    application.transport = WsgiApplication.transport
    for prefix in _SOAP12_PREFIXES:
        application.interface.nsmap.pop(prefix, None)
    return application


def build_spyne_application() -> Application:
    """The agency service's Spyne application."""
    return build_application(EdxmlGatewayService, NAMESPACE, SERVICE_NAME)


def published_wsdl() -> bytes:
    """The contract as published in wsdl/: the WSDL with the placeholder address."""
    return render_wsdl(build_spyne_application())


class SpyneBinding:
    """One Spyne application and its WSGI server, answering slim envelopes for the endpoint."""

    def __init__(
        self,
        envelope_limit: int,
        application: Application | None = None,
        location: str = WSDL_LOCATION,
        fast: Mapping[str, FastHandler] | None = None,
    ) -> None:
        """The agency service by default; the relay passes its own application and placeholder address.

        ``fast``: operations answered without Spyne when their Body is simple; by default the agency
        service's (:data:`~gateway.soap.binding.fast.FAST_OPERATIONS`), none for another application.
        """
        self.fast = fast if fast is not None else (FAST_OPERATIONS if application is None else {})
        self.application = application or build_spyne_application()
        self.application.event_manager.add_listener("method_call", _attach_context)
        self.server = _SpyneWsgi(self.application, max_content_length=envelope_limit)
        self.wsdl = render_wsdl(self.application, location)
        """The WSDL with the placeholder address; the endpoint writes the real one."""

    def answer(
        self,
        environ: dict[str, Any],
        body: bytes,
        context: RequestContext | RelayContext,
        simple: SimpleBody | None = None,
    ) -> Answer:
        """Run the operation in ``body`` (a slim, UTF-8 SOAP 1.1 envelope) with ``context``.

        ``simple`` is the Body as the reader saw it, when it was simple: an operation with a fast
        answer is then answered without Spyne, unless the fast handler leaves it to Spyne.
        """
        if simple is not None:
            handler = self.fast.get(simple.operation)
            answer = handler(simple, context) if handler is not None else None
            if answer is not None:
                return answer
        inner = dict(environ)
        inner["wsgi.input"] = io.BytesIO(body)
        inner["CONTENT_LENGTH"] = str(len(body))
        inner["CONTENT_TYPE"] = "text/xml; charset=utf-8"  # streaming already refused anything but UTF-8
        inner[_CONTEXT] = context
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        response = b"".join(self.server(inner, capture))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        return Answer(captured["status"], headers, response, inner.get(_FAULT_CODE), inner.get(_FAULT_MESSAGE))


def _attach_context(ctx: Any) -> None:
    ctx.udc = ctx.transport.req_env[_CONTEXT]
