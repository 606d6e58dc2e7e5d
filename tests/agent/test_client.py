"""The agency SOAP client: what reaches the caller when the gateway, or what stands at its URL, misbehaves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support.live import VPCP, serving_in_thread

from gateway.client import AgencyClient, Unreachable

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
