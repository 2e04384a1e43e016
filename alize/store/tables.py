"""The schema as SQLAlchemy models. Migrations (store/migrations/versions) create it."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class LimitColumns:
    """Per-minute and per-month limits; NULL means unlimited. Money is integer nano-euros."""

    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    monthly_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    monthly_budget_nano: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Workspace(LimitColumns, Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(LimitColumns, Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    # sha256 of the secret; the secret itself is never stored.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    workspace_id: Mapped[str] = mapped_column(String(36), ForeignKey("workspaces.id"), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Comma-separated model ids this key may use; NULL: every model.
    allowed_models: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # An admin key of one workspace (its own) rather than of the whole installation.
    admin_scoped: Mapped[bool] = mapped_column(Boolean, default=False)
    # After a rotation the previous secret keeps working until previous_valid_until.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsageRecord(Base):
    """One metered request (or batch line). The id is the response id: a request is
    recorded once, whatever happens after."""

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_key_time", "key_id", "created_at"),
        Index("ix_usage_workspace_time", "workspace_id", "created_at"),
        Index("ix_usage_day", "day"),
        Index("ix_usage_request_id", "request_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    day: Mapped[str] = mapped_column(String(10))  # UTC date, YYYY-MM-DD
    workspace_id: Mapped[str] = mapped_column(String(36))
    key_id: Mapped[str] = mapped_column(String(36))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(100))
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)  # x-request-id
    backend: Mapped[str | None] = mapped_column(String(200), nullable=True)  # who answered: engine or replica


class Sums:
    """Usage records summed over a period and some of their dimensions."""

    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_nano: Mapped[int] = mapped_column(BigInteger)


class AllDimensions:
    workspace_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)  # "" where the record has none
    endpoint: Mapped[str] = mapped_column(String(100), primary_key=True)


class UsageKeyDaily(Sums, Base):
    """Per day, workspace and key: reports by day, key or workspace, for any period."""

    __tablename__ = "usage_key_daily"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # UTC, YYYY-MM-DD
    workspace_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class UsageDaily(AllDimensions, Sums, Base):
    """Per day and every dimension: the partial months of reports by model or endpoint."""

    __tablename__ = "usage_daily"

    day: Mapped[str] = mapped_column(String(10), primary_key=True, sort_order=-1)


class UsageMonthly(AllDimensions, Sums, Base):
    """Per calendar month (UTC) and every dimension: the whole months of reports by model or endpoint."""

    __tablename__ = "usage_monthly"

    month: Mapped[str] = mapped_column(String(7), primary_key=True, sort_order=-1)  # YYYY-MM


class ConsoleSession(Base):
    """A signed-in console session. The cookie holds a random token; only its sha256 is
    kept. The key's state is read on every request, so revoking the key ends it."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_key", "key_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(36))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InflightRequest(Base):
    """A streaming request's usage so far, held under its server's lease (renewed while the
    server lives). Deleted when the request is recorded; a row whose lease has lapsed is
    turned into its usage record by any server (store/inflight.py)."""

    __tablename__ = "inflight"
    __table_args__ = (Index("ix_inflight_lease", "lease_until"), Index("ix_inflight_holder", "holder"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the usage record's id
    holder: Mapped[str] = mapped_column(String(64))
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    workspace_id: Mapped[str] = mapped_column(String(36))
    key_id: Mapped[str] = mapped_column(String(36))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(100))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    cost_nano: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    backend: Mapped[str | None] = mapped_column(String(200), nullable=True)


class StoredFile(Base):
    """An uploaded (or produced) file; its bytes live in the blob store under its id."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_workspace_time", "workspace_id", "created_at"),
                      Index("ix_files_expires_at", "expires_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36))
    filename: Mapped[str] = mapped_column(String(500))
    purpose: Mapped[str] = mapped_column(String(20))
    sample_type: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    num_lines: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mimetype: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FileLink(Base):
    """A signed URL to a file's bytes: anyone with the token may read them until it expires.
    Only the token's sha256 is kept."""

    __tablename__ = "file_links"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(36), ForeignKey("files.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BatchJob(Base):
    """A batch job; its progress is the set of its lines in batch_lines, counted here as
    they are written (in the same transaction)."""

    __tablename__ = "batch_jobs"
    __table_args__ = (Index("ix_batch_jobs_workspace_time", "workspace_id", "created_at"),
                      Index("ix_batch_jobs_status", "status"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36))
    key_id: Mapped[str] = mapped_column(String(36))  # who created it: its limits and bill apply
    endpoint: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # an agent runs each line
    agent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its version at creation
    metadata_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    input_files: Mapped[str] = mapped_column(Text)  # JSON list of file ids
    inline_requests: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSONL, for `requests`
    timeout_hours: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(30))
    total_requests: Mapped[int] = mapped_column(Integer, default=0)
    succeeded_requests: Mapped[int] = mapped_column(Integer, default=0)
    failed_requests: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    output_file: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error_file: Mapped[str | None] = mapped_column(String(36), nullable=True)
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)  # why the whole job failed
    # The worker running the job holds a lease, renewed while it runs; a job whose lease
    # has lapsed (its worker died) is taken over by another, or by the same one restarted.
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BatchLine(Base):
    """One answered line of a batch job: written once, with its usage record."""

    __tablename__ = "batch_lines"

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("batch_jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    custom_id: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text)  # the output (or error) file's JSON line
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # NULL: it succeeded


class Agent(Base):
    """An agent: which of its versions is current. Its configurations are in agent_versions."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_workspace_time", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AgentVersion(Base):
    """One version of an agent's configuration (model, instructions, tools...) as JSON."""

    __tablename__ = "agent_versions"

    agent_id: Mapped[str] = mapped_column(String(40), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AgentAlias(Base):
    __tablename__ = "agent_aliases"

    agent_id: Mapped[str] = mapped_column(String(40), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Conversation(Base):
    """A conversation: what it runs with (agent and version, or model, instructions, tools,
    completion arguments; name, description, metadata) as JSON. Its entries follow in order."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_workspace_time", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36))
    settings: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConversationEntry(Base):
    """One entry of a conversation (a message in or out, a function call or result) as JSON."""

    __tablename__ = "conversation_entries"

    conversation_id: Mapped[str] = mapped_column(String(40), ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    entry: Mapped[str] = mapped_column(Text)


class Library(Base):
    """A document library, owned by a workspace (and seen by those it is shared with)."""

    __tablename__ = "libraries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunk_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LibraryShare(Base):
    """Another workspace's access to a library: Viewer (read, search) or Editor (documents too)."""

    __tablename__ = "library_shares"

    library_id: Mapped[str] = mapped_column(String(36), ForeignKey("libraries.id", ondelete="CASCADE"),
                                            primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))


class LibraryDocument(Base):
    """A document: its bytes are a blob of the same id; its text once extracted; its status
    (todo, in_progress, done, error, waiting_for_capacity) and the lease of whoever processes it."""

    __tablename__ = "library_documents"
    __table_args__ = (Index("ix_library_documents_library_time", "library_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    library_id: Mapped[str] = mapped_column(String(36), ForeignKey("libraries.id", ondelete="CASCADE"))
    key_id: Mapped[str] = mapped_column(String(36))  # the key that uploaded it: its processing is billed to it
    name: Mapped[str] = mapped_column(Text)
    mime_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    extension: Mapped[str | None] = mapped_column(String(20), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attributes: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens: Mapped[int] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the server processing it
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LibraryChunk(Base):
    """A piece of a document's text and its embedding (float32, little-endian, unit length)."""

    __tablename__ = "library_chunks"

    document_id: Mapped[str] = mapped_column(String(36), ForeignKey("library_documents.id", ondelete="CASCADE"),
                                             primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[str] = mapped_column(String(36), index=True)
    text: Mapped[str] = mapped_column(Text)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class DocumentLink(Base):
    """A signed URL to a document's bytes or extracted text: anyone with the token may read
    it until it expires. Only the token's sha256 is kept."""

    __tablename__ = "document_links"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(36), ForeignKey("library_documents.id", ondelete="CASCADE"),
                                             index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "original" or "text"
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
