"""Requests in flight whose answer is streaming: what they delivered so far, under their
server's lease, so that a server killed mid-stream still bills what it delivered.

Revision ID: 0005_inflight
Revises: 0004_batch_jobs
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_inflight"
down_revision = "0004_batch_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inflight",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_nano", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
    )
    op.create_index("ix_inflight_lease", "inflight", ["lease_until"])
    op.create_index("ix_inflight_holder", "inflight", ["holder"])


def downgrade() -> None:
    op.drop_table("inflight")
