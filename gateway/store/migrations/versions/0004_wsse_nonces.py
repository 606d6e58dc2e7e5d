"""WS-Security nonces seen recently, so a replayed UsernameToken is refused on every worker and node.

Revision ID: 0004_wsse_nonces
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_wsse_nonces"
down_revision: str | None = "0003_exchange"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "wsse_nonces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("nonce_sha256", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "nonce_sha256", name="uq_wsse_nonces_agency_nonce"),
    )
    op.create_index("ix_wsse_nonces_expires_at", "wsse_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_wsse_nonces_expires_at", table_name="wsse_nonces")
    op.drop_table("wsse_nonces")
