"""Batch jobs with live progress (an htmx fragment polled every 2 s), cancel, and the
files: list and download."""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from alize.console.render import page
from alize.console.security import Console, ConsoleDep
from alize.errors import AlizeError, NotFound

router = APIRouter(prefix="/console", include_in_schema=False)

SHOWN = 50  # the newest jobs and files across the workspaces in view


def _jobs(console: Console) -> dict[str, Any]:
    workspaces = console.view.workspaces()
    jobs = [job for ws in workspaces for job in console.platform.batches.list_in(ws.id, 0, SHOWN)[0]]
    jobs.sort(key=lambda j: j.created_at, reverse=True)
    return {"jobs": jobs[:SHOWN], "workspace_names": {ws.id: ws.name for ws in workspaces}}


def _files(console: Console) -> list[Any]:
    files = [f for ws in console.view.workspaces() for f in console.platform.files.list(ws.id, 0, SHOWN, None, None)[0]]
    return sorted(files, key=lambda f: f.created_at, reverse=True)[:SHOWN]


@router.get("/batches")
async def batches_page(request: Request, console: ConsoleDep) -> Response:
    jobs = await asyncio.to_thread(_jobs, console)
    files = await asyncio.to_thread(_files, console)
    return page(request, "batches.html", console, files=files, **jobs)


@router.get("/batches/rows")
async def batch_rows(request: Request, console: ConsoleDep) -> Response:
    return page(request, "_batch_rows.html", console, **await asyncio.to_thread(_jobs, console))


def _workspace_in_view(console: Console, workspace_id: str, what: str) -> None:
    if not console.view.sees_workspace(workspace_id):
        raise NotFound(f"No {what} here")


@router.post("/batches/{workspace_id}/{job_id}/cancel")
async def cancel_job(request: Request, workspace_id: str, job_id: str, console: ConsoleDep) -> Response:
    error = notice = None
    try:
        _workspace_in_view(console, workspace_id, "batch job")
        job = await asyncio.to_thread(console.platform.batches.cancel, workspace_id, job_id)
        notice = f"Batch job {job.id[:8]} is {job.status.lower().replace('_', ' ')}."
    except AlizeError as exc:
        error = exc.message
    jobs = await asyncio.to_thread(_jobs, console)
    files = await asyncio.to_thread(_files, console)
    return page(request, "batches.html", console, 404 if error else 200, error=error, notice=notice, files=files,
                **jobs)


@router.get("/files/{workspace_id}/{file_id}")
async def download(workspace_id: str, file_id: str, console: ConsoleDep) -> Response:
    _workspace_in_view(console, workspace_id, "file")
    info, chunks = await asyncio.to_thread(console.platform.files.open_content, workspace_id, file_id)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in info.filename) or info.id
    return StreamingResponse(chunks, media_type=info.mimetype or "application/octet-stream",
                             headers={"Content-Disposition": f'attachment; filename="{safe}"'})
