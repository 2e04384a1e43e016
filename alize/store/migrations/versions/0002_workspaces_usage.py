"""Workspaces, key settings (expiry, models, limits, rotation), usage records.

Existing keys move into a workspace named "default".

Revision ID: 0002_workspaces_usage
Revises: 0001_api_keys
"""
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_workspaces_usage"
down_revision = "0001_api_keys"
branch_labels = None
depends_on = None


def _limit_columns() -> list[sa.Column]:
    return [
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("monthly_tokens", sa.BigInteger, nullable=True),
        sa.Column("monthly_budget_nano", sa.BigInteger, nullable=True),
    ]


def upgrade() -> None:
    workspaces = op.create_table(
        "workspaces",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_limit_columns(),
    )
    default_id = str(uuid.uuid4())
    op.bulk_insert(workspaces, [{"id": default_id, "name": "default", "created_at": datetime.now(UTC)}])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("workspace_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("allowed_models", sa.Text, nullable=True))
        batch.add_column(sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("previous_secret_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True))
        for column in _limit_columns():
            batch.add_column(column)
    op.execute(sa.text("UPDATE api_keys SET workspace_id = :ws").bindparams(ws=default_id))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("workspace_id", existing_type=sa.String(36), nullable=False)
        batch.create_foreign_key("fk_api_keys_workspace", "workspaces", ["workspace_id"], ["id"])
        batch.create_index("ix_api_keys_workspace_id", ["workspace_id"])
        batch.create_index("ix_api_keys_previous_secret_hash", ["previous_secret_hash"])
    op.create_table(
        "usage",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_nano", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
    )
    op.create_index("ix_usage_key_time", "usage", ["key_id", "created_at"])
    op.create_index("ix_usage_workspace_time", "usage", ["workspace_id", "created_at"])
    op.create_index("ix_usage_day", "usage", ["day"])


def downgrade() -> None:
    op.drop_table("usage")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_previous_secret_hash")
        batch.drop_index("ix_api_keys_workspace_id")
        batch.drop_constraint("fk_api_keys_workspace", type_="foreignkey")
        for name in ("workspace_id", "expires_at", "allowed_models", "is_admin", "previous_secret_hash",
                     "previous_valid_until", "rpm", "tpm", "monthly_tokens", "monthly_budget_nano"):
            batch.drop_column(name)
    op.drop_table("workspaces")
