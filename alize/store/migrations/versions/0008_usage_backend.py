"""The backend that answered (the local engine's name, or an upstream replica) on usage
records and on streams in flight.

Revision ID: 0008_usage_backend
Revises: 0007_request_ids
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_usage_backend"
down_revision = "0007_request_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("usage", "inflight"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("backend", sa.String(200), nullable=True))


def downgrade() -> None:
    for table in ("usage", "inflight"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("backend")
