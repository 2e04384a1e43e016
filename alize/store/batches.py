"""Batch jobs and their lines. A job is looked up within a workspace: another workspace's
job does not exist. Each line is written once, together with its usage record, in one
transaction: after a crash a line is either answered and billed, or neither."""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import defer

from alize.store import usage as usage_store
from alize.store.accounts import aware
from alize.store.db import Database
from alize.store.files import FileInfo
from alize.store.tables import BatchJob, BatchLine, StoredFile

ACTIVE = ("QUEUED", "RUNNING", "CANCELLATION_REQUESTED")
FINAL = ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED")


@dataclass(frozen=True)
class JobInfo:
    id: str
    workspace_id: str
    key_id: str
    endpoint: str
    model: str | None
    metadata: dict[str, str] | None
    input_files: list[str]
    timeout_hours: int
    created_at: datetime
    status: str = "QUEUED"
    total_requests: int = 0
    succeeded_requests: int = 0
    failed_requests: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output_file: str | None = None
    error_file: str | None = None
    failure: str | None = None  # why the whole job failed (FAILED)
    inline_requests: str | None = field(default=None, repr=False)
    agent_id: str | None = None  # the agent that answers each line (then model is None)
    agent_version: int | None = None  # the agent's version when the job was created


@dataclass(frozen=True)
class LineResult:
    line: int
    custom_id: str
    status_code: int
    output: str  # the JSON line of the output or error file
    error: str | None = None  # None: the line succeeded


@dataclass(frozen=True)
class JobFilter:
    model: str | None = None
    agent_id: str | None = None
    key_id: str | None = None  # created_by_me
    statuses: tuple[str, ...] = ()
    created_after: datetime | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    newest_first: bool = True


def _info(row: BatchJob, with_requests: bool = True) -> JobInfo:
    return JobInfo(row.id, row.workspace_id, row.key_id, row.endpoint, row.model,
                   json.loads(row.metadata_json) if row.metadata_json else None, json.loads(row.input_files),
                   row.timeout_hours, aware(row.created_at) or row.created_at, row.status, row.total_requests,
                   row.succeeded_requests, row.failed_requests, aware(row.started_at), aware(row.completed_at),
                   row.output_file, row.error_file,
                   row.failure, row.inline_requests if with_requests else None, row.agent_id, row.agent_version)


def add(db: Database, job: JobInfo) -> None:
    with db.session() as session, session.begin():
        session.add(BatchJob(
            id=job.id, workspace_id=job.workspace_id, key_id=job.key_id, endpoint=job.endpoint, model=job.model,
            agent_id=job.agent_id, agent_version=job.agent_version,
            metadata_json=json.dumps(job.metadata) if job.metadata is not None else None,
            input_files=json.dumps(job.input_files), inline_requests=job.inline_requests,
            timeout_hours=job.timeout_hours, status=job.status, total_requests=job.total_requests,
            succeeded_requests=0, failed_requests=0, created_at=job.created_at))


def get(db: Database, workspace_id: str | None, job_id: str) -> JobInfo | None:
    """The job, if it belongs to the workspace (None: any workspace, for the worker)."""
    with db.session() as session:
        row = session.get(BatchJob, job_id)
    if row is None or (workspace_id is not None and row.workspace_id != workspace_id):
        return None
    return _info(row)


def list_page(db: Database, workspace_id: str, page: int, page_size: int,
              filters: JobFilter) -> tuple[list[JobInfo], int]:
    query = select(BatchJob).where(BatchJob.workspace_id == workspace_id)
    if filters.model:
        query = query.where(BatchJob.model == filters.model)
    if filters.agent_id:
        query = query.where(BatchJob.agent_id == filters.agent_id)
    if filters.key_id:
        query = query.where(BatchJob.key_id == filters.key_id)
    if filters.statuses:
        query = query.where(BatchJob.status.in_(filters.statuses))
    if filters.created_after:
        query = query.where(BatchJob.created_at > filters.created_after)
    order = BatchJob.created_at.desc() if filters.newest_first else BatchJob.created_at.asc()
    query = query.order_by(order, BatchJob.id).options(defer(BatchJob.inline_requests))  # not listed
    with db.session() as session:
        if not filters.metadata:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.offset(page * page_size).limit(page_size))
            return [_info(r, with_requests=False) for r in rows], total
        # metadata is a JSON column, compared in Python: the same on SQLite and PostgreSQL
        jobs = [_info(r, with_requests=False) for r in session.scalars(query)]
    jobs = [j for j in jobs if all((j.metadata or {}).get(k) == v for k, v in filters.metadata)]
    return jobs[page * page_size: (page + 1) * page_size], len(jobs)


def error_counts(db: Database, job_ids: list[str]) -> dict[str, list[tuple[str, int]]]:
    """For each job, its failed lines' distinct messages with their counts, most frequent first."""
    if not job_ids:
        return {}
    query = (select(BatchLine.job_id, BatchLine.error, func.count())
             .where(BatchLine.job_id.in_(job_ids), BatchLine.error.is_not(None))
             .group_by(BatchLine.job_id, BatchLine.error).order_by(func.count().desc()))
    out: dict[str, list[tuple[str, int]]] = {}
    with db.session() as session:
        for job_id, message, count in session.execute(query):
            out.setdefault(job_id, []).append((message, count))
    return out


