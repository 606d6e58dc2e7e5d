"""Per-request state the SOAP handlers need: built by the endpoint, handed to the binding's handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService, StagedDocument

if TYPE_CHECKING:
    from gateway.federation.service import FederationService


MAX_FILES = 1 << 16
"""Files one response may stream (far above any operation's own limit; :func:`numbered` counts to 2**24)."""


@dataclass(frozen=True)
class OutboundFile:
    """A file the response must carry as base64 in place of the placeholder."""

    path: Path
    size: int


def numbered(placeholder: bytes, index: int) -> bytes:
    """The placeholder of a response's ``index``-th file: its last three bytes count (base64 keeps the rest)."""
    return placeholder[:-3] + index.to_bytes(3, "big")


@dataclass
class _Streams:
    """A response that may carry files, streamed in by the endpoint in place of their placeholders."""

    placeholder: bytes
    outbound: list[OutboundFile] = field(default_factory=list, kw_only=True)

    def stream_file(self, path: Path, size: int) -> bytes:
        """Register ``path`` to be streamed into the response; returns the bytes to put in its place.

        Files are streamed in the order they were registered, which must be the order the answer
        carries their placeholders in (getDocuments: the order of its items).
        """
        if len(self.outbound) >= MAX_FILES:
            raise RuntimeError(f"a SOAP response streams at most {MAX_FILES} files")
        placeholder = numbered(self.placeholder, len(self.outbound))
        self.outbound.append(OutboundFile(path, size))
        return placeholder


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
