"""Operator monitoring pages served by the gateway itself (``/dashboard``).

Server-rendered, read-only, and closed unless an operator password is configured; the numbers
come from :mod:`gateway.web.queries`, bounded versions of :mod:`gateway.reports`.
"""

from gateway.web.dashboard import Dashboard

__all__ = ["Dashboard"]
