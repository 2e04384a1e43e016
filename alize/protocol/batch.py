"""Batch jobs on the wire (CONFORMANCE.md section 5)."""

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from alize.protocol.common import Request

# The endpoints Alizé runs batch lines on, and the others the spec names (answered 400).
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/fim/completions", "/v1/embeddings", "/v1/moderations",
                   "/v1/chat/moderations", "/v1/classifications", "/v1/chat/classifications", "/v1/conversations")
SPEC_ENDPOINTS = BATCH_ENDPOINTS + ("/v1/ocr", "/v1/audio/transcriptions")
STATUSES = ("QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLATION_REQUESTED", "CANCELLED")
MAX_INLINE_REQUESTS = 10_000

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=32)]
MetadataValue = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Status = Literal["QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLATION_REQUESTED",
                 "CANCELLED"]


class BatchRequest(Request):
    custom_id: str | None = None
    body: dict[str, Any]


class BatchJobIn(Request):
    endpoint: str
    input_files: list[uuid.UUID] | None = None
    requests: Annotated[list[BatchRequest] | None, Field(max_length=MAX_INLINE_REQUESTS)] = None
    model: str | None = None
    agent_id: str | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = None
    timeout_hours: Annotated[int, Field(ge=1, le=168)] = 24
