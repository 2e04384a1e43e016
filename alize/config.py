"""Settings: flags override environment (ALIZE_*), which overrides an optional .env file.

Each field's description is the documentation: docs/settings.md's table is generated from
them (`python -m alize.config`), and a test checks that the two agree."""

import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_path, user_data_path
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# One place for every command (the server, the CLI, from any folder): the user's data dir,
# e.g. ~/.local/share/alize on Linux.
DEFAULT_DATA_DIR = user_data_path("alize", appauthor=False)
# Model files derived from others (converted, rewritten): the user's cache, shared by data dirs.
DEFAULT_MODEL_CACHE_DIR = user_cache_path("alize", appauthor=False) / "models"
# Where versions before 0.2 kept it: ./data, relative to wherever the command ran.
LEGACY_DATA_DIR = Path("data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALIZE_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to listen on (`--host`).")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on (`--port`).")
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description=(
        "The SQLite database and the files' bytes (`--data-dir`); the default is the user's data "
        "dir, e.g. `~/.local/share/alize`."))
    model_cache_dir: Path = Field(default=DEFAULT_MODEL_CACHE_DIR, description=(
        "Model files Alizé derives once from the ones it is given (the embedding model as GGUF, the "
        "built-in chat model's weights as Q8_0: docs/models.md); the default is the user's cache dir, "
        "e.g. `~/.cache/alize/models`."))
    config_file: Path | None = Field(default=None, description=(
        "A model registry (TOML) that extends the built-in one (`--config`); docs/models.md."))
    database_url: str | None = Field(default=None, description=(
        "Any SQLAlchemy URL instead of SQLite in the data dir, e.g. "
        "`postgresql+psycopg://user@host:5432/alize` (`--database-url` in the CLI)."))
    redis_url: str | None = Field(default=None, description=(
        "Redis for the limit counters, shared by several replicas (e.g. `redis://127.0.0.1:6379/0`); "
        "unset: counters in the server process."))
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0, description="Largest request body; past it, 413.")
    max_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0, description="Largest upload to `/v1/files`.")
    max_document_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description=(
        "Largest document uploaded to a library (`/v1/libraries/{id}/documents`)."))
    library_embedding_model: str = Field(default="mistral-embed", description=(
        "The embedding model that document libraries index and search with (a local one)."))
    threads: int | None = Field(default=None, ge=1, description="llama.cpp threads; unset: all cores.")
    parallel: int = Field(default=8, ge=1, le=256, description=(
        "Sequences each chat model decodes together (docs/tuning.md)."))
    kv_layout: Literal["auto", "per-sequence", "pool"] = Field(default="auto", description=(
        "`per-sequence`: each of the `parallel` sequences gets the model's full context in a KV buffer "
        "of its own (resident only as far as it is used); `pool`: one KV cache of `kv_cache_mb` shared by "
        "the sequences, each admitted when its prompt + max_tokens fit; `auto`: per sequence when that "
        "fits in `kv_cache_mb`, else a pool of that size (docs/tuning.md weighs them)."))
    kv_cache_mb: int | None = Field(default=None, ge=16, description=(
        "The most memory each chat model's KV cache may take. Unset: with `pool`, 320 MB grown to hold "
        "one full context of the model within an eighth of the machine's memory; with `auto`, a "
        "quarter of the machine's memory."))
    kv_cache_type: Literal["f16", "q8_0"] = Field(default="f16", description=(
        "How the KV cache stores keys and values: q8_0 holds about twice the tokens in the same "
        "memory (docs/benchmarks.md measures its cost)."))
    prompt_lookup: bool = Field(default=False, description=(
        "Prompt-lookup decoding: requests without a `prediction` draft their next tokens from their "
        "prompt, verified a batch at a time (same output; faster when answers copy the prompt, as "
        "summaries and extractions do; docs/tuning.md)."))
    batch_tokens: int = Field(default=512, ge=16, le=8192, description=(
        "Tokens per engine step: one per decoding sequence, the rest for prompt chunks."))
    queue_size: int = Field(default=64, ge=0, description=(
        "Requests that may wait for a free sequence; past that, 429 with `Retry-After`."))
    queue_timeout: float = Field(default=120.0, gt=0, description=(
        "Seconds a request may wait for a sequence; past that, 503."))
    batch_concurrency: int = Field(default=2, ge=1, le=256, description=(
        "Batch lines a server runs at once (docs/batch.md)."))
    batch_discount: Decimal = Field(default=Decimal("0.5"), ge=0, le=1, description=(
        "Discount off the list price for batch lines (0.5: half price)."))
    worker_id: str | None = Field(default=None, description=(
        "The name this server's batch worker holds jobs under; unset: host name and port."))
    prefix_cache: Literal["key", "global", "off"] = Field(default="key", description=(
        "Who may reuse a prompt's cached KV: the same API key, everyone, or nobody."))
    console_idle_minutes: float = Field(default=30, gt=0, description=(
        "A console session ends after this long without a request (docs/console.md)."))
    console_session_hours: float = Field(default=12, gt=0, description=(
        "A console session ends this long after sign-in, however active."))
    drain_seconds: float = Field(default=30, ge=0, description=(
        "On SIGTERM or Ctrl-C, how long running requests and streams may finish before they are "
        "ended (new requests meanwhile get 503)."))
    metrics: bool = Field(default=True, description=(
        "Keep the request metrics of `/metrics` (off only to measure what they cost: "
        "benchmarks/metrics_cost.py)."))
    metrics_open_to: str = Field(default="", description=(
        "Networks whose scrapers may read `/metrics` without a key (comma-separated, e.g. "
        "`10.0.0.0/8,127.0.0.1/32`); unset: `/metrics` needs an admin key."))
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")
    log_format: Literal["text", "json"] = Field(default="text", description=(
        "Log lines as text, or one JSON object per line (docs/operations.md)."))

    @property
    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'alize.db').resolve()}"


def settings_table() -> str:
    """The Markdown table of every setting (docs/settings.md)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        if name == "data_dir":
            shown = "the user's data dir"
        if name == "model_cache_dir":
            shown = "the user's cache dir"
        rows.append(f"| `ALIZE_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
