"""Hand a document to the exchange service the way the SOAP layer does: staged in the blob store."""

from __future__ import annotations

from pathlib import Path

from gateway.exchange.service import ExchangeService, StagedDocument
from gateway.store.blobs import StagedBlob


def stage(service: ExchangeService, document: bytes | Path, *, on_disk: bool = False) -> StagedDocument:
    """Write ``document`` (bytes or a file) into a fresh staging blob of ``service``.

    Small documents are staged in memory; ``on_disk`` stages this one in a file, as a document
    past the memory limit is.
    """
    staged = StagedBlob(service.blobs, limit=0) if on_disk else service.begin_staging()
    staged.write(document.read_bytes() if isinstance(document, Path) else document)
    staged.flush()
    return staged
