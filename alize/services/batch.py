"""Batch jobs as a use case: create, list, fetch, cancel, delete, within the caller's
workspace. The worker (batch_worker.py) runs them."""

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

from alize.errors import Forbidden, InvalidRequest, NotFound, Unsupported
from alize.protocol.batch import BATCH_ENDPOINTS, SPEC_ENDPOINTS, BatchJobIn
from alize.services.agents import AgentService
from alize.services.batch_lines import AGENT_ENDPOINTS, CONVERSATIONS, non_blank
from alize.services.files import FileService
from alize.services.models import ModelHub, may_use
from alize.store import batches
from alize.store.accounts import KeyInfo, utcnow
from alize.store.batches import FINAL, JobFilter, JobInfo
from alize.store.db import Database

# the capability a job's model needs, by endpoint (otherwise chat)
CAPABILITIES = {"/v1/fim/completions": "completion_fim", "/v1/moderations": "moderation",
                "/v1/chat/moderations": "moderation", "/v1/classifications": "classification",
                "/v1/chat/classifications": "classification"}


class BatchService:
    def __init__(self, db: Database, hub: ModelHub, files: FileService, agents: AgentService,
                 on_change: Any = None):
        self.db = db
        self.hub = hub
        self.files = files
        self.agents = agents
        self.on_change = on_change  # called when a job is created or cancelled (wakes the worker)

    async def create(self, key: KeyInfo, request: BatchJobIn) -> JobInfo:
        self._check_endpoint(request.endpoint)
        agent_version = None
        if request.agent_id is not None:
            agent_version = await asyncio.to_thread(self._check_agent, key, request)
        elif request.model is not None:
            self._check_model(key, request.model, request.endpoint)
        has_files, has_requests = bool(request.input_files), bool(request.requests)
        if has_files == has_requests:
            raise InvalidRequest("Give either input_files or requests (one of them, not empty)",
                                 param="input_files")
        file_ids = [str(f) for f in request.input_files or []]
        inline = None
        if request.requests:
            inline = "".join(json.dumps(r.model_dump(), ensure_ascii=False) + "\n" for r in request.requests)
            total = len(request.requests)
        else:
            total = await asyncio.to_thread(self._count_lines, key.workspace.id, file_ids)
        job = JobInfo(str(uuid.uuid4()), key.workspace.id, key.id, request.endpoint, request.model,
                      request.metadata, file_ids, request.timeout_hours, utcnow(), total_requests=total,
                      inline_requests=inline, agent_id=request.agent_id, agent_version=agent_version)
        await asyncio.to_thread(batches.add, self.db, job)
        self._changed()
        return job

    @staticmethod
    def _check_endpoint(endpoint: str) -> None:
        if endpoint in BATCH_ENDPOINTS:
            return
        supported = ", ".join(BATCH_ENDPOINTS)
        if endpoint in SPEC_ENDPOINTS:
            raise Unsupported(f"Alizé does not run batch jobs on {endpoint}; it runs them on {supported}",
                              param="endpoint")
        raise InvalidRequest(f"Unknown endpoint {endpoint!r}; batch jobs run on {supported}", param="endpoint")

    def _check_agent(self, key: KeyInfo, request: BatchJobIn) -> int:
        """The version of the job's agent that will answer every line (its current one)."""
        assert request.agent_id is not None
        if request.endpoint not in AGENT_ENDPOINTS:
            raise InvalidRequest(f"An agent answers chat completions and conversations: a job with agent_id runs on "
                                 f"{' or '.join(AGENT_ENDPOINTS)}", param="agent_id")
        if request.model is not None:
            raise InvalidRequest("Give the job a model or an agent_id, not both: the agent's model answers",
                                 param="model")
        if request.endpoint == CONVERSATIONS:  # where a search may wait for the client's confirmation
            agent = self.agents.record(key.workspace.id, request.agent_id)
        else:
            agent = self.agents.completing(key.workspace.id, request.agent_id)
        self._check_model(key, agent.config["model"], request.endpoint)
        return agent.version

    def _check_model(self, key: KeyInfo, model: str, endpoint: str) -> None:
        capability = CAPABILITIES.get(endpoint, "completion_chat")
        upstream = self.hub.registry.get(model).is_upstream  # what an upstream model does, its engine knows
        if endpoint == "/v1/embeddings":
            entry = self.hub.registry.get(model) if upstream else self.hub.embedder(model)[0]
        elif upstream or capability in ("moderation", "classification"):
            entry = self.hub.capable(model, capability)
        else:
            entry, _ = self.hub.chat_model(model, capability)
        if not may_use(entry, key.models):
            raise Forbidden(f"This API key may not use the model {entry.id!r}", param="model")

    def _count_lines(self, workspace_id: str, file_ids: list[str]) -> int:
        total = 0
        for file_id in file_ids:
            info = self.files.get(workspace_id, file_id)
            if info.purpose != "batch":
                raise InvalidRequest(f"File {file_id} has purpose {info.purpose!r}; batch input files need "
                                     "purpose 'batch'", param="input_files")
            data = self.files.content(workspace_id, file_id)
            total += sum(1 for _ in non_blank(data))
        return total

    def get(self, workspace_id: str, job_id: str) -> JobInfo:
        job = batches.get(self.db, workspace_id, job_id)
        if job is None:
            raise NotFound(f"No batch job with id {job_id}")
        return job

    def list_page(self, key: KeyInfo, page: int, page_size: int, filters: JobFilter) -> tuple[list[JobInfo], int]:
        return self.list_in(key.workspace.id, page, page_size, filters)

    def list_in(self, workspace_id: str, page: int, page_size: int,
                filters: JobFilter | None = None) -> tuple[list[JobInfo], int]:
        return batches.list_page(self.db, workspace_id, page, page_size, filters or JobFilter())

    def errors(self, job_ids: list[str]) -> dict[str, list[tuple[str, int]]]:
        return batches.error_counts(self.db, job_ids)

    def outputs(self, job: JobInfo) -> list[dict[str, Any]]:
        return [json.loads(text) for text in batches.outputs(self.db, job.id)]

    def cancel(self, workspace_id: str, job_id: str, now: datetime | None = None) -> JobInfo:
        job = batches.request_cancel(self.db, workspace_id, job_id, now or utcnow())
        if job is None:
            raise NotFound(f"No batch job with id {job_id}")
        self._changed()
        return job

    def delete(self, workspace_id: str, job_id: str) -> None:
        job = self.get(workspace_id, job_id)
        if job.status not in FINAL:
            raise InvalidRequest(f"Batch job {job_id} is {job.status}: cancel it before deleting it",
                                 param="job_id")
        batches.remove(self.db, workspace_id, job_id)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
