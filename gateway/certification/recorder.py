"""Keeps the faults an agency under certification provokes, as evidence for its run.

A WSGI middleware around the router: after each request it reads what the SOAP endpoint
recorded in the environ (``gateway.agency``, ``gateway.operation``, ``gateway.fault_code``,
``gateway.fault_message``) and, for an authenticated agency's fault, hands it to
:meth:`Certifications.record_fault`, which keeps it only while that agency has an active run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from gateway.certification.engine import Certifications

log = logging.getLogger("gateway.certification")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FaultRecorder:
    """Wraps ``app``; records certification evidence once a response is complete."""

    def __init__(self, app: WsgiApp, certifications: Certifications) -> None:
        self.app = app
        self.certifications = certifications

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        result = self.app(environ, start_response)
        code = environ.get("gateway.fault_code")
        agency = environ.get("gateway.agency")
        if code and agency:
            try:
                self.certifications.record_fault(
                    agency,
                    environ.get("gateway.operation") or "unknown",
                    code,
                    environ.get("gateway.fault_message", ""),
                )
            except Exception:
                log.exception("could not record a certification fault for %s", agency)
        return result
