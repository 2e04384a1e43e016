"""Conversations: the settings a conversation runs with (an agent's version, or a model with
its instructions, tools and completion arguments) and its entries, in order.

Revision ID: 0010_conversations
Revises: 0009_agents
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_conversations"
down_revision = "0009_agents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_conversations_workspace_time", "conversations", ["workspace_id", "created_at"])
    op.create_table(
        "conversation_entries",
        sa.Column("conversation_id", sa.String(40), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("entry", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("conversation_entries")
    op.drop_table("conversations")