def request_cancel(db: Database, workspace_id: str, job_id: str, now: datetime) -> JobInfo | None:
    """A queued job is cancelled at once; a running one is asked to stop (its worker
    finishes the cancellation). A finished job is left as it is."""
    with db.session() as session, session.begin():
        row = session.get(BatchJob, job_id, with_for_update=True)
        if row is None or row.workspace_id != workspace_id:
            return None
        if row.status == "QUEUED":
            row.status, row.completed_at = "CANCELLED", now
        elif row.status == "RUNNING":
            row.status = "CANCELLATION_REQUESTED"
        return _info(row)


def remove(db: Database, workspace_id: str, job_id: str) -> JobInfo | None:
    with db.session() as session, session.begin():
        row = session.get(BatchJob, job_id)
        if row is None or row.workspace_id != workspace_id:
            return None
        info = _info(row)
        session.execute(delete(BatchLine).where(BatchLine.job_id == job_id))
        session.delete(row)
        return info


def _free_lease(owner: str, now: datetime):  # type: ignore[no-untyped-def]
    return or_(BatchJob.lease_owner.is_(None), BatchJob.lease_owner == owner, BatchJob.lease_until < now)


def claim(db: Database, owner: str, now: datetime, until: datetime) -> JobInfo | None:
    """Takes the oldest unfinished job that no live worker holds, and holds it until `until`."""
    with db.session() as session:
        candidates = list(session.scalars(
            select(BatchJob.id).where(BatchJob.status.in_(ACTIVE), _free_lease(owner, now))
            .order_by(BatchJob.created_at, BatchJob.id).limit(8)))
    for job_id in candidates:
        with db.engine.begin() as connection:
            taken = connection.execute(
                update(BatchJob).where(BatchJob.id == job_id, BatchJob.status.in_(ACTIVE), _free_lease(owner, now))
                .values(lease_owner=owner, lease_until=until)).rowcount
            if taken:
                connection.execute(update(BatchJob).where(BatchJob.id == job_id, BatchJob.status == "QUEUED")
                                   .values(status="RUNNING", started_at=now))
        if taken:
            return get(db, None, job_id)
    return None


def renew(db: Database, job_id: str, owner: str, until: datetime) -> str | None:
    """Extends the lease; returns the job's status, or None when the lease was lost."""
    with db.engine.begin() as connection:
        held = connection.execute(update(BatchJob).where(BatchJob.id == job_id, BatchJob.lease_owner == owner)
                                  .values(lease_until=until)).rowcount
        if not held:
            return None
        return connection.execute(select(BatchJob.status).where(BatchJob.id == job_id)).scalar_one()


def release_leases(db: Database, owner: str) -> int:
    """Gives back every lease `owner` holds (its server is stopping); returns how many."""
    with db.engine.begin() as connection:
        return connection.execute(update(BatchJob).where(BatchJob.lease_owner == owner)
                                  .values(lease_owner=None, lease_until=None)).rowcount


def set_total(db: Database, job_id: str, total: int) -> None:
    with db.engine.begin() as connection:
        connection.execute(update(BatchJob).where(BatchJob.id == job_id).values(total_requests=total))


def done_lines(db: Database, job_id: str) -> set[int]:
    with db.session() as session:
        return set(session.scalars(select(BatchLine.line).where(BatchLine.job_id == job_id)))


def complete_line(db: Database, job_id: str, result: LineResult, usage: usage_store.Usage | None) -> bool:
    """Writes the line, its usage record and the job's counts in one transaction, unless
    the line was written already. Returns whether this call wrote it."""
    values = {"job_id": job_id, "line": result.line, "custom_id": result.custom_id,
              "status_code": result.status_code, "output": result.output, "error": result.error}
    with db.engine.begin() as connection:
        written = connection.execute(usage_store.insert_once(db, BatchLine, values, ["job_id", "line"])).first()
        if written is None:
            return False
        if usage is not None:
            usage_store.record_in(db, connection, usage)
        counter = BatchJob.failed_requests if result.error is not None else BatchJob.succeeded_requests
        connection.execute(update(BatchJob).where(BatchJob.id == job_id).values({counter: counter + 1}))
    return True


def outputs(db: Database, job_id: str, failed: bool | None = None) -> Iterator[str]:
    """The job's answered lines in input order: all, only the failed, or only the others."""
    query = select(BatchLine.output).where(BatchLine.job_id == job_id)
    if failed is not None:
        query = query.where(BatchLine.error.is_not(None) if failed else BatchLine.error.is_(None))
    with db.session() as session:
        yield from session.scalars(query.order_by(BatchLine.line))


def finish(db: Database, job_id: str, owner: str, status: str, now: datetime, files: list[FileInfo],
           output_file: str | None, error_file: str | None, failure: str | None = None) -> bool:
    """Ends the job held by `owner` with its result files, in one transaction."""
    with db.session() as session, session.begin():
        row = session.get(BatchJob, job_id, with_for_update=True)
        if row is None or row.lease_owner != owner or row.status in FINAL:
            return False
        for info in files:
            if session.get(StoredFile, info.id) is None:
                session.add(StoredFile(**info.__dict__))
        row.status, row.completed_at = status, now
        row.output_file, row.error_file, row.failure = output_file, error_file, failure
        row.lease_owner, row.lease_until = None, None
        return True
