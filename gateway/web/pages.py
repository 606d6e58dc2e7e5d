"""What every operator page shares: the login gate, strict security headers, plain and HTML replies.

Pages are server-rendered with one inline stylesheet each; :func:`security_headers` allows exactly
that stylesheet (by hash) and nothing else, so no script, frame or foreign resource can run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Headers = list[tuple[str, str]]
OPERATOR_USER = "operator"
REALM = "edxml-gateway operator"
MAX_FORM_BYTES = 4096
"""Operator forms carry a few short fields; anything larger is refused unread."""


def operator_authorized(authorization: str | None, password: str) -> bool:
    """True when ``authorization`` is Basic credentials for the operator with ``password``.

    Both the user and the password are compared in constant time, and both comparisons always
    run, so a wrong user name is not answered faster than a wrong password.
    """
    if not password or not authorization:
        return False
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, separator, given = decoded.partition(b":")
    user_ok = hmac.compare_digest(user, OPERATOR_USER.encode())
    password_ok = hmac.compare_digest(given, password.encode())
    return bool(separator) and user_ok and password_ok


class FormRefused(Exception):
    """An operator form that must not be acted on: its HTTP status and the line to answer."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def form_token(password: str, purpose: bytes) -> str:
    """The token an operator page puts in its form: bound to the operator password, unknown to other sites."""
    return hmac.new(password.encode(), purpose, hashlib.sha256).hexdigest()


def read_form(environ: dict[str, Any], password: str, purpose: bytes, foreign: str) -> dict[str, list[str]]:
    """The fields of a POSTed operator form, if it came from this gateway's own page.

    A browser sends Basic credentials with any form that targets the gateway, so a form is acted on
    only when its Origin (if sent) is this host and it carries :func:`form_token` for ``purpose``;
    otherwise :class:`FormRefused` (403 with ``foreign``, or 413 for an oversize form).
    """
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and urllib.parse.urlsplit(origin).netloc != environ.get("HTTP_HOST", ""):
        raise FormRefused("403 Forbidden", foreign)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_FORM_BYTES:
        raise FormRefused("413 Payload Too Large", "Form too large.")
    form = urllib.parse.parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
    if not hmac.compare_digest(form.get("token", [""])[0], form_token(password, purpose)):
        raise FormRefused("403 Forbidden", foreign)
    return form


def style_hash(style: str) -> str:
    """The CSP source that allows exactly the inline stylesheet ``style``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()


def security_headers(style: str, form_action: bool = False) -> Headers:
    """No caching, no sniffing, no framing, and a CSP that allows only ``style`` (and forms to self)."""
    forms = " form-action 'self';" if form_action else ""
    return [
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        (
            "Content-Security-Policy",
            f"default-src 'none'; style-src '{style_hash(style)}';{forms} frame-ancestors 'none'",
        ),
    ]


def reply_text(
    start_response: StartResponse, status: str, message: str, headers: Headers, extra: Headers | None = None
) -> Iterable[bytes]:
    body = (message.rstrip("\n") + "\n").encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *headers, *(extra or [])],
    )
    return [body]


def reply_html(start_response: StartResponse, page: str, headers: Headers, head: bool = False) -> Iterable[bytes]:
    body = page.encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *headers]
    )
    return [] if head else [body]


def refuse_unless_operator(
    environ: dict[str, Any], start_response: StartResponse, password: str, headers: Headers
) -> Iterable[bytes] | None:
    """The refusal to send when the request is not the operator's (None when it is)."""
    if not password:
        return reply_text(
            start_response, "503 Service Unavailable", "Set GATEWAY_OPERATOR_PASSWORD to open this page.", headers
        )
    if not operator_authorized(environ.get("HTTP_AUTHORIZATION"), password):
        extra = [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')]
        return reply_text(start_response, "401 Unauthorized", "Operator login required.", headers, extra)
    return None
