"""The SOAP endpoint as a WSGI callable: the only module that wires Spyne.

Spyne's defaults are replaced deliberately (../shared/stack-notes.md §1.3): requests are
streamed and size-checked by :mod:`gateway.soap.streaming` before Spyne sees them, so Spyne
only ever parses slim envelopes (``huge_tree`` stays off, its own 2 MiB cap is never the one
that bites); the body is validated against the WSDL's schema (``validator='lxml'``); Spyne's
loggers that dump whole request bodies and client-fault tracebacks are silenced; and every
error leaves as a fault with one of the gateway's stable codes.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import request_uri

import spyne.const
from lxml import etree
from spyne import Application, Fault
from spyne.interface.wsdl import Wsdl11
from spyne.protocol.soap import Soap11
from spyne.protocol.xml import SchemaValidationError
from spyne.server.wsgi import WsgiApplication

from gateway.errors import GatewayError, MalformedRequest, ServerError
from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService, StagedDocument
from gateway.soap.context import RequestContext
from gateway.soap.credentials import HeaderCredentials, authenticate
from gateway.soap.faults import fault_envelope, http_status, spyne_fault
from gateway.soap.service import EdxmlGatewayService
from gateway.soap.streaming import Payload, ResponseStreamer, stage_request
from gateway.soap.types import NAMESPACE

log = logging.getLogger("gateway.soap")

spyne.const.MIN_GC_INTERVAL = float("inf")
"""Spyne runs a full gc.collect() at most once a second per process to close its request files; the
gateway gives Spyne no files, and a full collection stalled a request for 60-70 ms (tools/bench.py)."""

SERVICE_NAME = "EdxmlGateway"
WSDL_LOCATION = "http://localhost:8080/soap"
"""The address written into the published WSDL (wsdl/); served copies carry the real one."""
SLIM_BODY_LIMIT = 1024 * 1024
_SOAP12_PREFIXES = ("wsdlsoap12", "soap12env", "soap12enc")
"""Declared by Spyne though no SOAP 1.2 binding exists; gSOAP then speaks SOAP 1.2 and fails."""
PAYLOADS = {"sendDocument": Payload(NAMESPACE, "sendDocument", "document")}

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


class _GatewayApplication(Application):
    """Turns every handler error into a gateway fault; unexpected ones are logged with a reference."""

    def call_wrapper(self, ctx: Any) -> Any:
        try:
            return super().call_wrapper(ctx)
        except GatewayError as error:
            raise spyne_fault(error) from None
        except Fault:
            raise
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception("internal error in %s (reference %s)", ctx.method_request_string, reference)
            raise spyne_fault(
                ServerError(
                    f"The gateway failed to process the request (reference {reference}); nothing was "
                    "changed. Retry later, and quote the reference to the operator if it persists."
                )
            ) from None


class _Soap11(Soap11):
    """SOAP 1.1 whose schema-validation faults speak the gateway's codes and words."""

    def validate_body(self, ctx: Any, message: Any) -> None:
        try:
            super().validate_body(ctx, message)
        except SchemaValidationError as exc:
            text = exc.faultstring.decode() if isinstance(exc.faultstring, bytes) else str(exc.faultstring)
            detail = text.rsplit(": ", 1)[-1] if ": " in text else text
            raise spyne_fault(MalformedRequest(f"The request does not match the WSDL: {detail}")) from None


class _SpyneWsgi(WsgiApplication):
    """Spyne's WSGI server with its own faults (unknown operation, bad XML) mapped to gateway codes."""

    def handle_error(self, p_ctx: Any, others: Any, error: Any, start_response: Any) -> Any:
        if isinstance(error, Fault) and not error.faultcode.startswith(("Client.", "Server.")):
            error = spyne_fault(MalformedRequest(f"The request could not be processed: {error.faultstring}"))
        elif isinstance(error, Fault) and error.faultcode in ("Client.ResourceNotFound", "Client.MethodNotFound"):
            error = spyne_fault(MalformedRequest(f"Unknown operation: {error.faultstring}"))
        return super().handle_error(p_ctx, others, error, start_response)


def build_spyne_application() -> Application:
    """The Spyne application: one service, document/literal wrapped SOAP 1.1, validated input."""
    application = _GatewayApplication(
        [EdxmlGatewayService],
        tns=NAMESPACE,
        name=SERVICE_NAME,
        in_protocol=_Soap11(validator="lxml"),
        out_protocol=_Soap11(),
    )
    application.transport = WsgiApplication.transport
    for prefix in _SOAP12_PREFIXES:
        application.interface.nsmap.pop(prefix, None)
    return application


def render_wsdl(application: Application, location: str = WSDL_LOCATION) -> bytes:
    """The WSDL for ``application`` with ``location`` as the endpoint address, pretty-printed.

    ``parameterOrder`` is dropped: Spyne fills it with the wrapper element's name, which is not
    a part name once parts are called ``parameters``, and Axis 1's WSDL2Java then refuses it.
    """
    wsdl = Wsdl11(application.interface)
    wsdl.build_interface_document(location)
    tree = etree.fromstring(wsdl.get_interface_document())
    for operation in tree.iterfind(f"{{{_WSDL}}}portType/{{{_WSDL}}}operation"):
        operation.attrib.pop("parameterOrder", None)
    _sort_children(tree.find(f"{{{_WSDL}}}types/{{{_XS}}}schema"))
    _sort_children(tree)
    return etree.tostring(tree, pretty_print=True, xml_declaration=True, encoding="UTF-8")


