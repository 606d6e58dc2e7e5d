"""What every operator page shares: the login gate, strict security headers, plain and HTML replies.

Pages are server-rendered with one inline stylesheet each; :func:`security_headers` allows exactly
that stylesheet (by hash) and nothing else, so no script, frame or foreign resource can run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from gateway.web.dashboard import REALM, operator_authorized

StartResponse = Callable[..., Any]
Headers = list[tuple[str, str]]


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
