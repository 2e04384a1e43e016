"""The console: workspace-scoped admin keys, console sessions, daily usage roll-ups.

usage_daily holds one row per day, workspace, key, model and endpoint, added to in the
same transaction as each usage record (store/usage.py), so that a year of traffic reports
in milliseconds; it is filled here from the records already written.

Revision ID: 0006_console
Revises: 0005_inflight
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_console"
down_revision = "0005_inflight"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("admin_scoped", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the cookie's token
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sessions_key", "console_sessions", ["key_id"])
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("workspace_id", sa.String(36), primary_key=True),
        sa.Column("key_id", sa.String(36), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),  # "" where the record has none
        sa.Column("endpoint", sa.String(100), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_nano", sa.BigInteger, nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_usage_daily_workspace_day", "usage_daily", ["workspace_id", "day"])
    op.create_index("ix_usage_daily_key_day", "usage_daily", ["key_id", "day"])
    op.execute(
        "INSERT INTO usage_daily (day, workspace_id, key_id, model, endpoint, requests, errors, prompt_tokens, "
        "completion_tokens, cached_tokens, cost_nano, last_at) "
        "SELECT day, workspace_id, key_id, COALESCE(model, ''), endpoint, COUNT(*), "
        "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(prompt_tokens), SUM(completion_tokens), "
        "SUM(cached_tokens), SUM(cost_nano), MAX(created_at) "
        "FROM usage GROUP BY day, workspace_id, key_id, COALESCE(model, ''), endpoint")


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_table("console_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("admin_scoped")
