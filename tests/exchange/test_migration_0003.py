"""Migration 0003_exchange sizes the status messages already stored, so polls never stat() them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store.blobs import BlobStore
from gateway.store.database import Database

ROWS = """
INSERT INTO agencies (id, code, name, level, active, require_signature, test_code, created_at)
VALUES (1, '000.00.00.G22', 'VPCP', 1, true, false, false, '2026-11-20 01:30:00');
INSERT INTO documents (id, sender_id, edxml_document_id, code_number, code_notation, subject, type_name,
    promulgation_date, business_type, blob_sha256, size, attachment_count, created_at)
VALUES ('d1', 1, 'doc-1', '1', 'VPCP', 's', 'Công văn', '2026-11-20', 0, :document_sha, 10, 0, '2026-11-20 01:30:00');
"""


def test_existing_status_events_get_their_size(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    stored_sha, stored_size = blobs.put_bytes(b"<StatusMessage>01</StatusMessage>")
    missing_sha = "f" * 64
    database = Database(db_url)
    try:
        database.upgrade("0002")
        with database.engine.begin() as connection:
            for statement in filter(str.strip, ROWS.split(";")):
                connection.execute(text(statement), {"document_sha": stored_sha})
            for event_id, sha in ((1, stored_sha), (2, missing_sha), (3, None)):
                connection.execute(
                    text(
                        "INSERT INTO status_events (id, document_id, recipient_agency_id, reporter_agency_id, code, "
                        "reported_at, blob_sha256) VALUES (:id, 'd1', 1, 1, '01', '2026-11-20 01:30:00', :sha)"
                    ),
                    {"id": event_id, "sha": sha},
                )
        monkeypatch.setenv("GATEWAY_BLOB_DIR", str(blobs.root))
        database.upgrade()
        with database.engine.connect() as connection:
            sizes = dict(connection.execute(text("SELECT id, blob_size FROM status_events ORDER BY id")).all())
    finally:
        database.dispose()
    assert sizes == {1: stored_size, 2: None, 3: None}, "a blob the store does not hold keeps no size"
