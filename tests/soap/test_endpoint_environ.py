"""The SOAP endpoint records operation, fault code and agency in the WSGI environ (INTERFACES item 1),
and the metrics count what it recorded, never what a body or a fault envelope seems to say."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

from support.live import NGHE_AN, NS, VPCP, secret_of

from gateway.app import Router
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.soap import OPERATIONS, wsgi_keys

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def post(app: Any, body: bytes, action: str | None = None) -> tuple[str, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/soap",
        "CONTENT_TYPE": "text/xml; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    if action is not None:
        environ["HTTP_SOAPACTION"] = action
    setup_testing_defaults(environ)
    seen: dict[str, str] = {}
    result = app(environ, lambda status, headers, exc_info=None: seen.setdefault("status", status))
    b"".join(result)
    getattr(result, "close", lambda: None)()
    return seen["status"], environ


def envelope(operation: str, inner: str = "", code: str = VPCP, secret: str | None = None) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header><g:AuthHeader>'
        f"<g:agencyCode>{code}</g:agencyCode><g:secret>{secret or secret_of(code)}</g:secret></g:AuthHeader>"
        f"</s:Header><s:Body><g:{operation}>{inner}</g:{operation}></s:Body></s:Envelope>"
    ).encode()


def test_operations_are_the_services() -> None:
    assert {
        "sendDocument",
        "getPendingDocuments",
        "getDocument",
        "confirmReceived",
        "updateStatus",
        "getStatusHistory",
        "getAgencies",
    } <= OPERATIONS


def test_an_answered_call_records_operation_and_agency(app: Router) -> None:
    status, environ = post(app.soap, envelope("getAgencies", code=NGHE_AN))
    assert status.startswith("200")
    assert environ[wsgi_keys.OPERATION] == "getAgencies"
    assert environ[wsgi_keys.AGENCY] == NGHE_AN
    assert wsgi_keys.FAULT_CODE not in environ


def test_a_handler_fault_records_its_code(app: Router) -> None:
    status, environ = post(app.soap, envelope("getDocument", "<g:itemId>none</g:itemId>"))
    assert status.startswith("500")
    assert (environ[wsgi_keys.OPERATION], environ[wsgi_keys.FAULT_CODE]) == ("getDocument", "Client.NotFound")
    assert environ[wsgi_keys.AGENCY] == VPCP


def test_refused_authentication_records_no_agency(app: Router) -> None:
    _, environ = post(app.soap, envelope("getAgencies", secret="wrong"))
    assert environ[wsgi_keys.FAULT_CODE] == "Client.AuthenticationFailed"
    assert wsgi_keys.AGENCY not in environ


def test_schema_and_streaming_refusals_record_their_codes(app: Router) -> None:
    _, invalid = post(app.soap, envelope("getPendingDocuments", "<g:maxItems>many</g:maxItems>"))
    assert invalid[wsgi_keys.FAULT_CODE] == "Client.MalformedRequest"
    assert invalid[wsgi_keys.OPERATION] == "getPendingDocuments"
    _, broken = post(app.soap, b"<not-xml")
    assert broken[wsgi_keys.FAULT_CODE] == "Client.MalformedRequest"
    assert wsgi_keys.OPERATION not in broken
    _, mismatch = post(app.soap, envelope("getAgencies"), action="urn:x#getStatusHistory")
    assert (mismatch[wsgi_keys.OPERATION], mismatch[wsgi_keys.FAULT_CODE]) == (
        "getStatusHistory",
        "Client.MalformedRequest",
    ), "SOAPAction names the operation before the body is read"
    _, unknown = post(app.soap, envelope("noSuchOperation"))
    assert unknown[wsgi_keys.FAULT_CODE] == "Client.MalformedRequest"
    assert wsgi_keys.OPERATION not in unknown, "only operations of the service are recorded"


def test_metrics_count_the_environ_not_the_body() -> None:
    """A response body that looks like another operation's fault does not fool the counters."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ[wsgi_keys.OPERATION] = "getDocument"
        environ[wsgi_keys.FAULT_CODE] = "Client.NotFound"
        start_response("500 Internal Server Error", [("Content-Type", "text/xml")])
        return [b"<faultcode>soap:Client.TooLarge</faultcode><getAgencies/>"]

    metrics = Metrics()
    middleware = MetricsMiddleware(app, OPERATIONS, metrics=metrics)
    post(middleware, envelope("getAgencies"), action="getAgencies")

    def forged(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ[wsgi_keys.OPERATION] = "madeUpOperation"
        environ[wsgi_keys.FAULT_CODE] = "Client.MadeUp"
        start_response("500 Internal Server Error", [("Content-Type", "text/xml")])
        return [b""]

    post(MetricsMiddleware(forged, OPERATIONS, metrics=metrics), b"")
    sample = metrics.registry.get_sample_value
    assert sample("gateway_soap_faults_total", {"operation": "getDocument", "code": "Client.NotFound"}) == 1
    assert sample("gateway_soap_faults_total", {"operation": "getAgencies", "code": "Client.TooLarge"}) is None
    assert sample("gateway_soap_faults_total", {"operation": "unknown", "code": "other"}) == 1
    assert sample("gateway_http_requests_total", {"operation": "getDocument", "status": "500"}) == 1
