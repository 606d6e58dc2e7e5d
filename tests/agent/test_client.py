"""The agency SOAP client: what reaches the caller when the gateway, or what stands at its URL, misbehaves."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from support.letters import official_letter
from support.live import NGHE_AN, VPCP, LiveGateway, secret_of, serving_in_thread

from gateway.client import AgencyClient, Fetched, Unreachable, items

StartResponse = Any


@contextmanager
def answering(status: str, body: bytes, content_type: str = "text/html") -> Iterator[str]:
    """A server at ``/soap`` that answers every request with ``status`` and ``body``; yields the URL."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    with serving_in_thread(app) as base:
        yield f"{base}/soap"


def test_a_page_that_is_not_a_wsdl_is_unreachable_not_a_crash() -> None:
    login_page = b"<html><body>Please log in to the network</body></html>"
    refused = r"\?wsdl is not the gateway's WSDL \(it declares no SOAP binding\)"
    with answering("200 OK", login_page) as url, pytest.raises(Unreachable, match=refused):
        AgencyClient(url, VPCP, "x").pending()


def test_an_answer_that_is_not_xml_is_unreachable() -> None:
    with answering("200 OK", b"hello", "text/plain") as url, pytest.raises(Unreachable) as caught:
        AgencyClient(url, VPCP, "x").pending()
    assert str(caught.value).startswith(f"unexpected answer from {url}: Invalid XML content received")


def test_a_gateway_that_accepts_but_never_answers_has_not_answered_in_time() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/soap"
        with pytest.raises(Unreachable, match="did not answer in time"):
            AgencyClient(url, VPCP, "x", timeout=0.5).pending()


def test_a_url_without_a_host_is_refused_with_the_reason() -> None:
    with pytest.raises(Unreachable, match="request to http:// failed: Invalid URL 'http://\\?wsdl': No host supplied"):
        AgencyClient("http://", VPCP, "x").pending()


def test_a_url_without_a_scheme_is_refused_before_zeep_reads_it_as_a_file() -> None:
    with pytest.raises(Unreachable, match=r"'localhost:8080/soap' is not an http:// or https:// address"):
        AgencyClient("localhost:8080/soap", VPCP, "x").pending()


def test_an_operation_answered_with_an_http_error_page_names_the_status(gateway: LiveGateway) -> None:
    with urllib.request.urlopen(gateway.wsdl, timeout=30) as response:
        wsdl = response.read()

    def proxy(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """Serves the gateway's WSDL; every operation gets the 502 page of a proxy whose upstream is down."""
        if environ["REQUEST_METHOD"] == "GET":
            start_response("200 OK", [("Content-Type", "text/xml")])
            return [wsdl]
        start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
        return [b"502 Bad Gateway: the upstream gateway is down"]

    with serving_in_thread(proxy) as base, pytest.raises(Unreachable) as caught:
        AgencyClient(f"{base}/soap", VPCP, secret_of(VPCP)).pending()
    assert str(caught.value) == f"{base}/soap answered HTTP 502; is --url the gateway's /soap endpoint?"


class DamagingClient(AgencyClient):
    """Changes the last byte of every fetched document, as a faulty link or proxy would."""

    def call(self, operation: str, **arguments: Any) -> Any:
        result = super().call(operation, **arguments)
        if operation == "getDocument":
            result.edxml = result.edxml[:-1] + b"!"
        return result


def test_a_document_damaged_on_the_way_is_not_handed_over(gateway: LiveGateway) -> None:
    letter = official_letter(VPCP, [NGHE_AN])
    AgencyClient(gateway.url, VPCP, secret_of(VPCP)).send(letter)
    client = DamagingClient(gateway.url, NGHE_AN, secret_of(NGHE_AN))
    [item] = client.pending()
    with pytest.raises(Unreachable, match=f"the edXML of item {item.itemId} arrived damaged .sha256 mismatch."):
        client.fetch(item.itemId)
    fetched = AgencyClient(gateway.url, NGHE_AN, secret_of(NGHE_AN)).fetch(item.itemId)
    assert isinstance(fetched, Fetched) and fetched.edxml == letter


def test_agencies_lists_the_directory(gateway: LiveGateway) -> None:
    client = AgencyClient(gateway.url, VPCP, secret_of(VPCP))
    codes = {agency.code for agency in client.agencies()}
    assert {VPCP, NGHE_AN} <= codes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        (["a", "b"], ["a", "b"]),
        ({"PendingItem": ["a", "b"]}, ["a", "b"]),
        ({"string": "only"}, ["only"]),
        (SimpleNamespace(StatusEntry=["e"]), ["e"]),
        (SimpleNamespace(itemId="i-1"), [SimpleNamespace(itemId="i-1")]),
    ],
    ids=["none", "list", "wrapped-list", "wrapped-one", "wrapper-object", "a-single-element"],
)
def test_items_unwraps_soap_arrays_however_zeep_shaped_them(value: object, expected: list[object]) -> None:
    assert items(value) == expected
