"""Status messages carry their blob's size, so a poll lists them without one stat() per item.

Revision ID: 0003_exchange
Revises: 0002
Create Date: 2026-12-01

Existing rows are sized from the blob store of the gateway's settings (``GATEWAY_BLOB_DIR`` or
``GATEWAY_DATA_DIR``/blobs, as ``edxml-gateway db upgrade`` sees them). A row whose blob is not
found there keeps a NULL size; the exchange then falls back to the file's size for that row alone.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from alembic import op

revision: str = "0003_exchange"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("status_events") as batch:
        batch.add_column(sa.Column("blob_size", sa.BigInteger(), nullable=True))
    _size_existing_rows()


def _size_existing_rows() -> None:
    from gateway.config import Settings
    from gateway.store.blobs import BlobStore, check_sha256

    blob_dir = Settings.from_env().blob_dir
    if blob_dir is None or not blob_dir.is_dir():
        return
    blobs = BlobStore(blob_dir)
    bind = op.get_bind()
    events = sa.table("status_events", sa.column("id", sa.Integer), sa.column("blob_sha256"), sa.column("blob_size"))
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(events.c.id, events.c.blob_sha256)
            .where(events.c.id > last_id, events.c.blob_size.is_(None), events.c.blob_sha256.is_not(None))
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        sizes = []
        for event_id, sha256 in rows:
            with contextlib.suppress(FileNotFoundError, ValueError):
                sizes.append({"event_id": event_id, "size": blobs.size(check_sha256(sha256))})
        if sizes:
            bind.execute(
                events.update().where(events.c.id == sa.bindparam("event_id")).values(blob_size=sa.bindparam("size")),
                sizes,
            )
        last_id = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("status_events") as batch:
        batch.drop_column("blob_size")
