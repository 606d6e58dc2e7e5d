"""``/dashboard``: the read-only operator page, behind HTTP Basic authentication.

The page shows agency names, document subjects and who is late, which is not for the public,
so it is closed unless an operator password is configured (``GATEWAY_OPERATOR_PASSWORD``): with
none set it answers 503 and says so, rather than opening by default. Credentials are compared
with :func:`hmac.compare_digest` so response timing does not reveal how much of a guess matched.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.config import Settings
from gateway.store.database import Database
from gateway.web.queries import Limits, overview
from gateway.web.render import STYLE_HASH, render

log = logging.getLogger("gateway.web")

StartResponse = Callable[..., Any]
OPERATOR_USER = "operator"
REALM = "edxml-gateway operator"
UNSET_MESSAGE = "The operator dashboard is disabled: set GATEWAY_OPERATOR_PASSWORD and restart the gateway.\n"
_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", f"default-src 'none'; style-src '{STYLE_HASH}'; frame-ancestors 'none'"),
]


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


class Dashboard:
    """WSGI callable serving the dashboard from ``db`` with ``settings``' password and overdue hours."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits or Limits()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        password = self.settings.operator_password
        if not password:
            return _text(start_response, "503 Service Unavailable", UNSET_MESSAGE)
        if not operator_authorized(environ.get("HTTP_AUTHORIZATION"), password):
            headers = [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')]
            return _text(start_response, "401 Unauthorized", "Operator login required.\n", headers)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "The dashboard is read-only.\n", [("Allow", "GET")])
        try:
            with self.db.transaction() as session:
                page = render(
                    overview(session, self.clock(), self.settings.ack_overdue_hours, self.limits),
                    requeue_token(password),
                )
        except Exception:
            log.exception("dashboard failed")
            return _text(start_response, "503 Service Unavailable", "The store could not be read; retry.\n")
        body = page.encode("utf-8")
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *_SECURITY_HEADERS],
        )
        return [] if method == "HEAD" else [body]


def requeue_token(password: str) -> str:
    """The token the requeue form carries: bound to the operator password, unknown to other sites."""
    return hmac.new(password.encode(), b"relay-requeue", "sha256").hexdigest()


class RelayRequeue:
    """``POST /relay-requeue``: put a failed consignment back in line from the dashboard (audited).

    Same login as the dashboard; same-origin and the page's token required, because a browser sends
    Basic credentials with any form that targets this gateway.
    """

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        from urllib.parse import parse_qs, urlsplit

        from gateway.federation import outbox

        password = self.settings.operator_password
        if not password:
            return _text(start_response, "503 Service Unavailable", UNSET_MESSAGE)
        if not operator_authorized(environ.get("HTTP_AUTHORIZATION"), password):
            headers = [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')]
            return _text(start_response, "401 Unauthorized", "Operator login required.\n", headers)
        if environ.get("REQUEST_METHOD") != "POST":
            return _text(start_response, "405 Method Not Allowed", "POST the dashboard's form.\n", [("Allow", "POST")])
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and urlsplit(origin).netloc != environ.get("HTTP_HOST", ""):
            return _text(start_response, "403 Forbidden", "Requeue from this gateway's own dashboard.\n")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(min(length, 4096)).decode("utf-8", "replace"))
        if not hmac.compare_digest(form.get("token", [""])[0], requeue_token(password)):
            return _text(start_response, "403 Forbidden", "Requeue from this gateway's own dashboard.\n")
        consignment = form.get("consignment", [""])[0]
        with self.db.transaction() as session:
            row = outbox.requeue(session, consignment, self.clock(), actor="operator (dashboard)")
        if row is None:
            return _text(start_response, "404 Not Found", f"No failed consignment {consignment}.\n")
        start_response("303 See Other", [("Location", "/dashboard"), ("Content-Length", "0"), *_SECURITY_HEADERS])
        return []


def _text(
    start_response: StartResponse, status: str, message: str, extra: list[tuple[str, str]] | None = None
) -> Iterable[bytes]:
    body = message.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, [*headers, *_SECURITY_HEADERS[:2], *(extra or [])])
    return [body]
