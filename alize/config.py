"""Settings: flags override environment (ALIZE_*), which overrides an optional .env file."""

import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALIZE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    config_file: Path | None = None
    database_url: str | None = None
    # Redis for limit counters shared by several replicas; unset: counters in process.
    redis_url: str | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0)  # uploads to /v1/files
    threads: int | None = Field(default=None, ge=1)
    # Engine sizing, per chat model (README: Tuning)
    parallel: int = Field(default=8, ge=1, le=256)
    batch_tokens: int = Field(default=512, ge=16, le=8192)
    queue_size: int = Field(default=64, ge=0)
    queue_timeout: float = Field(default=120.0, gt=0)
    # Batch jobs: lines run at once per server, price factor off the list price, and the
    # name this server's worker holds jobs under (a restarted server resumes its own at once).
    batch_concurrency: int = Field(default=2, ge=1, le=256)
    batch_discount: Decimal = Field(default=Decimal("0.5"), ge=0, le=1)
    worker_id: str | None = None
    # Who may reuse a prompt's cached KV: the same API key (default), everyone, or nobody.
    prefix_cache: Literal["key", "global", "off"] = "key"
    log_level: str = "info"

    @property
    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'alize.db').resolve()}"
