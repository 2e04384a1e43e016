"""The batch store and worker on SQLite and PostgreSQL, with a scriptable runner in place
of the engine (the engine's side is tested over HTTP in test_batch*.py): leases between
workers, lines written once, resumption, cancellation and the job deadline."""

import asyncio
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from alize.services.batch_worker import LEASE_S, BatchWorker
from alize.services.files import FileService
from alize.services.limits import Limiter
from alize.services.metering import Call, Meter
from alize.store import accounts, batches
from alize.store.accounts import NewKey, utcnow
from alize.store.batches import JobInfo, LineResult
from alize.store.blobs import DirectoryBlobStore
from alize.store.counters import MemoryCounters
from alize.store.db import Database
from alize.store.usage import Usage
from tests.platform_helpers import usage_rows

CHAT = "/v1/chat/completions"


class Answer(BaseModel):
    text: str


class ScriptedRunner:
    """Answers each line with its content after `delay` seconds; records what it ran."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.ran: list[str] = []

    async def __call__(self, body: dict[str, Any], call: Call) -> BaseModel:
        await asyncio.sleep(self.delay)
        self.ran.append(call.id)
        return Answer(text=body["messages"][0]["content"])


@pytest.fixture
def key(db):
    info, _ = accounts.create_key(db, NewKey("batch-store"))
    return info


def new_job(db: Database, key, lines: int, created_ago: timedelta = timedelta(0), timeout_hours: int = 24) -> JobInfo:
    inline = "".join(f'{{"custom_id": "c{i}", "body": {{"messages": [{{"role": "user", "content": "m{i}"}}]}}}}\n'
                     for i in range(lines))
    job = JobInfo(str(uuid.uuid4()), key.workspace.id, key.id, CHAT, "mistral-tiny", None, [], timeout_hours,
                  utcnow() - created_ago, total_requests=lines, inline_requests=inline)
    batches.add(db, job)
    return job


def make_worker(db: Database, tmp_path, owner: str, runner: ScriptedRunner) -> BatchWorker:
    files = FileService(db, DirectoryBlobStore(tmp_path / "files"), 10**6)
    return BatchWorker(db, files, Meter(db, Limiter(MemoryCounters(), db)), lambda job: runner, owner=owner,
                       concurrency=2, price_factor=Decimal("0.5"), cache_scope=lambda key_id: key_id)


def test_a_leased_job_is_taken_over_only_once_its_lease_lapses(db, key):
    job = new_job(db, key, 1)
    now = utcnow()
    assert batches.claim(db, "a", now, now + timedelta(seconds=LEASE_S)).id == job.id
    assert batches.get(db, None, job.id).status == "RUNNING"
    assert batches.claim(db, "b", now, now + timedelta(seconds=LEASE_S)) is None  # held by a
    assert batches.claim(db, "a", now, now + timedelta(seconds=LEASE_S)).id == job.id  # a, restarted
    later = now + timedelta(seconds=LEASE_S + 1)
    assert batches.claim(db, "b", later, later + timedelta(seconds=LEASE_S)).id == job.id  # a died
    assert batches.renew(db, job.id, "a", later) is None  # a has lost it
    assert batches.renew(db, job.id, "b", later) == "RUNNING"
    assert not batches.finish(db, job.id, "a", "SUCCESS", later, [], None, None)
    assert batches.finish(db, job.id, "b", "SUCCESS", later, [], None, None)
    assert batches.claim(db, "c", later, later) is None  # finished: nobody takes it


def test_a_stopping_server_gives_its_leases_back_for_another_to_take_at_once(db, key):
    job = new_job(db, key, 2)
    now = utcnow()
    assert batches.claim(db, "a", now, now + timedelta(seconds=LEASE_S)).id == job.id
    assert batches.claim(db, "b", now, now + timedelta(seconds=LEASE_S)) is None  # held by a
    assert batches.release_leases(db, "a") == 1  # a drains (SIGTERM)
    assert batches.claim(db, "b", now, now + timedelta(seconds=LEASE_S)).id == job.id  # not 30 s later
    assert batches.release_leases(db, "a") == 0  # a holds nothing now


def test_a_line_is_written_and_billed_once(db, key, db_url):
    job = new_job(db, key, 2)
    row = Usage("batch-line-0", utcnow(), key.workspace.id, key.id, "mistral-tiny", "chat.completions", 200, 5, 3)
    result = LineResult(0, "c0", 200, '{"custom_id": "c0"}')
    assert batches.complete_line(db, job.id, result, row)
    assert not batches.complete_line(db, job.id, result, row)  # a second worker, or a replay
    failed = LineResult(1, "c1", 400, '{"custom_id": "c1"}', error="bad line")
    assert batches.complete_line(db, job.id, failed, None)
    info = batches.get(db, key.workspace.id, job.id)
    assert (info.succeeded_requests, info.failed_requests) == (1, 1)
    assert [r.id for r in usage_rows(db_url)] == ["batch-line-0"]
    assert list(batches.outputs(db, job.id, failed=True)) == ['{"custom_id": "c1"}']
    assert batches.error_counts(db, [job.id]) == {job.id: [("bad line", 1)]}
    assert batches.done_lines(db, job.id) == {0, 1}


def test_the_worker_resumes_with_the_lines_not_yet_written(db, key, tmp_path):
    job = new_job(db, key, 6)
    for i in (0, 3):  # written before a crash
        batches.complete_line(db, job.id, LineResult(i, f"c{i}", 200, f'{{"custom_id": "c{i}"}}'), None)
    runner = ScriptedRunner()
    worker = make_worker(db, tmp_path, "w", runner)
    claimed = batches.claim(db, "w", utcnow(), utcnow() + timedelta(seconds=LEASE_S))
    asyncio.run(worker.run_job(claimed))
    assert sorted(runner.ran) == sorted(f"batch-{job.id[:8]}-{i}-{job.id}" for i in (1, 2, 4, 5))
    done = batches.get(db, key.workspace.id, job.id)
    assert (done.status, done.succeeded_requests, done.failed_requests) == ("SUCCESS", 6, 0)
    output = [json.loads(line) for line in worker.files.content(key.workspace.id, done.output_file).splitlines()]
    assert [line["custom_id"] for line in output] == [f"c{i}" for i in range(6)]  # input order
    assert output[1]["response"]["body"] == {"text": "m1"} and done.error_file is None


def test_a_job_past_its_deadline_ends_as_timeout_exceeded(db, key, tmp_path):
    job = new_job(db, key, 3, created_ago=timedelta(hours=2), timeout_hours=1)
    runner = ScriptedRunner()
    worker = make_worker(db, tmp_path, "w", runner)
    asyncio.run(worker.run_job(batches.claim(db, "w", utcnow(), utcnow() + timedelta(seconds=LEASE_S))))
    done = batches.get(db, key.workspace.id, job.id)
    assert done.status == "TIMEOUT_EXCEEDED" and runner.ran == [] and done.completed_at is not None


def test_cancelling_a_running_job_cuts_the_lines_in_flight(db, key, tmp_path):
    job = new_job(db, key, 40)
    runner = ScriptedRunner(delay=0.3)
    worker = make_worker(db, tmp_path, "w", runner)

    async def scenario() -> None:
        claimed = batches.claim(db, "w", utcnow(), utcnow() + timedelta(seconds=LEASE_S))
        running = asyncio.create_task(worker.run_job(claimed))
        await asyncio.sleep(1.0)
        assert batches.request_cancel(db, key.workspace.id, job.id, utcnow()).status == "CANCELLATION_REQUESTED"
        await asyncio.wait_for(running, timeout=5)

    asyncio.run(scenario())
    done = batches.get(db, key.workspace.id, job.id)
    assert done.status == "CANCELLED" and 2 <= done.succeeded_requests < 40
    assert done.succeeded_requests == len(runner.ran)  # what ran to its end was written, nothing else
    assert len(worker.files.content(key.workspace.id, done.output_file).splitlines()) == done.succeeded_requests
