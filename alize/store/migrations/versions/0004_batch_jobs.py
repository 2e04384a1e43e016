"""Batch jobs and their answered lines.

Revision ID: 0004_batch_jobs
Revises: 0003_files
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_batch_jobs"
down_revision = "0003_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("metadata_json", sa.Text, nullable=True),
        sa.Column("input_files", sa.Text, nullable=False),
        sa.Column("inline_requests", sa.Text, nullable=True),
        sa.Column("timeout_hours", sa.Integer, nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("total_requests", sa.Integer, nullable=False),
        sa.Column("succeeded_requests", sa.Integer, nullable=False),
        sa.Column("failed_requests", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("output_file", sa.String(36), nullable=True),
        sa.Column("error_file", sa.String(36), nullable=True),
        sa.Column("failure", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_batch_jobs_workspace_time", "batch_jobs", ["workspace_id", "created_at"])
    op.create_index("ix_batch_jobs_status", "batch_jobs", ["status"])
    op.create_table(
        "batch_lines",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("custom_id", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("batch_lines")
    op.drop_table("batch_jobs")
