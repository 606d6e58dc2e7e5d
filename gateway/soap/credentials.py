"""Reads the caller's agency code and secret from the SOAP header.

Two forms are accepted: the WSDL-declared ``AuthHeader`` (what generated stubs send) and a
WS-Security ``UsernameToken`` with a plain-text password (what WS-Security-aware stacks send;
the digest form cannot work because only a hash of each secret is stored).
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from gateway.soap.namespaces import NAMESPACE

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
)


def header_credentials(header_elements: Iterable[etree._Element] | None) -> tuple[str | None, str | None]:
    """(agency code, secret) from the SOAP header children, or (None, None) when absent."""
    for element in header_elements or ():
        if not isinstance(element.tag, str):
            continue
        if element.tag == f"{{{NAMESPACE}}}AuthHeader":
            return _text(element, f"{{{NAMESPACE}}}agencyCode"), _text(element, f"{{{NAMESPACE}}}secret")
        if element.tag == f"{{{WSSE}}}Security":
            token = element.find(f"{{{WSSE}}}UsernameToken")
            if token is None:
                continue
            password = token.find(f"{{{WSSE}}}Password")
            if password is not None and password.get("Type", PASSWORD_TEXT) != PASSWORD_TEXT:
                return _text(token, f"{{{WSSE}}}Username"), None
            return _text(token, f"{{{WSSE}}}Username"), _text(token, f"{{{WSSE}}}Password")
    return None, None


def _text(parent: etree._Element, tag: str) -> str | None:
    child = parent.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None
