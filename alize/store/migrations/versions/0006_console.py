"""The console: workspace-scoped admin keys, console sessions, usage roll-ups.

usage_key_daily holds one row per day, workspace and key; usage_daily and usage_monthly one
per day (month), workspace, key, model and endpoint. They are added to in the same
transaction as each usage record (store/rollups.py), so that a year of traffic reports in
milliseconds; they are filled here from the records already written.

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
    for table, period, width in (("usage_daily", "day", 10), ("usage_monthly", "month", 7)):
        op.create_table(table, sa.Column(period, sa.String(width), primary_key=True), *_dimensions(), *_sums())
    op.create_table("usage_key_daily", sa.Column("day", sa.String(10), primary_key=True),
                    *_dimensions()[:2], *_sums())
    rolled = (("usage_daily", "day", ", COALESCE(model, ''), endpoint"),
              ("usage_monthly", "SUBSTR(day, 1, 7)", ", COALESCE(model, ''), endpoint"),
              ("usage_key_daily", "day", ""))
    for table, period, more in rolled:
        op.execute(
            f"INSERT INTO {table} SELECT {period}, workspace_id, key_id{more}, COUNT(*), "
            "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(prompt_tokens), SUM(completion_tokens), "
            f"SUM(cached_tokens), SUM(cost_nano) FROM usage GROUP BY {period}, workspace_id, key_id{more}")


def _dimensions() -> list[sa.Column]:
    return [
        sa.Column("workspace_id", sa.String(36), primary_key=True),
        sa.Column("key_id", sa.String(36), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),  # "" where the record has none
        sa.Column("endpoint", sa.String(100), primary_key=True),
    ]


def _sums() -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger, nullable=False) for name in (
        "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano")]


def downgrade() -> None:
    op.drop_table("usage_key_daily")
    op.drop_table("usage_monthly")
    op.drop_table("usage_daily")
    op.drop_table("console_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("admin_scoped")
