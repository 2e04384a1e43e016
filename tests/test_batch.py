"""Batch jobs: the official SDK's workflow end to end, malformed input, cancellation,
workspace isolation, the CLI, and (test_batch_durability.py) a kill -9 midway."""

import json
import time
from typing import Any

import httpx
import pytest
from mistralai.client import Mistral

from tests.platform_helpers import EOS_BAN, create_key, sqlite_url, usage_rows
from tests.server import alize, start_server
from tests.spec import assert_valid

MODEL = "mistral-tiny"  # priced: 0.00015 / 0.0002 EUR per 1,000 tokens (alize/default_models.toml)


def chat_line(i: int, max_tokens: int = 4, **body: Any) -> dict[str, Any]:
    return {"custom_id": f"q{i}", "body": {"messages": [{"role": "user", "content": f"Say a word about {i}"}],
                                           "max_tokens": max_tokens, "temperature": 0, **body}}


def jsonl(items: list[Any]) -> bytes:
    return b"".join((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n" for item in items)


def upload(http: httpx.Client, data: bytes, name: str = "in.jsonl") -> str:
    r = http.post("/v1/files", files={"file": (name, data)}, data={"purpose": "batch"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def wait_job(http: httpx.Client, job_id: str, timeout: float = 180,
             until: tuple[str, ...] = ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED")) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/batch/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")


def file_lines(http: httpx.Client, file_id: str) -> list[dict[str, Any]]:
    r = http.get(f"/v1/files/{file_id}/content")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    return [json.loads(line) for line in r.content.splitlines()]


def test_sdk_batch_workflow(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    data = jsonl([chat_line(i) for i in range(6)])
    uploaded = client.files.upload(file={"file_name": "questions.jsonl", "content": data}, purpose="batch")
    job = client.batch.jobs.create(input_files=[uploaded.id], model=MODEL, endpoint="/v1/chat/completions",
                                   metadata={"run": "sdk-workflow"})
    assert job.status in ("QUEUED", "RUNNING") and job.total_requests == 6
    while job.status in ("QUEUED", "RUNNING"):
        time.sleep(0.3)
        job = client.batch.jobs.get(job_id=job.id)
    assert job.status == "SUCCESS", job
    assert (job.succeeded_requests, job.failed_requests, job.completed_requests) == (6, 0, 6)
    assert job.error_file is None and job.started_at and job.completed_at
    output = client.files.download(file_id=job.output_file).read()
    lines = [json.loads(line) for line in output.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"q{i}" for i in range(6)]
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["id"].startswith(f"batch-{job.id[:8]}-")
        assert_valid(line["response"]["body"], "ChatCompletionResponse")
        assert line["response"]["body"]["usage"]["completion_tokens"] <= 4
    info = client.files.retrieve(file_id=job.output_file)
    assert (info.purpose, info.sample_type, info.source, info.num_lines) == ("batch", "batch_result", "mistral", 6)
    listed = client.batch.jobs.list(metadata={"run": "sdk-workflow"})
    assert [j.id for j in listed.data] == [job.id] and listed.total == 1
    assert job.id in [j.id for j in client.batch.jobs.list(status=["SUCCESS"]).data]
    assert client.batch.jobs.list(status=["QUEUED"], metadata={"run": "sdk-workflow"}).total == 0
    # metered once per line, at half the list price
    rows = {r.id: r for r in usage_rows(sqlite_url(server)) if r.id.startswith(f"batch-{job.id[:8]}-")}
    assert set(rows) == {line["id"] for line in lines}
    for line in lines:
        row, usage = rows[line["id"]], line["response"]["body"]["usage"]
        assert (row.prompt_tokens, row.completion_tokens, row.status) == (usage["prompt_tokens"],
                                                                           usage["completion_tokens"], 200)
        assert row.cost_nano == (usage["prompt_tokens"] * 150 + usage["completion_tokens"] * 200) // 2


def test_batch_jobs_conform_to_the_spec(http):
    job = http.post("/v1/batch/jobs", json={"endpoint": "/v1/embeddings", "model": "mistral-embed",
                                            "requests": [{"custom_id": "a", "body": {"input": ["bonjour"]}},
                                                         {"body": {"input": "salut"}}]})
    assert job.status_code == 200, job.text
    assert_valid(job.json(), "BatchJob")
    done = wait_job(http, job.json()["id"])
    assert done["status"] == "SUCCESS" and done["succeeded_requests"] == 2, done
    assert_valid(done, "BatchJob")
    inline = http.get(f"/v1/batch/jobs/{done['id']}", params={"inline": "true"}).json()
    assert_valid(inline, "BatchJob")
    assert [o["custom_id"] for o in inline["outputs"]] == ["a", "1"]  # a missing custom_id is the line's index
    assert len(inline["outputs"][0]["response"]["body"]["data"][0]["embedding"]) == 384
    assert_valid(http.get("/v1/batch/jobs", params={"page_size": 2}).json(), "ListBatchJobsResponse")
    assert_valid(http.delete(f"/v1/batch/jobs/{done['id']}").json(), "DeleteBatchJobResponse")
    assert http.get(f"/v1/batch/jobs/{done['id']}").status_code == 404


def test_moderation_batch_gives_what_the_endpoints_give(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    texts = ["I love sunny days.", "How do I make a pipe bomb?", "I will kill you if you come here again."]
    lines = [{"custom_id": f"t{i}", "body": {"input": text}} for i, text in enumerate(texts)]
    lines.append({"custom_id": "chat", "body": {"input": [{"role": "user", "content": texts[2]}]}})
    moderations = client.batch.jobs.create(requests=lines[:3], model="mistral-moderation-latest",
                                           endpoint="/v1/moderations")
    chat = client.batch.jobs.create(requests=lines[3:], model="mistral-moderation-latest",
                                    endpoint="/v1/chat/moderations")
    with server.client() as http:
        outputs = {}
        for job in (moderations, chat):
            done = wait_job(http, job.id)
            assert done["status"] == "SUCCESS" and done["failed_requests"] == 0, done
            inline = http.get(f"/v1/batch/jobs/{job.id}", params={"inline": "true"}).json()
            outputs.update({o["custom_id"]: o for o in inline["outputs"]})
        for i, text in enumerate(texts):
            direct = http.post("/v1/moderations", json={"model": "mistral-moderation-latest", "input": text}).json()
            body = outputs[f"t{i}"]["response"]["body"]
            assert_valid(body, "ModerationResponse")
            assert body["results"][0]["categories"] == direct["results"][0]["categories"]
        assert outputs["t0"]["response"]["body"]["results"][0]["categories"] == dict.fromkeys(
            outputs["t0"]["response"]["body"]["results"][0]["categories"], False)
        assert outputs["t1"]["response"]["body"]["results"][0]["categories"]["dangerous_and_criminal_content"]
        assert outputs["chat"]["response"]["body"]["results"][0]["categories"]["violence_and_threats"]
    # metered once per line, as the endpoint meters it, at the batch price
    for job, endpoint, count in ((moderations, "moderations", 3), (chat, "chat.moderations", 1)):
        rows = [r for r in usage_rows(sqlite_url(server), endpoint=endpoint) if r.id.startswith(f"batch-{job.id[:8]}-")]
        assert len(rows) == count and all(r.prompt_tokens > 0 and r.completion_tokens == 0 for r in rows)
        assert all(r.cost_nano == r.prompt_tokens * 100 // 2 for r in rows)  # 0.0001 EUR per 1,000 tokens, halved


def test_a_job_run_by_an_agent_answers_as_the_agent_did_when_the_job_was_created(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    first = "You are a pirate. Answer in one short sentence."
    agent = client.beta.agents.create(model=MODEL, name="batch-pirate", instructions=first,
                                      completion_args={"temperature": 0, "max_tokens": 4})
    question = [{"role": "user", "content": "Who are you?"}]
    lines = [{"custom_id": "a", "body": {"messages": question}},
             {"custom_id": "b", "body": {"messages": question, "max_tokens": 2}},  # the line's own wins
             {"custom_id": "c", "body": {"model": MODEL, "messages": question}}]  # the agent's model answers
    with server.client() as http:
        ahead = http.post("/v1/batch/jobs", json={"model": MODEL, "endpoint": "/v1/chat/completions", "requests": [
            chat_line(i, max_tokens=32, logit_bias=EOS_BAN) for i in range(6)]}).json()  # the worker's, meanwhile
        job = client.batch.jobs.create(endpoint="/v1/chat/completions", agent_id=agent.id, requests=lines)
        assert job.agent_id == agent.id and job.model is None
        client.beta.agents.update(agent_id=agent.id, instructions=first + " Then tell a long story about the sea.")
        assert http.get(f"/v1/batch/jobs/{job.id}").json()["status"] == "QUEUED"  # updated while it waits
        done = wait_job(http, job.id)
        assert done["status"] == "SUCCESS" and (done["succeeded_requests"], done["failed_requests"]) == (2, 1), done
        assert_valid(done, "BatchJob")
        outputs = {o["custom_id"]: o for o in http.get(f"/v1/batch/jobs/{job.id}", params={"inline": "true"}
                                                       ).json()["outputs"]}
        # the prompt the agent's first version makes, and its second version's, asked directly
        as_made = [http.post("/v1/chat/completions", json={
            "model": MODEL, "max_tokens": 1, "messages": [{"role": "system", "content": text}, *question]}
        ).json()["usage"]["prompt_tokens"] for text in (first, first + " Then tell a long story about the sea.")]
        listed = client.batch.jobs.list(agent_id=agent.id)
        assert wait_job(http, ahead["id"])["status"] == "SUCCESS"
    assert as_made[0] < as_made[1]
    for custom_id, most in (("a", 4), ("b", 2)):
        body = outputs[custom_id]["response"]["body"]
        assert_valid(body, "ChatCompletionResponse")
        assert body["model"] == MODEL and body["usage"]["prompt_tokens"] == as_made[0]
        assert 0 < body["usage"]["completion_tokens"] <= most
    error = outputs["c"]
    assert error["response"]["status_code"] == 400 and "leave model out" in error["error"]["message"]
    assert [j.id for j in listed.data] == [job.id] and listed.total == 1
    # metered as agent completions, once per line (the refused one for nothing), at the batch price
    rows = [r for r in usage_rows(sqlite_url(server), endpoint="agents.completions")
            if r.id.startswith(f"batch-{job.id[:8]}-")]
    assert sorted((r.prompt_tokens, r.completion_tokens) for r in rows) == sorted([(0, 0), *(
        (outputs[c]["response"]["body"]["usage"]["prompt_tokens"],
         outputs[c]["response"]["body"]["usage"]["completion_tokens"]) for c in "ab")])
    assert all(r.cost_nano == (r.prompt_tokens * 150 + r.completion_tokens * 200) // 2 for r in rows)


def test_conversation_batches_start_conversations_as_the_endpoint_does(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    agent = client.beta.agents.create(model=MODEL, name="batch-greeter", instructions="Greet in one word.",
                                      completion_args={"temperature": 0, "max_tokens": 3})
    args = {"temperature": 0, "max_tokens": 3}
    lines = [{"custom_id": "kept", "body": {"model": MODEL, "inputs": "Say hello.", "completion_args": args,
                                            "name": "batch-kept"}},
             {"custom_id": "unkept", "body": {"model": MODEL, "inputs": [{"role": "user", "content": "Say bye."}],
                                              "completion_args": args, "store": False}},
             {"custom_id": "agent", "body": {"agent_id": agent.id, "inputs": "Hi"}},
             {"custom_id": "neither", "body": {"inputs": "Hi"}}]
    with server.client() as http:
        ahead = http.post("/v1/batch/jobs", json={"model": MODEL, "endpoint": "/v1/chat/completions", "requests": [
            chat_line(i, max_tokens=32, logit_bias=EOS_BAN) for i in range(6)]}).json()  # the worker's, meanwhile
        job = client.batch.jobs.create(endpoint="/v1/conversations", requests=lines)
        by_agent = client.batch.jobs.create(endpoint="/v1/conversations", agent_id=agent.id,
                                            requests=[{"custom_id": "a", "body": {"inputs": "Hello"}}])
        client.beta.agents.update(agent_id=agent.id, instructions="Greet in two words.")  # version 1
        assert http.get(f"/v1/batch/jobs/{by_agent.id}").json()["status"] == "QUEUED"  # updated while it waits
        outputs = {}
        for created, (succeeded, failed) in ((job, (3, 1)), (by_agent, (1, 0))):
            done = wait_job(http, created.id)
            assert done["status"] == "SUCCESS", done
            assert (done["succeeded_requests"], done["failed_requests"]) == (succeeded, failed), done
            outputs.update({o["custom_id"]: o for o in http.get(f"/v1/batch/jobs/{created.id}",
                                                                params={"inline": "true"}).json()["outputs"]})
        for custom_id in ("kept", "unkept", "agent", "a"):
            body = outputs[custom_id]["response"]["body"]
            assert_valid(body, "ConversationResponse")
            assert [o["type"] for o in body["outputs"]] == ["message.output"]
            assert 0 < body["usage"]["completion_tokens"] <= 3
        assert outputs["neither"]["response"]["status_code"] == 400
        kept = http.get(f"/v1/conversations/{outputs['kept']['response']['body']['conversation_id']}").json()
        assert kept["name"] == "batch-kept" and kept["model"] == MODEL
        unkept = http.get(f"/v1/conversations/{outputs['unkept']['response']['body']['conversation_id']}")
        assert unkept.status_code == 404  # store: false, as over HTTP
        # a line's own agent runs as over HTTP (its current version); the job's, at its version when created
        for custom_id, version in (("agent", None), ("a", 0)):
            started = http.get(f"/v1/conversations/{outputs[custom_id]['response']['body']['conversation_id']}")
            assert (started.json()["agent_id"], started.json()["agent_version"]) == (agent.id, version), started.text
        assert wait_job(http, ahead["id"])["status"] == "SUCCESS"
    # metered as conversations, one record per line, at the batch price
    rows = [r for r in usage_rows(sqlite_url(server), endpoint="conversations")
            if r.id.startswith((f"batch-{job.id[:8]}-", f"batch-{by_agent.id[:8]}-"))]
    assert len(rows) == 5 and sum(r.completion_tokens > 0 for r in rows) == 4
    assert all(r.cost_nano == (r.prompt_tokens * 150 + r.completion_tokens * 200) // 2 for r in rows)


def test_malformed_lines_become_error_lines(http):
    items: list[Any] = [
        chat_line(0, model=MODEL),
        b'{"custom_id": "broken", "body": {',  # not JSON
        b"",  # blank: skipped
        {"custom_id": "no-body"},
        chat_line(1, model="mistral-large-latest"),  # not the job's model
        {"custom_id": "no-messages", "body": {"max_tokens": 3}},  # invalid for the endpoint: 422
        chat_line(0),  # custom_id q0 again
        b'{"custom_id": "nan", "body": {"temperature": NaN, "messages": []}}',  # not strict JSON
        {"custom_id": "too-long", "body": {"messages": [{"role": "user", "content": "x " * 9000}], "max_tokens": 2}},
    ]
    job = http.post("/v1/batch/jobs", json={"input_files": [upload(http, jsonl(items))], "model": MODEL,
                                            "endpoint": "/v1/chat/completions"}).json()
    assert job["total_requests"] == 8
    done = wait_job(http, job["id"])
    assert (done["status"], done["succeeded_requests"], done["failed_requests"]) == ("SUCCESS", 1, 7), done
    assert sum(e["count"] for e in done["errors"]) == 7
    assert [line["custom_id"] for line in file_lines(http, done["output_file"])] == ["q0"]
    errors = {line["custom_id"]: line for line in file_lines(http, done["error_file"])}
    assert set(errors) == {"1", "no-body", "q1", "no-messages", "q0", "6", "too-long"}
    status = {cid: line["response"]["status_code"] for cid, line in errors.items()}
    assert status == {"1": 400, "no-body": 400, "q1": 400, "no-messages": 422, "q0": 400, "6": 400, "too-long": 400}
    for line in errors.values():
        assert line["error"]["message"] and line["response"]["body"]["object"] == "error"
    assert "model" in errors["q1"]["error"]["message"] and "earlier line" in errors["q0"]["error"]["message"]


@pytest.mark.parametrize(("body", "status"), [
    ({"endpoint": "/v1/completions/nope", "requests": [{"body": {}}]}, 400),
    ({"endpoint": "/v1/ocr", "requests": [{"body": {}}]}, 400),  # in the spec, not run by Alizé
    ({"endpoint": "/v1/moderations", "model": "mistral-small-latest", "requests": [{"body": {}}]}, 400),
    ({"endpoint": "/v1/classifications", "model": "mistral-moderation-latest", "requests": [{"body": {}}]}, 400),
    ({"endpoint": "/v1/chat/completions", "input_files": ["00000000-0000-4000-8000-000000000000"]}, 404),
    ({"endpoint": "/v1/chat/completions"}, 400),  # neither files nor requests
    ({"endpoint": "/v1/chat/completions", "model": "no-such-model", "requests": [{"body": {}}]}, 404),
    ({"endpoint": "/v1/chat/completions", "model": "mistral-embed", "requests": [{"body": {}}]}, 400),
    ({"endpoint": "/v1/chat/completions", "requests": [{"body": {}}], "timeout_hours": 0}, 422),
    ({"endpoint": "/v1/chat/completions", "requests": [{"body": {}}], "metadata": {"k" * 33: "v"}}, 422),
    ({"endpoint": "/v1/chat/completions", "requests": [{"body": {}}], "agent_id": "ag_1"}, 404),
    ({"endpoint": "/v1/chat/completions", "requests": [{"body": {}}], "agent_id": "ag_1", "model": MODEL}, 400),
    ({"endpoint": "/v1/embeddings", "requests": [{"body": {}}], "agent_id": "ag_1"}, 400),
    ({"endpoint": "/v1/conversations", "requests": [{"body": {}}], "agent_id": "ag_1"}, 404),
    ({"endpoint": "/v1/chat/completions", "requests": [{"custom_id": 1, "body": {}}]}, 422),
    ({"endpoint": "/v1/chat/completions", "input_files": ["not-a-uuid"]}, 422),
])
def test_bad_job_requests_are_4xx_and_create_nothing(http, body, status):
    before = http.get("/v1/batch/jobs").json()["total"]
    r = http.post("/v1/batch/jobs", json=body)
    assert r.status_code == status and r.json()["object"] == "error", r.text
    assert http.get("/v1/batch/jobs").json()["total"] == before


def test_input_file_needs_purpose_batch(http):
    r = http.post("/v1/files", files={"file": ("a.jsonl", jsonl([chat_line(0)]))}, data={"purpose": "fine-tune"})
    r = http.post("/v1/batch/jobs", json={"endpoint": "/v1/chat/completions", "input_files": [r.json()["id"]]})
    assert r.status_code == 400 and "purpose" in r.json()["message"]


def test_another_workspace_cannot_see_cancel_or_use(server):
    with server.client(server.admin_key) as admin:
        admin.post("/admin/v1/workspaces", json={"name": "batch-other"})
    other = create_key(server, workspace="batch-other")
    with server.client() as mine:
        file_id = upload(mine, jsonl([chat_line(0)]))
        job_id = mine.post("/v1/batch/jobs", json={"input_files": [file_id], "model": MODEL,
                                                   "endpoint": "/v1/chat/completions"}).json()["id"]
    with server.client(other["secret"]) as theirs:
        assert job_id not in [j["id"] for j in theirs.get("/v1/batch/jobs").json()["data"]]
        for r in (theirs.get(f"/v1/batch/jobs/{job_id}"), theirs.post(f"/v1/batch/jobs/{job_id}/cancel"),
                  theirs.delete(f"/v1/batch/jobs/{job_id}"),
                  theirs.post("/v1/batch/jobs", json={"input_files": [file_id], "model": MODEL,
                                                      "endpoint": "/v1/chat/completions"})):
            assert r.status_code == 404 and r.json()["object"] == "error", r.text
    with server.client() as mine:
        done = wait_job(mine, job_id)
        assert done["status"] == "SUCCESS"
        output_file = done["output_file"]
    with server.client(other["secret"]) as theirs:
        assert theirs.get(f"/v1/files/{output_file}/content").status_code == 404


def test_cancel_stops_the_job_and_keeps_the_lines_done(tmp_path):
    server = start_server(tmp_path / "data", env={"ALIZE_BATCH_CONCURRENCY": "2"})
    try:
        with server.client() as http:
            lines = [chat_line(i, max_tokens=24, logit_bias=EOS_BAN) for i in range(80)]
            running = http.post("/v1/batch/jobs", json={"input_files": [upload(http, jsonl(lines))], "model": MODEL,
                                                        "endpoint": "/v1/chat/completions"}).json()
            queued = http.post("/v1/batch/jobs", json={"requests": lines[:3], "model": MODEL,
                                                       "endpoint": "/v1/chat/completions"}).json()
            wait_job(http, running["id"], until=("RUNNING",))
            assert http.get(f"/v1/batch/jobs/{queued['id']}").json()["status"] == "QUEUED"  # one job at a time
            cancelled = http.post(f"/v1/batch/jobs/{queued['id']}/cancel").json()
            assert cancelled["status"] == "CANCELLED" and cancelled["completed_requests"] == 0
            deadline = time.monotonic() + 60
            while http.get(f"/v1/batch/jobs/{running['id']}").json()["completed_requests"] < 4:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            asked = time.monotonic()
            r = http.post(f"/v1/batch/jobs/{running['id']}/cancel")
            assert r.status_code == 200 and r.json()["status"] in ("CANCELLATION_REQUESTED", "CANCELLED")
            done = wait_job(http, running["id"], timeout=10)
            took = time.monotonic() - asked
            assert done["status"] == "CANCELLED" and took < 5, (done, took)
            assert 4 <= done["succeeded_requests"] < 80 and done["failed_requests"] == 0
            kept = file_lines(http, done["output_file"])
            assert len(kept) == done["succeeded_requests"]
            assert len({line["custom_id"] for line in kept}) == len(kept)
            time.sleep(1.5)
            assert http.get(f"/v1/batch/jobs/{running['id']}").json()["completed_requests"] == len(kept)
            assert http.post(f"/v1/batch/jobs/{running['id']}/cancel").json()["status"] == "CANCELLED"
            assert http.get(f"/v1/batch/jobs/{queued['id']}").json()["status"] == "CANCELLED"
        rows = [r for r in usage_rows(sqlite_url(server)) if r.id.startswith(f"batch-{running['id'][:8]}-")]
        assert sorted(r.id for r in rows) == sorted(line["id"] for line in kept)  # only kept lines billed
    finally:
        server.stop()


def test_cli_submit_status_download_cancel(server, tmp_path):
    source = tmp_path / "questions.jsonl"
    source.write_bytes(jsonl([chat_line(i) for i in range(3)]))
    results = tmp_path / "results.jsonl"
    env = {"MISTRAL_API_KEY": server.key, "ALIZE_URL": server.url}
    submitted = alize("batch", "submit", str(source), "--model", MODEL, "-o", str(results), env=env)
    job_id = submitted.stdout.strip()
    assert "SUCCESS" in submitted.stderr and "3/3" in submitted.stderr, submitted.stderr
    assert sorted(json.loads(line)["custom_id"] for line in results.read_text().splitlines()) == ["q0", "q1", "q2"]
    status = alize("batch", "status", job_id, env=env)
    assert "SUCCESS" in status.stdout and "3/3 done" in status.stdout
    downloaded = alize("batch", "download", job_id, env=env)
    assert downloaded.stdout == results.read_text()
    cancelled = alize("batch", "cancel", job_id, env=env)
    assert "SUCCESS" in cancelled.stdout  # a finished job stays as it is
    queued = alize("batch", "submit", str(source), "--model", MODEL, "--no-wait", env=env).stdout.strip()
    assert len(queued) == 36
    # an agent answers the lines, which name no model
    agent = Mistral(api_key=server.key, server_url=server.url).beta.agents.create(
        model=MODEL, name="cli-agent", instructions="Answer in one word.")
    by_agent = alize("batch", "submit", str(source), "--agent", agent.id, "-o", str(results), env=env)
    assert "SUCCESS" in by_agent.stderr and "3/3" in by_agent.stderr, by_agent.stderr
    job = Mistral(api_key=server.key, server_url=server.url).batch.jobs.get(job_id=by_agent.stdout.strip())
    assert job.agent_id == agent.id and len(results.read_text().splitlines()) == 3


def test_cli_submit_refuses_lines_without_a_model_and_reports_failed_jobs(server, tmp_path):
    import subprocess

    env = {"MISTRAL_API_KEY": server.key, "ALIZE_URL": server.url}
    source = tmp_path / "no-model.jsonl"
    source.write_bytes(jsonl([chat_line(i) for i in range(3)]))
    with pytest.raises(subprocess.CalledProcessError) as refused:
        alize("batch", "submit", str(source), env=env)
    assert refused.value.returncode == 2 and "3 of 3 lines name no model" in refused.value.stderr
    with pytest.raises(subprocess.CalledProcessError) as both:
        alize("batch", "submit", str(source), "--model", MODEL, "--agent", "ag_1", env=env)
    assert both.value.returncode == 2 and "not both" in both.value.stderr
    # every line fails (an unknown model): a non-zero exit, the causes grouped, and the error file saved
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl([chat_line(i, model="gpt-9") for i in range(3)] + [b"not json"]))
    results = tmp_path / "out.jsonl"
    with pytest.raises(subprocess.CalledProcessError) as failed:
        alize("batch", "submit", str(bad), "-o", str(results), env=env)
    assert failed.value.returncode == 1
    assert "3 x" in failed.value.stderr and "1 x" in failed.value.stderr, failed.value.stderr
    errors = tmp_path / "out.errors.jsonl"
    assert f"error lines written to {errors}" in failed.value.stderr.replace("\n", "")
    assert len(errors.read_text().splitlines()) == 4 and not results.exists()


def test_a_job_whose_input_file_is_deleted_fails_with_the_reason(http):
    ahead = http.post("/v1/batch/jobs", json={"requests": [chat_line(i, max_tokens=32, logit_bias=EOS_BAN)
                                                           for i in range(6)],
                                              "model": MODEL, "endpoint": "/v1/chat/completions"}).json()
    file_id = upload(http, jsonl([chat_line(0)]))
    job = http.post("/v1/batch/jobs", json={"input_files": [file_id], "model": MODEL,
                                            "endpoint": "/v1/chat/completions"}).json()
    assert http.delete(f"/v1/files/{file_id}").status_code == 200  # while the job waits its turn
    done = wait_job(http, job["id"])
    assert done["status"] == "FAILED" and done["completed_requests"] == 0, done
    assert any(file_id in e["message"] for e in done["errors"])
    assert wait_job(http, ahead["id"])["status"] == "SUCCESS"


def test_a_spent_budget_fails_lines_instead_of_overspending(server):
    # a line costs at most (prompt + 4) tokens at half price; the budget fits about two
    per_line = (40 * 150 + 4 * 200) // 2
    key = create_key(server, budget_eur=2.5 * per_line / 1e9)
    with server.client(key["secret"]) as http:
        job = http.post("/v1/batch/jobs", json={"requests": [chat_line(i) for i in range(6)], "model": MODEL,
                                                "endpoint": "/v1/chat/completions"}).json()
        done = wait_job(http, job["id"])
        assert done["status"] == "SUCCESS" and 1 <= done["succeeded_requests"] < 6, done
        errors = file_lines(http, done["error_file"])
    assert all(e["response"]["status_code"] == 429 and "budget" in e["error"]["message"] for e in errors)
    rows = [r for r in usage_rows(sqlite_url(server)) if r.id.startswith(f"batch-{job['id'][:8]}-")]
    assert len(rows) == 6 and sum(r.cost_nano for r in rows) <= 2.5 * per_line


def _job_running_with_lines_done(http: httpx.Client, lines: int, done: int) -> dict[str, Any]:
    job = http.post("/v1/batch/jobs", json={"requests": [chat_line(i, max_tokens=16, logit_bias=EOS_BAN)
                                                         for i in range(lines)],
                                            "model": MODEL, "endpoint": "/v1/chat/completions"}).json()
    deadline = time.monotonic() + 120
    while http.get(f"/v1/batch/jobs/{job['id']}").json()["completed_requests"] < done:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return job


def test_revoking_the_key_stops_its_running_job(server):
    key = create_key(server)
    with server.client(key["secret"]) as http, server.client(server.admin_key) as admin:
        job = _job_running_with_lines_done(http, 40, 2)
        assert admin.post(f"/admin/v1/keys/{key['id']}/revoke").status_code == 200
        revoked_at = time.monotonic()
    with server.client() as http:  # the job's own key no longer works: read it from the store
        rows = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(rows) < 40:
            rows = [r for r in usage_rows(sqlite_url(server)) if r.id.startswith(f"batch-{job['id'][:8]}-")]
            time.sleep(0.2)
    assert len(rows) == 40, "every line ends: answered before the revocation, or an error line after it"
    answered = [r for r in rows if r.status == 200]
    refused = [r for r in rows if r.status == 401]
    assert len(answered) + len(refused) == 40 and len(refused) >= 30, (len(answered), len(refused))
    # at most the lines already admitted when the key was revoked were answered and billed after it
    late = [r for r in answered if r.created_at.timestamp() > time.time() - (time.monotonic() - revoked_at)]
    assert len(late) <= 2, len(late)
    assert all(r.cost_nano == 0 for r in refused)


def test_a_budget_set_to_zero_applies_to_the_next_line(server):
    workspace = f"budget-{time.time_ns()}"
    with server.client(server.admin_key) as admin:
        assert admin.post("/admin/v1/workspaces", json={"name": workspace}).status_code == 201
    key = create_key(server, workspace=workspace)
    with server.client(key["secret"]) as http, server.client(server.admin_key) as admin:
        job = _job_running_with_lines_done(http, 30, 2)
        r = admin.patch(f"/admin/v1/workspaces/{workspace}/limits", json={"budget_eur": 0})
        assert r.status_code == 200, r.text
        done = wait_job(http, job["id"])
        errors = file_lines(http, done["error_file"])
    assert done["status"] == "SUCCESS" and done["succeeded_requests"] <= 6, done
    assert len(errors) >= 24 and all(e["response"]["status_code"] == 429 and "budget" in e["error"]["message"]
                                     for e in errors)
