"""Hand a document to the exchange service the way the SOAP layer does: staged in the blob store."""

from __future__ import annotations

from pathlib import Path

from gateway.exchange.service import ExchangeService, StagedDocument


def stage(service: ExchangeService, document: bytes | Path) -> StagedDocument:
    """Write ``document`` (bytes or a file) into a fresh staging blob of ``service``."""
    staged = service.begin_staging()
    staged.write(document.read_bytes() if isinstance(document, Path) else document)
    staged.flush()
    return staged
