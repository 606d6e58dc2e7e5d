"""Per-request state the SOAP handlers need: built by the endpoint, handed to the binding's handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService, StagedDocument

if TYPE_CHECKING:
    from gateway.federation.service import FederationService


@dataclass(frozen=True)
class OutboundFile:
    """A file the response must carry as base64 in place of the placeholder."""

    path: Path
    size: int


@dataclass
class _Streams:
    """A response that may carry one file, streamed in by the endpoint in place of ``placeholder``."""

    placeholder: bytes
    outbound: OutboundFile | None = field(default=None, kw_only=True)

    def stream_file(self, path: Path, size: int) -> bytes:
        """Register ``path`` to be streamed into the response; returns the bytes to put in its place.

        A response carries at most one file: the placeholder is replaced once.
        """
        if self.outbound is not None:
            raise RuntimeError("a SOAP response can stream only one file")
        self.outbound = OutboundFile(path, size)
        return self.placeholder


@dataclass
class RequestContext(_Streams):
    """What one agency's SOAP call carries besides its parameters."""

    exchange: ExchangeService = field(kw_only=True)
    staged_document: StagedDocument | None = field(kw_only=True)
    caller: Caller | None = field(default=None, kw_only=True)
    """Authenticated by the envelope reader when it reached ``<Body>``; handlers never authenticate again."""


@dataclass
class RelayContext(_Streams):
    """What one relay call from a peer instance carries besides its parameters."""

    federation: FederationService = field(kw_only=True)
    peer: str = field(kw_only=True)
    """The calling instance, authenticated by the envelope reader at ``<Body>``."""
    staged: StagedDocument | None = field(kw_only=True)
