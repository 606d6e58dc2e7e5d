"""The SOAP endpoint as a WSGI callable: GET ``?wsdl``, POST a SOAP 1.1 request. Spyne-free.

A request is read once by :mod:`gateway.soap.streaming` (size limit, hostile XML, the edXML
payload decoded to a staging file); the slim envelope left is answered by the Spyne binding
(:mod:`gateway.soap.binding`); a fetched document is streamed into the response here. The
endpoint records what it learnt in the WSGI environ (:mod:`gateway.soap.wsgi_keys`) for the
metrics and the access log around it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from gateway.errors import GatewayError, MalformedRequest
from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService, StagedDocument
from gateway.soap import wsgi_keys
from gateway.soap.address import BadAddress, WsdlAddresses, check_public_url, request_address
from gateway.soap.binding import OPERATIONS, SpyneBinding
from gateway.soap.context import RelayContext, RequestContext
from gateway.soap.credentials import HeaderCredentials, authenticate
from gateway.soap.faults import fault_envelope, http_status, internal_error
from gateway.soap.namespaces import NAMESPACE
from gateway.soap.streaming import Payload, ResponseStreamer, SimpleBody, stage_request

log = logging.getLogger("gateway.soap")

SLIM_BODY_LIMIT = 1024 * 1024
"""Bytes of envelope allowed besides the edXML payload; all Spyne ever parses."""
PAYLOADS = {"sendDocument": Payload(NAMESPACE, "sendDocument", "document")}
_ACTION_SPLIT = re.compile(r"[/#:]")

StartResponse = Callable[..., Any]


class SoapEndpoint:
    """WSGI callable for the SOAP endpoint: GET ?wsdl, POST a SOAP 1.1 request.

    The relay endpoint (:mod:`gateway.soap.relay`) is the same reader with another binding,
    other payloads and another kind of caller: it overrides the class attributes and the three
    small methods after ``_authenticate``.
    """

    operations: frozenset[str] = OPERATIONS
    payloads: dict[str, Payload] = PAYLOADS

    def __init__(
        self,
        exchange: ExchangeService,
        max_request_bytes: int,
        *,
        public_url: str = "",
        trusted_proxy: bool = False,
        binding: SpyneBinding | None = None,
    ) -> None:
        """``public_url`` fixes the WSDL's address; ``trusted_proxy`` lets X-Forwarded-Host/-Proto set it.

        Raises BadAddress for a ``public_url`` that is not an absolute http(s) URL.
        """
        self.exchange = exchange
        self.max_request_bytes = max_request_bytes
        self.binding = binding or SpyneBinding(SLIM_BODY_LIMIT)
        self.streamer = ResponseStreamer()
        self.wsdl = WsdlAddresses(self.binding.wsdl)
        self.public_url = check_public_url(public_url) if public_url else None
        self.trusted_proxy = trusted_proxy

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET" and environ.get("QUERY_STRING", "").lower() in ("wsdl", "singlewsdl"):
            return self._wsdl(environ, start_response)
        if method != "POST":
            error = MalformedRequest(
                f"{method} is not a SOAP request: POST SOAP 1.1 requests here; the WSDL is at ?wsdl."
            )
            return _fault_response(environ, start_response, error, "405 Method Not Allowed", [("Allow", "GET, POST")])
        return self._call(environ, start_response)

    def _wsdl(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The published WSDL naming this gateway's address; 400 when the request cannot name it."""
        try:
            location = self.public_url or request_address(environ, self.trusted_proxy)
        except BadAddress as error:
            body = f"{error} Fix the client's or the proxy's headers, or set GATEWAY_PUBLIC_URL.\n".encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("X-Content-Type-Options", "nosniff"),
                ],
            )
            return [body]
        body = self.wsdl.for_location(location)
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    def _call(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        named = _operation_in_action(environ.get("HTTP_SOAPACTION"), self.operations)
        if named is not None:
            environ[wsgi_keys.OPERATION] = named
        staged: StagedDocument | None = None
        try:
            request = stage_request(
                environ["wsgi.input"],
                _content_length(environ),
                self.max_request_bytes,
                self.payloads,
                self.exchange.begin_staging,
                environ.get("HTTP_SOAPACTION"),
                envelope_limit=SLIM_BODY_LIMIT,
                authenticate=self._authenticate,
            )
            staged = request.staged
            if request.operation in self.operations:
                environ[wsgi_keys.OPERATION] = request.operation
            self._record_caller(environ, request.caller)
            return self._dispatch(environ, start_response, request.body, staged, request.caller, request.simple)
        except GatewayError as error:
            log.info("refused request: %s %s", error.code, error.message)
            return _fault_response(environ, start_response, error, http_status(error))
        except Exception:
            fault = internal_error(f"the SOAP endpoint ({environ.get(wsgi_keys.OPERATION, 'unknown operation')})")
            return _fault_response(environ, start_response, fault, http_status(fault))
        finally:
            if staged is not None:
                staged.discard()

    def _authenticate(self, credentials: HeaderCredentials) -> Caller:
        """Called by the envelope reader at ``<Body>``, before any byte of a payload is decoded."""
        return authenticate(self.exchange, credentials)

    def _record_caller(self, environ: dict[str, Any], caller: Caller) -> None:
        environ[wsgi_keys.AGENCY] = caller.code

    def _context(self, staged: StagedDocument | None, caller: Caller) -> RequestContext | RelayContext:
        return RequestContext(self.streamer.placeholder, exchange=self.exchange, staged_document=staged, caller=caller)

    def _dispatch(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        body: bytes,
        staged: StagedDocument | None,
        caller: Caller,
        simple: SimpleBody | None = None,
    ) -> Iterable[bytes]:
        context = self._context(staged, caller)
        answer = self.binding.answer(environ, body, context, simple)
        if answer.fault_code is not None:
            environ[wsgi_keys.FAULT_CODE] = answer.fault_code
            environ[wsgi_keys.FAULT_MESSAGE] = answer.fault_message or ""
            log.info("fault %s answered to %s", answer.fault_code, environ.get(wsgi_keys.OPERATION, "?"))
        elif context.outbound and answer.status.startswith("200"):
            chunks, length = self.streamer.stream(answer.body, context.outbound)
            start_response(answer.status, [*answer.headers, ("Content-Length", str(length))])
            return chunks
        start_response(answer.status, [*answer.headers, ("Content-Length", str(len(answer.body)))])
        return [answer.body]


def _operation_in_action(soap_action: str | None, operations: frozenset[str]) -> str | None:
    """The operation SOAPAction names (``getDocument``, ``urn:x#getDocument``...), if it is one."""
    if not soap_action:
        return None
    name = _ACTION_SPLIT.split(soap_action.strip().strip('"').strip())[-1]
    return name if name in operations else None


def _fault_response(
    environ: dict[str, Any],
    start_response: StartResponse,
    error: GatewayError,
    status: str,
    extra: list[tuple[str, str]] | None = None,
) -> Iterable[bytes]:
    environ[wsgi_keys.FAULT_CODE] = error.code
    environ[wsgi_keys.FAULT_MESSAGE] = error.message
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
