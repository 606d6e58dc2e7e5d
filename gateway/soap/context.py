"""Per-request state the SOAP handlers need, attached to Spyne's ``ctx.udc``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService, StagedDocument


@dataclass
class OutboundFile:
    """A file the response must carry as base64 in place of ``placeholder``."""

    path: Path
    size: int


@dataclass
class RequestContext:
    """What one SOAP call carries besides its parameters."""

    exchange: ExchangeService
    caller: Caller | None
    """Authenticated by the envelope reader when it reached ``<Body>``; handlers never authenticate again."""
    staged_document: StagedDocument | None
    placeholder: bytes
    outbound: list[OutboundFile] = field(default_factory=list)

    def stream_file(self, path: Path, size: int) -> bytes:
        """Register ``path`` to be streamed into the response; returns the bytes to put in its place."""
        self.outbound.append(OutboundFile(path, size))
        return self.placeholder
