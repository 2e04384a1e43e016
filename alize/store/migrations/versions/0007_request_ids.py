"""Request ids (x-request-id) on usage records and on streams in flight.

Revision ID: 0007_request_ids
Revises: 0006_console
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_request_ids"
down_revision = "0006_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("usage", "inflight"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("request_id", sa.String(128), nullable=True))
    op.create_index("ix_usage_request_id", "usage", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_request_id", "usage")
    for table in ("usage", "inflight"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_id")
