"""Document libraries: libraries per workspace, shared with other workspaces; their
documents (the uploaded bytes are blobs, the extracted text is kept here) and each
document's chunks with their embedding vectors; signed links to a document, by the hash
of their token.

Revision ID: 0011_libraries
Revises: 0010_conversations
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_libraries"
down_revision = "0010_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "libraries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(36), nullable=False, index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("chunk_size", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "library_shares",
        sa.Column("library_id", sa.String(36), sa.ForeignKey("libraries.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("workspace_id", sa.String(36), primary_key=True, index=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_table(
        "library_documents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("library_id", sa.String(36), sa.ForeignKey("libraries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("mime_type", sa.String(200), nullable=True),
        sa.Column("extension", sa.String(20), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attributes", sa.Text, nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pages", sa.Integer, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_library_documents_library_time", "library_documents", ["library_id", "created_at"])
    op.create_index("ix_library_documents_status", "library_documents", ["status"])
    op.create_table(
        "library_chunks",
        sa.Column("document_id", sa.String(36), sa.ForeignKey("library_documents.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("library_id", sa.String(36), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )

    op.create_table(
        "document_links",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("document_id", sa.String(36), sa.ForeignKey("library_documents.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("document_links")
    op.drop_table("library_chunks")
    op.drop_table("library_documents")
    op.drop_table("library_shares")
    op.drop_table("libraries")
