"""Fault envelopes are strict SOAP 1.1: faultcode, faultstring, faultactor?, detail? and nothing else."""

from __future__ import annotations

import pytest
import requests
from lxml import etree
from support.live import NGHE_AN, NS, secret_of

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def fault_children(url: str, body: bytes) -> list[str]:
    response = requests.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)
    fault = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None
    detail = fault.find("detail")
    assert detail is not None and detail.find(f"{{{NS}}}GatewayFault/{{{NS}}}code") is not None
    return [child.tag for child in fault]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_handler_and_pre_dispatch_faults_have_only_standard_children(live_gateway) -> None:
    envelope = (
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header><g:AuthHeader>'
        f"<g:agencyCode>{NGHE_AN}</g:agencyCode><g:secret>{secret_of(NGHE_AN)}</g:secret></g:AuthHeader>"
        "</s:Header><s:Body><g:getDocument><g:itemId>nope</g:itemId></g:getDocument></s:Body></s:Envelope>"
    ).encode()
    allowed = {"faultcode", "faultstring", "faultactor", "detail"}
    from_handler = fault_children(live_gateway.url, envelope)
    from_streaming = fault_children(live_gateway.url, b"<not-soap")
    for children in (from_handler, from_streaming):
        assert set(children) <= allowed and children[:2] == ["faultcode", "faultstring"], children
