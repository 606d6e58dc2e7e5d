"""Looking into a blob store from tests: which blobs are there (the gateway only reads blobs by name)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.store.blobs import BlobStore

_SHA256 = re.compile(r"[0-9a-f]{64}")


def stored_blobs(store: BlobStore) -> Iterator[str]:
    """Yield the sha256 of every stored blob (not temp files), in no particular order."""
    for first in sorted(store.root.iterdir()):
        if len(first.name) != 2 or not first.is_dir():
            continue
        for second in sorted(first.iterdir()):
            if len(second.name) != 2 or not second.is_dir():
                continue
            for entry in sorted(second.iterdir()):
                name = entry.name
                if _SHA256.fullmatch(name) and name.startswith(first.name + second.name):
                    yield name


def blob_exists(store: BlobStore, sha256: str) -> bool:
    """Whether blob ``sha256`` is stored under its name."""
    return store.path(sha256).is_file()
