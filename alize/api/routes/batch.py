"""/v1/batch/jobs: Mistral's batch jobs, scoped to the caller's workspace."""

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from alize.api.deps import MAX_PAGE, KeyDep, PlatformDep
from alize.api.strict_json import StrictJSONRoute
from alize.errors import InvalidRequest
from alize.protocol.batch import BatchJobIn, Status
from alize.services.platform import Platform
from alize.store.batches import JobFilter, JobInfo

router = APIRouter(route_class=StrictJSONRoute)

LIST_PARAMS = {"page", "page_size", "model", "agent_id", "metadata", "created_after", "created_by_me", "status",
               "order_by"}


def _ts(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def job_out(job: JobInfo, errors: list[tuple[str, int]], outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    messages = [{"message": job.failure, "count": 1}] if job.failure else []
    messages += [{"message": message, "count": count} for message, count in errors]
    return {
        "id": job.id, "object": "batch", "input_files": job.input_files, "metadata": job.metadata,
        "endpoint": job.endpoint, "model": job.model, "agent_id": job.agent_id, "output_file": job.output_file,
        "error_file": job.error_file, "errors": messages, "outputs": outputs, "status": job.status,
        "created_at": _ts(job.created_at), "total_requests": job.total_requests,
        "completed_requests": job.succeeded_requests + job.failed_requests,
        "succeeded_requests": job.succeeded_requests, "failed_requests": job.failed_requests,
        "started_at": _ts(job.started_at), "completed_at": _ts(job.completed_at),
    }


def one_job_out(platform: Platform, job: JobInfo, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return job_out(job, platform.batches.errors([job.id]).get(job.id, []), outputs)


@router.post("/v1/batch/jobs")
async def create_job(body: BatchJobIn, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return job_out(await platform.batches.create(key, body), [])


def _metadata_filter(request: Request, metadata: str | None) -> tuple[tuple[str, str], ...]:
    """The SDK sends metadata={"k": "v"} as the bare query pair k=v (CONFORMANCE.md 10);
    a JSON object in `metadata` is understood too."""
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in LIST_PARAMS]
    if metadata:
        try:
            pairs += [(str(k), str(v)) for k, v in dict(json.loads(metadata)).items()]
        except (ValueError, TypeError) as exc:
            raise InvalidRequest("metadata must be a JSON object of strings", param="metadata") from exc
    return tuple(pairs)


@router.get("/v1/batch/jobs")
def list_jobs(request: Request, key: KeyDep, platform: PlatformDep, page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
              page_size: Annotated[int, Query(ge=1, le=1000)] = 100, model: str | None = None,
              agent_id: str | None = None, metadata: str | None = None, created_after: datetime | None = None,
              created_by_me: bool = False, status: Annotated[list[Status] | None, Query()] = None,
              order_by: Annotated[str, Query(pattern="^-?created$")] = "-created") -> dict[str, Any]:
    filters = JobFilter(model=model, agent_id=agent_id, key_id=key.id if created_by_me else None,
                        statuses=tuple(status or ()), created_after=created_after,
                        metadata=_metadata_filter(request, metadata),
                        newest_first=order_by == "-created")
    jobs, total = platform.batches.list_page(key, page, page_size, filters)
    errors = platform.batches.errors([j.id for j in jobs])
    return {"object": "list", "data": [job_out(j, errors.get(j.id, [])) for j in jobs], "total": total}


@router.get("/v1/batch/jobs/{job_id}")
def get_job(job_id: str, key: KeyDep, platform: PlatformDep, inline: bool | None = None) -> dict[str, Any]:
    job = platform.batches.get(key.workspace.id, job_id)
    return one_job_out(platform, job, platform.batches.outputs(job) if inline else None)


@router.post("/v1/batch/jobs/{job_id}/cancel")
def cancel_job(job_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return one_job_out(platform, platform.batches.cancel(key.workspace.id, job_id))


@router.delete("/v1/batch/jobs/{job_id}")
def delete_job(job_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    platform.batches.delete(key.workspace.id, job_id)
    return {"id": job_id, "object": "batch", "deleted": True}
