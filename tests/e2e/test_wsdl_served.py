"""The WSDL a running gateway serves is the published contract with an address the operator stands behind:
GATEWAY_PUBLIC_URL when set, else a well-formed Host (X-Forwarded-* only behind a trusted proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree
from support.live import LiveGateway, live_gateway_for

from gateway.config import WSDL_DIR, Settings
from gateway.soap.address import BadAddress, WsdlAddresses, check_authority, check_public_url, request_address
from gateway.soap.binding import WSDL_LOCATION
from gateway.soap.endpoint import SoapEndpoint

SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
PUBLISHED = (WSDL_DIR / "edxml-gateway.wsdl").read_bytes()
INJECTION = 'x"/><wsdl:import location="http://evil.example/x.wsdl" a="'


def fetch(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers=headers, timeout=10)


def address_of(served: bytes) -> str | None:
    address = etree.fromstring(served).find(f".//{{{SOAP}}}address")
    assert address is not None
    return address.get("location")


def assert_published_with(served: bytes, location: str) -> None:
    """``served`` is the published WSDL byte for byte, apart from the address attribute."""
    assert address_of(served) == location
    quoted = etree.tostring(etree.Element("a", location=location)).split(b'"')[1]
    assert served.replace(b'location="' + quoted + b'"', b'location="' + WSDL_LOCATION.encode() + b'"') == PUBLISHED


@pytest.fixture
def proxied_gateway(tmp_path: Path) -> Iterator[LiveGateway]:
    database = f"sqlite:///{tmp_path / 'proxied' / 'gateway.sqlite3'}"
    settings = Settings(data_dir=tmp_path / "proxied", database_url=database, trusted_proxy=True)
    with live_gateway_for(settings) as gateway:
        yield gateway


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_served_wsdl_is_published_contract_with_real_address(live_gateway: LiveGateway) -> None:
    served = fetch(live_gateway.wsdl).content
    assert served.replace(live_gateway.url.encode(), WSDL_LOCATION.encode()) == PUBLISHED
    assert_published_with(served, live_gateway.url)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_injected_host_is_refused(live_gateway: LiveGateway) -> None:
    response = fetch(live_gateway.wsdl, Host=INJECTION)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "GATEWAY_PUBLIC_URL" in response.text and b"evil" not in response.content, "the header is not echoed"
    for bad in ("gw.example.gov.vn:0", "gw.example.gov.vn:65536", "gw example", "gw.example.gov.vn:80x", "[::1"):
        assert fetch(live_gateway.wsdl, Host=bad).status_code == 400, bad


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "host", ["gateway.example.gov.vn", "gateway.example.gov.vn:8443", "10.1.2.3:8080", "[::1]:9000"]
)
def test_a_valid_host_is_reflected(live_gateway: LiveGateway, host: str) -> None:
    response = fetch(live_gateway.wsdl, Host=host)
    assert response.status_code == 200
    assert_published_with(response.content, f"http://{host}/soap")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted(
    live_gateway: LiveGateway, proxied_gateway: LiveGateway
) -> None:
    forwarded = {"X-Forwarded-Host": "gateway.example.gov.vn", "X-Forwarded-Proto": "https"}
    direct = fetch(live_gateway.wsdl, **forwarded)
    assert direct.status_code == 200 and address_of(direct.content) == live_gateway.url
    assert fetch(live_gateway.wsdl, **{"X-Forwarded-Host": INJECTION}).status_code == 200, "not read at all"

    behind = fetch(proxied_gateway.wsdl, **forwarded)
    assert behind.status_code == 200
    assert_published_with(behind.content, "https://gateway.example.gov.vn/soap")
    chained = fetch(proxied_gateway.wsdl, **{"X-Forwarded-Host": "client-says.example, gateway.example.gov.vn:8443"})
    assert address_of(chained.content) == "http://gateway.example.gov.vn:8443/soap", "the nearest proxy's value"
    assert fetch(proxied_gateway.wsdl, **{"X-Forwarded-Host": INJECTION}).status_code == 400
    assert fetch(proxied_gateway.wsdl, **{"X-Forwarded-Proto": "javascript"}).status_code == 400
    plain = fetch(proxied_gateway.wsdl)
    assert address_of(plain.content) == proxied_gateway.url, "without forwarded headers, Host is used"


def test_public_url_wins_over_every_header(tmp_path: Path, sqlite_url: str) -> None:
    public = "https://gateway.example.gov.vn/edxml/soap"
    settings = Settings(data_dir=tmp_path / "var", database_url=sqlite_url, public_url=public, trusted_proxy=True)
    with live_gateway_for(settings) as gateway:
        for headers in ({}, {"Host": INJECTION}, {"X-Forwarded-Host": "other.example", "X-Forwarded-Proto": "http"}):
            response = fetch(gateway.wsdl, **headers)
            assert response.status_code == 200, headers
            assert_published_with(response.content, public)
        assert not etree.fromstring(response.content).findall(f"{{{WSDL}}}import")


@pytest.mark.parametrize(
    "value",
    ["localhost", "gw.example.gov.vn:443", "127.0.0.1", "[2001:db8::1]", "[::1]:65535", "xn--ngh-an-8va.vn", "a%20b"],
)
def test_well_formed_authorities(value: str) -> None:
    assert check_authority(value, "Host") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "host:",
        "host:-1",
        "host:99999",
        "[fe80::1%25eth0]",
        "[::1]x",
        "[zz::1]",
        "a b",
        "a/b",
        "a@b",
        'a"b',
        "h" * 301,
    ],
)
def test_malformed_authorities(value: str) -> None:
    with pytest.raises(BadAddress):
        check_authority(value, "Host")


@pytest.mark.parametrize(
    "url",
    [
        "gateway.example.gov.vn/soap",
        "ftp://gw.example/soap",
        "https://gw/soap?x=1",
        "https://u:p@gw/soap",
        'https://gw"/soap',
    ],
)
def test_a_malformed_public_url_stops_the_gateway_from_starting(url: str) -> None:
    with pytest.raises(BadAddress):
        check_public_url(url)
    with pytest.raises(BadAddress):
        SoapEndpoint.__init__(object.__new__(SoapEndpoint), None, 0, public_url=url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    ["https://gw.example/so ap", " https://gw.example/soap", "https://gw.example/soap\n", "https://gw.example/\x00"],
)
def test_a_public_url_with_whitespace_or_control_characters_is_refused(url: str) -> None:
    """urlsplit drops leading blanks and tabs/newlines anywhere, so the check looks at the raw setting."""
    with pytest.raises(BadAddress) as refused:
        check_public_url(url)
    assert str(refused.value) == f"GATEWAY_PUBLIC_URL {url!r} contains whitespace or control characters."


@pytest.mark.parametrize(
    ("scheme", "port", "address"),
    [
        ("http", "80", "http://gw.example/soap"),
        ("https", "443", "https://gw.example/soap"),
        ("https", "80", "https://gw.example:80/soap"),
        ("http", "8080", "http://gw.example:8080/soap"),
        ("http", "", "http://gw.example/soap"),
    ],
)
def test_without_a_host_header_the_server_name_and_a_non_default_port_are_used(
    scheme: str, port: str, address: str
) -> None:
    environ = {"wsgi.url_scheme": scheme, "SERVER_NAME": "gw.example", "SERVER_PORT": port, "PATH_INFO": "/soap/"}
    assert request_address(environ, trusted_proxy=False) == address


def test_a_bad_server_name_is_refused_naming_its_source() -> None:
    with pytest.raises(BadAddress) as refused:
        request_address({"SERVER_NAME": "a b", "SERVER_PORT": "80", "PATH_INFO": "/soap"}, trusted_proxy=False)
    assert str(refused.value).startswith("The SERVER_NAME of this request is not a host name")


@pytest.mark.parametrize("proto", ["ftp", "", "https, gopher"])
def test_a_forwarded_proto_other_than_http_or_https_is_refused_only_behind_a_trusted_proxy(proto: str) -> None:
    environ: dict[str, Any] = {"HTTP_HOST": "gw.example", "HTTP_X_FORWARDED_PROTO": proto, "PATH_INFO": "/soap"}
    assert request_address(environ, trusted_proxy=False) == "http://gw.example/soap"
    with pytest.raises(BadAddress) as refused:
        request_address(environ, trusted_proxy=True)
    assert str(refused.value) == "The X-Forwarded-Proto of this request is neither http nor https."


def test_a_trusted_forwarded_proto_keeps_the_host_header_when_no_forwarded_host_is_sent() -> None:
    environ = {
        "HTTP_HOST": "gw.example:8443",
        "HTTP_X_FORWARDED_PROTO": "HTTPS",
        "SCRIPT_NAME": "/gw",
        "PATH_INFO": "/soap",
    }
    assert request_address(environ, trusted_proxy=True) == "https://gw.example:8443/gw/soap"


@pytest.mark.parametrize("count", [0, 2])
def test_a_wsdl_without_exactly_one_soap_address_is_refused(count: int) -> None:
    ports = "".join(f'<soap:address location="http://h{i}/soap"/>' for i in range(count))
    wsdl = f'<definitions xmlns="{WSDL}" xmlns:soap="{SOAP}"><port>{ports}</port></definitions>'
    with pytest.raises(ValueError, match=f"^the WSDL must have exactly one soap:address, it has {count}$"):
        WsdlAddresses(wsdl.encode())


@pytest.mark.parametrize("url", ["https://gw example/soap", "https:///soap", "http://gw:0/soap", "http://[::1/soap"])
def test_a_public_url_without_a_well_formed_host_is_refused_as_a_setting(url: str) -> None:
    """The operator reads which setting is wrong, not the wording meant for a client's Host header."""
    with pytest.raises(BadAddress) as refused:
        check_public_url(url)
    assert str(refused.value) == (
        f"GATEWAY_PUBLIC_URL {url!r} has no well-formed host: expected a host name, IPv4 or [IPv6] "
        "address with an optional port 1-65535."
    )