_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_XS = "http://www.w3.org/2001/XMLSchema"
_WSDL_ORDER = [f"{{{_WSDL}}}{name}" for name in ("types", "message", "portType", "binding", "service")]


def _sort_children(parent: etree._Element | None) -> None:
    """Put definitions in a fixed order: Spyne emits them in hash order, which differs per process."""
    if parent is None:
        return

    def key(child: etree._Element) -> tuple[int, str, str]:
        rank = _WSDL_ORDER.index(child.tag) if child.tag in _WSDL_ORDER else len(_WSDL_ORDER)
        return rank, str(child.tag), child.get("name", "")

    parent[:] = sorted(parent, key=key)


StartResponse = Callable[..., Any]


class SoapEndpoint:
    """WSGI callable for the SOAP endpoint: GET ?wsdl, POST a SOAP 1.1 request."""

    def __init__(self, exchange: ExchangeService, max_request_bytes: int) -> None:
        self.exchange = exchange
        self.max_request_bytes = max_request_bytes
        self.application = build_spyne_application()
        self.application.event_manager.add_listener("method_call", self._attach_context)
        self.spyne = _SpyneWsgi(self.application, max_content_length=SLIM_BODY_LIMIT)
        self.streamer = ResponseStreamer()
        self.wsdl = render_wsdl(self.application)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET" and environ.get("QUERY_STRING", "").lower() in ("wsdl", "singlewsdl"):
            location = request_uri(environ, include_query=False).encode()
            body = self.wsdl.replace(WSDL_LOCATION.encode(), location)
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
            return [body]
        if method != "POST":
            error = MalformedRequest(
                f"{method} is not a SOAP request: POST SOAP 1.1 requests here; the WSDL is at ?wsdl."
            )
            return _fault_response(start_response, error, "405 Method Not Allowed", [("Allow", "GET, POST")])
        return self._call(environ, start_response)

    def _call(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        staged: StagedDocument | None = None
        try:
            request = stage_request(
                environ["wsgi.input"],
                _content_length(environ),
                self.max_request_bytes,
                PAYLOADS,
                self.exchange.begin_staging,
                environ.get("HTTP_SOAPACTION"),
                envelope_limit=SLIM_BODY_LIMIT,
                authenticate=self._authenticate,
            )
            staged = request.staged
            environ["gateway.agency"] = request.caller.code
            environ["gateway.caller"] = request.caller
            return self._dispatch(environ, start_response, request.body, staged)
        except GatewayError as error:
            log.info("refused request: %s %s", error.code, error.message)
            return _fault_response(start_response, error, http_status(error))
        finally:
            if staged is not None:
                staged.discard()

    def _dispatch(
        self, environ: dict[str, Any], start_response: StartResponse, body: bytes, staged: StagedDocument | None
    ) -> Iterable[bytes]:
        inner = dict(environ)
        inner["wsgi.input"] = io.BytesIO(body)
        inner["CONTENT_LENGTH"] = str(len(body))
        inner["CONTENT_TYPE"] = "text/xml; charset=utf-8"  # streaming already refused anything but UTF-8
        inner["gateway.staged"] = staged
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        response = b"".join(self.spyne(inner, capture))
        context: RequestContext | None = inner.get("gateway.context")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        if context is not None and context.outbound and captured["status"].startswith("200"):
            outbound = context.outbound[0]
            chunks, length = self.streamer.stream(response, outbound.path, outbound.size)
            start_response(captured["status"], [*headers, ("Content-Length", str(length))])
            return chunks
        if captured["status"].startswith("500"):
            log.info("fault response to %s", environ.get("HTTP_SOAPACTION", "?"))
        start_response(captured["status"], [*headers, ("Content-Length", str(len(response)))])
        return [response]

    def _authenticate(self, credentials: HeaderCredentials) -> Caller:
        return authenticate(self.exchange, credentials)

    def _attach_context(self, ctx: Any) -> None:
        environ = ctx.transport.req_env
        context = RequestContext(
            exchange=self.exchange,
            caller=environ.get("gateway.caller"),
            staged_document=environ.get("gateway.staged"),
            placeholder=self.streamer.placeholder,
        )
        environ["gateway.context"] = context
        ctx.udc = context


def _fault_response(
    start_response: StartResponse, error: GatewayError, status: str, extra: list[tuple[str, str]] | None = None
) -> Iterable[bytes]:
    body = fault_envelope(error)
    headers = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body))), *(extra or [])]
    start_response(status, headers)
    return [body]


def _content_length(environ: dict[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH")
    try:
        return int(raw) if raw else None
    except ValueError:
        raise MalformedRequest(f"Content-Length '{raw}' is not a number.") from None
