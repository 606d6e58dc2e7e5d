"""``/dashboard``: the read-only operator page, behind HTTP Basic authentication.

The page shows agency names, document subjects and who is late, which is not for the public,
so it is closed unless an operator password is configured (``GATEWAY_OPERATOR_PASSWORD``): with
none set it answers 503 and says so, rather than opening by default. Credentials are compared
with :func:`hmac.compare_digest` so response timing does not reveal how much of a guess matched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.config import Settings
from gateway.store.database import Database
from gateway.web.pages import (
    REALM,
    FormRefused,
    form_token,
    operator_authorized,
    read_form,
    refuse_unless_operator,
)
from gateway.web.queries import Limits, overview
from gateway.web.render import STYLE_HASH, render

log = logging.getLogger("gateway.web")

StartResponse = Callable[..., Any]
UNSET_MESSAGE = "The operator dashboard is disabled: set GATEWAY_OPERATOR_PASSWORD and restart the gateway.\n"
_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", f"default-src 'none'; style-src '{STYLE_HASH}'; frame-ancestors 'none'"),
]


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


REQUEUE_PURPOSE = b"relay-requeue"


def requeue_token(password: str) -> str:
    """The token the dashboard's requeue forms carry (see :func:`gateway.web.pages.form_token`)."""
    return form_token(password, REQUEUE_PURPOSE)


class RelayRequeue:
    """``POST /relay-requeue``: put a failed consignment back in line from the dashboard (audited).

    Same login as the dashboard; the form must come from the dashboard itself (:func:`read_form`),
    because a browser sends Basic credentials with any form that targets this gateway.
    """

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        from gateway.federation import outbox

        password = self.settings.operator_password
        refusal = refuse_unless_operator(environ, start_response, password, _SECURITY_HEADERS)
        if refusal is not None:
            return refusal
        if environ.get("REQUEST_METHOD") != "POST":
            return _text(start_response, "405 Method Not Allowed", "POST the dashboard's form.\n", [("Allow", "POST")])
        try:
            form = read_form(environ, password, REQUEUE_PURPOSE, "Requeue from this gateway's own dashboard.")
        except FormRefused as refused:
            return _text(start_response, refused.status, refused.message + "\n")
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
