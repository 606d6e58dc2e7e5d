"""Per-request state the SOAP handlers need: built by the endpoint, handed to the binding's handlers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService, StagedDocument


@dataclass(frozen=True)
class OutboundFile:
    """A file the response must carry as base64 in place of the placeholder."""

    path: Path
    size: int


@dataclass
class RequestContext:
    """What one SOAP call carries besides its parameters."""

    exchange: ExchangeService
    staged_document: StagedDocument | None
    placeholder: bytes
    caller: Caller | None = None
    """Authenticated by the envelope reader when it reached ``<Body>``; handlers never authenticate again."""
    outbound: OutboundFile | None = None

    def stream_file(self, path: Path, size: int) -> bytes:
        """Register ``path`` to be streamed into the response; returns the bytes to put in its place.

        A response carries at most one file: the placeholder is replaced once.
        """
        if self.outbound is not None:
            raise RuntimeError("a SOAP response can stream only one file")
        self.outbound = OutboundFile(path, size)
        return self.placeholder
