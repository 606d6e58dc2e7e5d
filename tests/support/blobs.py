"""Looking into a blob store from tests: which blobs are there (the gateway only reads blobs by name)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.store.blobs import BlobStore

_SHA256 = re.compile(r"[0-9a-f]{64}")


def stored_blobs(store: BlobStore) -> Iterator[str]:
    """Yield the sha256 of every stored blob (not temp files), in no particular order."""
    return store.iter_blobs()


def blob_exists(store: BlobStore, sha256: str) -> bool:
    """Whether blob ``sha256`` is stored under its name."""
    return store.path(sha256).is_file()
