"""Drop ix_documents_sender_id: uq_documents_sender_docid already leads with sender_id.

Revision ID: 0008_drop_sender_index
Revises: 0007_audit_append
Create Date: 2026-12-03

Every send inserts a documents row, and each index on the table is one more entry to write (and on
PostgreSQL more WAL to flush at COMMIT). A query by sender alone is served as well by the unique
index on (sender_id, edxml_document_id), whose first column is the sender.
"""

from __future__ import annotations

from alembic import op

revision: str = "0008_drop_sender_index"
down_revision: str | None = "0007_audit_append"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.drop_index("ix_documents_sender_id", table_name="documents")


def downgrade() -> None:
    op.create_index("ix_documents_sender_id", "documents", ["sender_id"])
