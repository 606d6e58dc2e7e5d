"""The binding's answer to one SOAP request, whether Spyne or :mod:`gateway.soap.binding.fast` wrote it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """The response to one SOAP request, not yet sent: by Spyne or, for a simple poll, send or fetch, by fast.py."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes
    fault_code: str | None
    """The gateway fault code when the answer is a fault."""
    fault_message: str | None = None
