"""The binding's answer to one SOAP request, whether Spyne or :mod:`gateway.soap.binding.fast` wrote it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """Spyne's response to one SOAP request, not yet sent."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes
    fault_code: str | None
    """The gateway fault code when the answer is a fault."""
    fault_message: str | None = None
