"""The batch worker: takes one unfinished job at a time and runs its lines through the
engine behind interactive requests, a few at a time.

Progress is durable: each answered line is written with its usage record in one
transaction, so after a crash (kill -9) the job resumes with the lines not yet written,
and no line is answered or billed twice. A job is held through a lease renewed every
second; the same renewal sees a cancellation request or the job's deadline."""

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel

from alize.engine.params import BACKGROUND
from alize.errors import AlizeError, EngineFailure, Overloaded, TooManyRequests, Unauthorized
from alize.services.auth import check_usable
from alize.services.batch_lines import JobRunners, Line, line_id, metered_endpoint, output_line, read_lines
from alize.services.files import FileService
from alize.services.metering import Call, Meter, endpoint_of
from alize.store import batches
from alize.store.accounts import KeyInfo, get_key, utcnow
from alize.store.batches import JobInfo, LineResult
from alize.store.db import Database
from alize.store.files import FileInfo

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a running job's lease is renewed and its status read
LEASE_S = 30.0  # how long a dead worker's job stays held before another takes it over
MAX_RETRY_WAIT_S = 60  # a line refused for longer (a monthly quota) fails instead of waiting
RESULT_NAMESPACE = uuid.UUID("6d1f6a4e-1c2b-4f39-9a63-2f1b7c0e5a11")  # result file ids, from the job id


@dataclass
class _Run:
    """One job being run: its lines in flight, and whether it is stopping."""

    job: JobInfo
    key: KeyInfo  # as read for the line admitted last: each line reads it anew
    stopping: bool = False
    refused: Unauthorized | None = None  # the key was revoked or expired: the rest fail with this
    generating: set[asyncio.Task[object]] = field(default_factory=set)


