"""Files (batch inputs and outputs); their bytes live in the blob store.

Revision ID: 0003_files
Revises: 0002_workspaces_usage
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_files"
down_revision = "0002_workspaces_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("filename", sa.String(500), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("sample_type", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("num_lines", sa.Integer, nullable=True),
        sa.Column("mimetype", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_files_workspace_time", "files", ["workspace_id", "created_at"])


def downgrade() -> None:
    op.drop_table("files")
