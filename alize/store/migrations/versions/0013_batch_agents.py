"""Batch jobs run by an agent: its id, and the version it had when the job was created
(every line runs that version, whatever edits come while the job waits or runs).

Revision ID: 0013_batch_agents
Revises: 0012_file_expiry
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_batch_agents"
down_revision = "0012_file_expiry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs") as batch:
        batch.add_column(sa.Column("agent_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("agent_version", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_jobs") as batch:
        batch.drop_column("agent_version")
        batch.drop_column("agent_id")
