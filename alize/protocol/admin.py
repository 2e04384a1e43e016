"""Wire schemas of the admin API (/admin/v1): workspaces, keys, usage."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LimitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=0, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=0, description="Tokens per minute (prompt + completion)")
    monthly_tokens: int | None = Field(default=None, ge=0, description="Tokens per calendar month (UTC)")
    budget_eur: float | None = Field(default=None, ge=0, description="Euros per calendar month (UTC)")


class LimitsOut(BaseModel):
    rpm: int | None
    tpm: int | None
    monthly_tokens: int | None
    budget_eur: float | None


class WorkspaceCreate(LimitsBody):
    name: str = Field(min_length=1, max_length=200)


class WorkspaceOut(BaseModel):
    object: str = "workspace"
    id: str
    name: str
    created_at: datetime
    limits: LimitsOut


class KeyCreate(LimitsBody):
    name: str = Field(min_length=1, max_length=200)
    workspace: str | None = Field(default=None, description="Its workspace; unset: the admin key's own")
    models: list[str] | None = None
    expires_in_days: float | None = Field(default=None, gt=0)
    admin: bool = False
    admin_scope: Literal["org", "workspace"] = Field(default="org", description=(
        "With admin: an admin of every workspace (org), or of the key's own workspace only"))


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float = Field(default=3600, ge=0)


class KeyOut(BaseModel):
    object: str = "api_key"
    id: str
    name: str
    prefix: str
    workspace: str
    workspace_id: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    models: list[str] | None
    admin: bool
    admin_scope: Literal["org", "workspace"] | None = None
    limits: LimitsOut
    previous_secret_valid_until: datetime | None = None


class KeyWithSecret(KeyOut):
    secret: str = Field(description="Shown once: Alizé keeps only its hash")


class UsageRow(BaseModel):
    group: str
    name: str  # the key's or workspace's name when grouped by them; else the group itself
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_eur: float


class UsageReport(BaseModel):
    object: str = "usage_report"
    start: str
    end: str
    group_by: str
    data: list[UsageRow]
    total: UsageRow


class RequestRow(BaseModel):
    id: str  # the response id, which is the usage record's id
    request_id: str | None  # x-request-id
    created_at: str
    key: str  # by name
    workspace: str
    model: str | None
    endpoint: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_eur: float
    latency_ms: int
    backend: str | None  # the local engine or upstream replica that answered


class RequestReportOut(BaseModel):
    object: str = "usage_requests"
    start: str
    end: str
    group_by: str = "request"
    data: list[RequestRow]
    has_more: bool
