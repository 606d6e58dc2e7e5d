"""The WSDL a running gateway serves is the published contract, with its own address in it."""

from __future__ import annotations

import pytest
import requests
from lxml import etree

from gateway.config import WSDL_DIR
from gateway.soap.binding import WSDL_LOCATION

SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_served_wsdl_is_published_contract_with_real_address(live_gateway) -> None:
    served = requests.get(live_gateway.wsdl, timeout=10).content
    published = (WSDL_DIR / "edxml-gateway.wsdl").read_bytes()
    assert served.replace(live_gateway.url.encode(), WSDL_LOCATION.encode()) == published
    address = etree.fromstring(served).find(f".//{{{SOAP}}}address")
    assert address is not None and address.get("location") == live_gateway.url
