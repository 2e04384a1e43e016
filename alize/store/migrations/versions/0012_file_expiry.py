"""Files that expire (an upload's `expiry`, in hours) and signed links to a file's bytes,
by the hash of their token.

Revision ID: 0012_file_expiry
Revises: 0011_libraries
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_file_expiry"
down_revision = "0011_libraries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_files_expires_at", "files", ["expires_at"])
    op.create_table(
        "file_links",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("file_id", sa.String(36), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_links")
    op.drop_index("ix_files_expires_at", "files")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("expires_at")
