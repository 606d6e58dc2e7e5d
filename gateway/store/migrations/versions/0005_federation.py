"""Network of gateways: peers, relay outbox and inbound dedupe, home instance of agencies.

Revision ID: 0005_federation
Revises: 0002
Create Date: 2026-12-01

See docs/federation.md. ``agencies.home_instance`` NULL means "served here", so an existing
standalone gateway keeps working unchanged; existing rows get ``directory_version`` = their id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_federation"
down_revision: str | None = "0004_wsse_nonces"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("agencies") as batch:
        batch.add_column(sa.Column("home_instance", sa.String(length=35), nullable=True))
        batch.add_column(sa.Column("directory_version", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_index("ix_agencies_directory_version", ["directory_version"])
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("origin_instance", sa.String(length=35), nullable=True))
        batch.add_column(sa.Column("origin_document_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_documents_origin", ["origin_instance", "origin_document_id"])
    op.create_table(
        "peers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=35), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("secret_hash", sa.String(length=300), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instance_id"),
    )
    op.create_table(
        "relay_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("next_hop", sa.String(length=35), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=True),
        sa.Column("origin_instance", sa.String(length=35), nullable=False),
        sa.Column("origin_document_id", sa.String(length=36), nullable=False),
        sa.Column("sender_code", sa.String(length=35), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("payload_size", sa.BigInteger(), nullable=False),
        sa.Column("hop_count", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status_code", sa.String(length=2), nullable=True),
        sa.Column("recipient_code", sa.String(length=35), nullable=True),
        sa.Column("reporter_code", sa.String(length=35), nullable=True),
        sa.Column("reported_at", _TS, nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("staff_department", sa.String(length=300), nullable=True),
        sa.Column("staff_name", sa.String(length=300), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_relay_outbox_hop_state", "relay_outbox", ["next_hop", "state", "next_attempt_at"])
    op.create_index("ix_relay_outbox_document_id", "relay_outbox", ["document_id"])
    op.create_table(
        "relay_inbound",
        sa.Column("consignment_id", sa.String(length=36), nullable=False),
        sa.Column("from_peer", sa.String(length=35), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("local_document_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("consignment_id"),
    )
    op.create_table(
        "relay_state",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Agencies that exist already get versions too, so a first getDirectory(0) publishes them, and
    # the counter row exists from the start (no two first writers racing to create it).
    op.execute("UPDATE agencies SET directory_version = id")
    op.execute("INSERT INTO relay_state (name, value) SELECT 'directory_version', COALESCE(MAX(id), 0) FROM agencies")


def downgrade() -> None:
    op.drop_table("relay_state")
    op.drop_table("relay_inbound")
    op.drop_index("ix_relay_outbox_document_id", table_name="relay_outbox")
    op.drop_index("ix_relay_outbox_hop_state", table_name="relay_outbox")
    op.drop_table("relay_outbox")
    op.drop_table("peers")
    with op.batch_alter_table("documents") as batch:
        batch.drop_index("ix_documents_origin")
        batch.drop_column("origin_document_id")
        batch.drop_column("origin_instance")
    with op.batch_alter_table("agencies") as batch:
        batch.drop_index("ix_agencies_directory_version")
        batch.drop_column("directory_version")
        batch.drop_column("home_instance")
