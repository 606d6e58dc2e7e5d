"""The endpoint address the served WSDL names, and how it is written into the WSDL.

Stubs call whatever ``soap:address`` says, so the address must be one the operator stands behind:
``GATEWAY_PUBLIC_URL`` when set (then no request header matters), else the address the client
used, read from ``Host`` (and ``X-Forwarded-Host``/``X-Forwarded-Proto`` only when the operator
says a proxy in front sets them, ``GATEWAY_TRUSTED_PROXY=1``). A header value that is not a
well-formed RFC 3986 host with an optional port 1-65535 is refused, and the accepted address is
written with lxml as an attribute value, never spliced into the document's bytes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from copy import deepcopy
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from lxml import etree

WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
MAX_AUTHORITY = 300
"""A DNS name has at most 253 characters; a port and brackets add a few more."""
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
"""RFC 3986 §3.2.2 ``reg-name`` (non-empty); an IPv4 address is one too."""
_PORT = re.compile(r"[0-9]{1,5}")
_SCHEMES = ("http", "https")


class BadAddress(ValueError):
    """A header or setting that cannot name the gateway's endpoint."""


def check_authority(value: str, source: str) -> str:
    """``value`` if it is ``host[:port]`` (reg-name, IPv4 or [IPv6]; port 1-65535), else BadAddress."""
    if not value or len(value) > MAX_AUTHORITY:
        raise _bad(value, source)
    if value.startswith("["):
        literal, bracket, rest = value[1:].partition("]")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise _bad(value, source) from None
        if not bracket or "%" in literal:
            raise _bad(value, source)
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            raise _bad(value, source)
    else:
        host, colon, port_text = value.partition(":")
        if not _REG_NAME.fullmatch(host):
            raise _bad(value, source)
        port = port_text if colon else None
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise _bad(value, source)
    return value


def check_public_url(url: str) -> str:
    """``GATEWAY_PUBLIC_URL`` if it is an absolute http(s) URL with a well-formed host, else BadAddress."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced [ or ] around the host
        raise _bad_public_host(url) from None
    if parts.scheme not in _SCHEMES or parts.query or parts.fragment or parts.username or parts.password:
        raise BadAddress(
            f"GATEWAY_PUBLIC_URL {url!r} must be the endpoint's absolute http(s) address, "
            "e.g. https://gateway.example.gov.vn/soap (no query, fragment or user)."
        )
    try:
        check_authority(parts.netloc, "GATEWAY_PUBLIC_URL")
    except BadAddress:
        raise _bad_public_host(url) from None
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise BadAddress(f"GATEWAY_PUBLIC_URL {url!r} contains whitespace or control characters.")
    return url


def request_address(environ: dict[str, Any], trusted_proxy: bool) -> str:
    """The address the client reached the endpoint through, from checked headers only."""
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    host_source, host = "Host", environ.get("HTTP_HOST")
    if trusted_proxy:
        forwarded_proto = _last(environ.get("HTTP_X_FORWARDED_PROTO"))
        if forwarded_proto is not None:
            if forwarded_proto.lower() not in _SCHEMES:
                raise BadAddress("The X-Forwarded-Proto of this request is neither http nor https.")
            scheme = forwarded_proto.lower()
        forwarded_host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
        if forwarded_host is not None:
            host_source, host = "X-Forwarded-Host", forwarded_host
    if host is None:
        host_source, host = "SERVER_NAME", str(environ.get("SERVER_NAME", ""))
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    authority = check_authority(str(host), host_source)
    path = quote(f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}".rstrip("/") or "/")
    return f"{scheme}://{authority}{path}"


class WsdlAddresses:
    """The WSDL with a given endpoint address, built from the published one by setting one attribute."""

    def __init__(self, wsdl: bytes, cached: int = 32) -> None:
        self.template = etree.fromstring(wsdl)
        addresses = self.template.findall(f".//{{{WSDL_SOAP}}}address")
        if len(addresses) != 1:
            raise ValueError(f"the WSDL must have exactly one soap:address, it has {len(addresses)}")
        self.for_location: Callable[[str], bytes] = lru_cache(maxsize=cached)(self._render)
        """``for_location(address)``: the WSDL bytes naming ``address``; the last few are kept."""

    def _render(self, location: str) -> bytes:
        tree = deepcopy(self.template)
        address = tree.find(f".//{{{WSDL_SOAP}}}address")
        assert address is not None
        address.set("location", location)
        return etree.tostring(tree, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def _last(header: str | None) -> str | None:
    """The value the nearest proxy set: the last of a comma-separated list, stripped."""
    if header is None:
        return None
    return header.rsplit(",", 1)[-1].strip()


def _bad(value: str, source: str) -> BadAddress:
    """The refusal; it does not repeat ``value``, which may be anything a client sent."""
    return BadAddress(
        f"The {source} of this request is not a host name or address with an optional port (1-65535), so "
        "the WSDL cannot name this gateway's address from it."
    )


def _bad_public_host(url: str) -> BadAddress:
    """The refusal of the setting's host; unlike a header, the operator's own value is worth repeating."""
    return BadAddress(
        f"GATEWAY_PUBLIC_URL {url!r} has no well-formed host: expected a host name, IPv4 or [IPv6] "
        "address with an optional port 1-65535."
    )