class BatchWorker:
    def __init__(self, db: Database, files: FileService, meter: Meter, runners: JobRunners, *,
                 owner: str, concurrency: int, price_factor: Decimal, cache_scope: Callable[[str], str | None]):
        self.db = db
        self.files = files
        self.meter = meter
        self.runners = runners
        self.owner = owner
        self.concurrency = concurrency
        self.price_factor = price_factor
        self.cache_scope = cache_scope  # a key's prefix-cache scope
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def release(self) -> None:
        """Gives back the leases of the jobs this worker holds (it is stopping): another
        server's worker takes them up at its next look, not when the leases lapse."""
        await asyncio.to_thread(batches.release_leases, self.db, self.owner)

    def wake(self) -> None:
        """A job was created or cancelled: look now rather than at the next poll (from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Runs jobs until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            now = utcnow()
            job = await asyncio.to_thread(batches.claim, self.db, self.owner, now, now + timedelta(seconds=LEASE_S))
            if job is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=5 * POLL_S)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            try:
                await self.run_job(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away, say: the job resumes on a later try
                log.exception("batch job %s stopped; it resumes on the next try", job.id)
                await asyncio.sleep(5 * POLL_S)

    async def run_job(self, job: JobInfo) -> None:
        if job.status == "CANCELLATION_REQUESTED":
            await self._finish(job, "CANCELLED")
            return
        if utcnow() >= self._deadline(job):
            await self._finish(job, "TIMEOUT_EXCEEDED")
            return
        try:
            lines = await asyncio.to_thread(self._read, job)
        except AlizeError as exc:
            await self._finish(job, "FAILED", failure=exc.message)
            return
        if len(lines) != job.total_requests:
            await asyncio.to_thread(batches.set_total, self.db, job.id, len(lines))
        done = await asyncio.to_thread(batches.done_lines, self.db, job.id)
        key = await asyncio.to_thread(get_key, self.db, job.key_id)
        run = _Run(job, key)
        outcome = await self._run_lines(run, [line for line in lines if line.index not in done])
        if outcome is not None:  # None: the lease was lost; whoever holds the job now ends it
            await self._finish(job, outcome, failure=run.refused.message if run.refused else None)

    def _read(self, job: JobInfo) -> list[Line]:
        inputs = [self.files.content(job.workspace_id, file_id) for file_id in job.input_files]
        if job.inline_requests:
            inputs.append(job.inline_requests.encode())
        return list(read_lines(inputs, job.model, job.agent_id))

    @staticmethod
    def _deadline(job: JobInfo) -> datetime:
        return job.created_at + timedelta(hours=job.timeout_hours)

    async def _run_lines(self, run: _Run, todo: list[Line]) -> str | None:
        """Runs the lines; returns how the job ends: SUCCESS, CANCELLED, TIMEOUT_EXCEEDED,
        or None when the lease was lost."""
        pending = iter(todo)

        async def consume() -> None:
            for line in pending:
                if run.refused is not None:  # the key is gone: each line left is an error line saying so
                    line = replace(line, body=None, error=run.refused)
                elif run.stopping:
                    return
                await self._run_line(run, line)

        workers = asyncio.gather(*(consume() for _ in range(max(1, min(self.concurrency, len(todo))))))
        outcome: str | None = "SUCCESS"
        try:
            while not workers.done():
                await asyncio.wait([workers], timeout=POLL_S)
                if workers.done():
                    break
                status = await asyncio.to_thread(batches.renew, self.db, run.job.id, self.owner,
                                                 utcnow() + timedelta(seconds=LEASE_S))
                if status is None or status == "CANCELLATION_REQUESTED" or utcnow() >= self._deadline(run.job):
                    outcome = {None: None, "CANCELLATION_REQUESTED": "CANCELLED"}.get(status, "TIMEOUT_EXCEEDED")
                    break
        finally:
            run.stopping = True  # lines in flight are cut; those being written are written
            for task in list(run.generating):
                task.cancel()
            await asyncio.gather(workers, return_exceptions=True)
        workers.result()  # a line that could not be written (database error) stops the job here
        return "FAILED" if run.refused is not None and outcome == "SUCCESS" else outcome

    async def _run_line(self, run: _Run, line: Line) -> None:
        call = self._call(run, line)
        if line.error is not None:
            status, body, error = line.error.status_code, line.error.body(), line.error
        else:
            answered = await self._answer(run, line, call)
            if answered is None:  # cut short by cancellation: nothing written, nothing billed
                return
            call, status, body, error = answered
        result = LineResult(line.index, line.custom_id, status, output_line(run.job.id, line, status, body, error),
                            None if error is None else error.message)
        written = await call.record_with(status, lambda usage: batches.complete_line(self.db, run.job.id, result,
                                                                                      usage))
        if written and self.meter.telemetry is not None:
            self.meter.telemetry.batch_lines.labels("succeeded" if status < 400 else "failed").inc()

    def _call(self, run: _Run, line: Line) -> Call:
        name = endpoint_of(metered_endpoint(run.job))
        assert name is not None  # every batch endpoint is metered
        return Call(self.meter, name, id=line_id(run.job.id, line.index), key=run.key,
                    cache_scope=self.cache_scope(run.key.id), priority=BACKGROUND,
                    price_factor=self.price_factor, held=True)

    async def _answer(self, run: _Run, line: Line,
                      call: Call) -> tuple[Call, int, dict[str, object], AlizeError | None] | None:
        """Runs the line, waiting out rate limits and a busy engine; None if it was cut short."""
        assert line.body is not None
        runner = self.runners(run.job)
        while True:
            try:  # the key as it is now: revoked, expired or with new limits since the last line
                run.key = call.key = check_usable(await asyncio.to_thread(get_key, self.db, run.job.key_id))
            except Unauthorized as exc:
                run.refused = Unauthorized(f"The batch job stopped: {exc.message.removeprefix('Unauthorized: ')}")
                return call, exc.status_code, run.refused.body(), run.refused
            task = asyncio.create_task(runner(line.body, call))
            run.generating.add(task)
            try:
                response = await task
                body = response.model_dump(mode="json") if isinstance(response, BaseModel) else response
                return call, 200, body, None
            except asyncio.CancelledError:
                await call.abandon()
                if run.stopping:
                    return None
                raise
            except (TooManyRequests, Overloaded) as exc:
                wait = int((exc.headers or {}).get("Retry-After", "1"))
                if wait > MAX_RETRY_WAIT_S:
                    return call, exc.status_code, exc.body(), exc
                await call.abandon()
                await asyncio.sleep(wait)
                call = self._call(run, line)
            except AlizeError as exc:
                return call, exc.status_code, exc.body(), exc
            except Exception as exc:  # a bug must cost one line, not the job
                log.exception("batch line %s failed", call.id)
                failure = EngineFailure(f"Internal error: {type(exc).__name__}")
                return call, failure.status_code, failure.body(), failure
            finally:
                run.generating.discard(task)

    async def _finish(self, job: JobInfo, status: str, failure: str | None = None) -> None:
        """Writes the output and error files from the answered lines, then ends the job."""
        output = await self._result_file(job, "batch_result", failed=False)
        errors = await self._result_file(job, "batch_error", failed=True)
        produced = [output, errors]
        await asyncio.to_thread(batches.finish, self.db, job.id, self.owner, status, utcnow(),
                                [f for f in produced if f is not None], output.id if output else None,
                                errors.id if errors else None, failure)

    async def _result_file(self, job: JobInfo, sample_type: str, failed: bool) -> FileInfo | None:
        """The job's answered (or failed) lines as a file; its id follows from the job's, so
        finishing again after a crash rewrites the same file."""
        texts = await asyncio.to_thread(lambda: list(batches.outputs(self.db, job.id, failed)))
        if not texts:
            return None
        file_id = str(uuid.uuid5(RESULT_NAMESPACE, f"{job.id}:{sample_type}"))
        return await self.files.produce(job.workspace_id, file_id, f"{job.id}_{sample_type}.jsonl", sample_type,
                                        texts)
