"""Certification runs: the sandbox agency flag, runs, their checks and the faults provoked.

Revision ID: 0006_certification
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_certification"
down_revision: str | None = "0005_federation"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy of the table: on SQLite that would drop a table others reference).
    op.add_column("agencies", sa.Column("sandbox", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "certification_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agency_id", sa.Integer(), sa.ForeignKey("agencies.id"), nullable=False),
        sa.Column("started_by", sa.String(60), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grade", sa.String(60), nullable=True),
        sa.Column("documents", sa.Text(), nullable=False),
    )
    op.create_index("ix_certification_runs_agency_id", "certification_runs", ["agency_id"])
    op.create_table(
        "certification_checks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("certification_runs.id"), nullable=False),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("run_id", "key", name="uq_certification_checks_run_key"),
    )
    op.create_index("ix_certification_checks_run_id", "certification_checks", ["run_id"])
    op.create_table(
        "certification_faults",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("certification_runs.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation", sa.String(60), nullable=False),
        sa.Column("code", sa.String(60), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_certification_faults_run_id", "certification_faults", ["run_id"])


def downgrade() -> None:
    op.drop_table("certification_faults")
    op.drop_table("certification_checks")
    op.drop_table("certification_runs")
    op.drop_column("agencies", "sandbox")
