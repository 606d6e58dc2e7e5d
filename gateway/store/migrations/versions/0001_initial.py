"""Initial schema: agencies, credentials, documents, recipients, status events, deliveries, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=35), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("parent_code", sa.String(length=35), nullable=True),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("require_signature", sa.Boolean(), nullable=False),
        sa.Column("test_code", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_agencies_parent_code", "agencies", ["parent_code"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=35), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hash"),
    )
    op.create_index("ix_audit_log_document_id", "audit_log", ["document_id"])
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_credentials_agency_id", "credentials", ["agency_id"])
    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("edxml_document_id", sa.String(length=500), nullable=False),
        sa.Column("code_number", sa.String(length=100), nullable=False),
        sa.Column("code_notation", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("type_name", sa.String(length=200), nullable=False),
        sa.Column("promulgation_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("business_type", sa.Integer(), nullable=False),
        sa.Column("supersedes_id", sa.String(length=36), nullable=True),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("attachment_count", sa.Integer(), nullable=False),
        sa.Column("signer", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recalled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["sender_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["supersedes_id"], ["documents.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender_id", "edxml_document_id", name="uq_documents_sender_docid"),
    )
    op.create_index("ix_documents_created_at", "documents", ["created_at"])
    op.create_index("ix_documents_sender_id", "documents", ["sender_id"])
    op.create_index("ix_documents_supersedes_id", "documents", ["supersedes_id"])
    op.create_table(
        "recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=2), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recall_state", sa.String(length=2), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("document_id", "agency_id", name="uq_recipients_doc_agency"),
    )
    op.create_index("ix_recipients_agency_id", "recipients", ["agency_id"])
    op.create_table(
        "status_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_agency_id", sa.Integer(), nullable=False),
        sa.Column("reporter_agency_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=2), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("staff_department", sa.String(length=300), nullable=True),
        sa.Column("staff_name", sa.String(length=300), nullable=True),
        sa.Column("staff_email", sa.String(length=200), nullable=True),
        sa.Column("staff_mobile", sa.String(length=50), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"]),
        sa.ForeignKeyConstraint(["recipient_agency_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["reporter_agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_status_events_document_id", "status_events", ["document_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("status_event_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"]),
        sa.ForeignKeyConstraint(["status_event_id"], ["status_events.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deliveries_document_id", "deliveries", ["document_id"])
    op.create_index("ix_deliveries_queue", "deliveries", ["agency_id", "state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_queue", table_name="deliveries")
    op.drop_index("ix_deliveries_document_id", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_status_events_document_id", table_name="status_events")
    op.drop_table("status_events")
    op.drop_index("ix_recipients_agency_id", table_name="recipients")
    op.drop_table("recipients")
    op.drop_index("ix_documents_supersedes_id", table_name="documents")
    op.drop_index("ix_documents_sender_id", table_name="documents")
    op.drop_index("ix_documents_created_at", table_name="documents")
    op.drop_table("documents")
    op.drop_index("ix_credentials_agency_id", table_name="credentials")
    op.drop_table("credentials")
    op.drop_index("ix_audit_log_document_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_agencies_parent_code", table_name="agencies")
    op.drop_table("agencies")
