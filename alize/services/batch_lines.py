"""Batch lines: read and checked up front (a malformed line becomes an error line, not a
crashed job), run through the same use case as the HTTP endpoint, and answered as a line
of the output or error file."""

import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from alize.errors import AlizeError, InvalidRequest, UnprocessableRequest
from alize.protocol import strict_json
from alize.protocol.agents import AgentsCompletionRequest
from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.conversations import ConversationRequest
from alize.protocol.embeddings import EmbeddingRequest
from alize.protocol.fim import FIMCompletionRequest
from alize.protocol.moderations import (
    ChatClassificationRequest,
    ChatModerationRequest,
    ClassificationRequest,
    ModerationRequest,
)
from alize.services.chat import ChatService
from alize.services.conversations import ConversationService
from alize.services.embeddings import EmbeddingService
from alize.services.fim import FIMService
from alize.services.metering import Call
from alize.services.moderations import ModerationService
from alize.store.batches import JobInfo

CHAT, CONVERSATIONS = "/v1/chat/completions", "/v1/conversations"
AGENT_ENDPOINTS = (CHAT, CONVERSATIONS)  # those a job run by an agent may name

# Runs one line's body as a request of the job's endpoint, for the line's metered call.
LineRunner = Callable[[dict[str, Any], Call], Awaitable[BaseModel | dict[str, Any]]]
# The runner of a job's lines: its endpoint's, or that of the agent (at its version) that runs it.
JobRunners = Callable[[JobInfo], LineRunner]
# An endpoint's use case, called with its validated request.
Service = Callable[[Any, Call], Awaitable[BaseModel | dict[str, Any]]]
# The chat completion an agent (at a version) makes of a request.
AgentRequest = Callable[[Call, AgentsCompletionRequest, int | None], Awaitable[ChatCompletionRequest]]


@dataclass(frozen=True)
class Line:
    index: int  # 0-based, over the job's non-blank input lines
    custom_id: str
    body: dict[str, Any] | None = None
    error: AlizeError | None = None  # why the line cannot run (then body is None)


def line_id(job_id: str, index: int) -> str:
    """The line's response id, which is also its usage record's id: one per job and line."""
    return f"batch-{job_id[:8]}-{index}-{job_id}"


def non_blank(data: bytes) -> Iterator[bytes]:
    """The lines of a JSONL file that count (blank lines are skipped)."""
    return (raw for raw in data.splitlines() if raw.strip())


def read_lines(inputs: Iterable[bytes], job_model: str | None, job_agent: str | None) -> Iterator[Line]:
    """The job's lines, numbered across its input files in order."""
    seen: set[str] = set()
    raws = (raw for data in inputs for raw in non_blank(data))
    for index, raw in enumerate(raws):
        yield _parse(index, raw, job_model, job_agent, seen)


def _parse(index: int, raw: bytes, job_model: str | None, job_agent: str | None, seen: set[str]) -> Line:
    where = f"line {index + 1}"
    try:
        item = strict_json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Line(index, str(index), error=InvalidRequest(f"{where} is not valid JSON"))
    if not isinstance(item, dict):
        return Line(index, str(index), error=InvalidRequest(f"{where} must be a JSON object", param="body"))
    custom_id = item.get("custom_id")
    if custom_id is None:
        custom_id = str(index)
    elif not isinstance(custom_id, str | int) or isinstance(custom_id, bool):
        return Line(index, str(index), error=InvalidRequest(f"{where}: custom_id must be a string",
                                                            param="custom_id"))
    custom_id = str(custom_id)
    if not isinstance(item.get("body"), dict):
        return Line(index, custom_id, error=InvalidRequest(f'{where} needs a "body" object', param="body"))
    if custom_id in seen:
        return Line(index, custom_id, error=InvalidRequest(
            f"{where}: custom_id {custom_id!r} is used by an earlier line", param="custom_id"))
    seen.add(custom_id)
    body = {k: v for k, v in item["body"].items() if k != "stream"}  # a batch line is never streamed
    problem = _who_answers(body, job_model, job_agent, where)
    return Line(index, custom_id, error=problem) if problem else Line(index, custom_id, body)


def _who_answers(body: dict[str, Any], job_model: str | None, job_agent: str | None,
                 where: str) -> InvalidRequest | None:
    """Why the line cannot say which model or agent answers it, if it cannot: the job's agent
    (the line names no model or other version), the job's model (filled in where the line
    names none), or the line's own model or, starting a conversation, its own agent."""
    model = body.get("model")
    if job_agent is not None:
        if model is not None:
            return InvalidRequest(f"{where} asks for model {model!r} but the job runs agent {job_agent}, whose model "
                                  "answers: leave model out", param="model")
        if body.get("agent_id", job_agent) != job_agent:
            return InvalidRequest(f"{where} asks for agent {body['agent_id']!r} but the job runs agent {job_agent}",
                                  param="agent_id")
        if body.get("agent_version") is not None:
            return InvalidRequest(f"{where} asks for a version of agent {job_agent}, but the job runs the version it "
                                  "had when the job was created: leave agent_version out", param="agent_version")
    elif job_model is not None and model is None:
        body["model"] = job_model
    elif job_model is not None and model != job_model:
        return InvalidRequest(f"{where} asks for model {model!r} but the job runs {job_model!r}", param="model")
    elif model is None and body.get("agent_id") is None:
        return InvalidRequest(f"{where} names no model: set body.model, or the job's model", param="model")
    return None


def _validated(schema: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        raise UnprocessableRequest.from_errors(exc.errors()) from exc


def runners(chat: ChatService, fim: FIMService, embeddings: EmbeddingService, moderations: ModerationService,
            conversations: ConversationService, agent_request: AgentRequest) -> JobRunners:
    """Each job's runner: the same use cases as the API's, whichever backend serves the model;
    a job run by an agent answers each line as /v1/agents/completions would, at the agent's
    version when the job was created."""
    calls: dict[str, tuple[type[BaseModel], Service]] = {
        CHAT: (ChatCompletionRequest, chat.complete),
        "/v1/fim/completions": (FIMCompletionRequest, fim.complete),
        "/v1/embeddings": (EmbeddingRequest, embeddings.create),
        "/v1/moderations": (ModerationRequest, moderations.moderate),
        "/v1/chat/moderations": (ChatModerationRequest, moderations.moderate_chat),
        "/v1/classifications": (ClassificationRequest, moderations.classify),
        "/v1/chat/classifications": (ChatClassificationRequest, moderations.classify_chat),
        CONVERSATIONS: (ConversationRequest, conversations.answer),
    }

    def runner(schema: type[BaseModel], call_service: Service) -> LineRunner:
        async def run(body: dict[str, Any], call: Call) -> BaseModel | dict[str, Any]:
            return await call_service(_validated(schema, body), call)
        return run

    by_endpoint = {endpoint: runner(schema, service) for endpoint, (schema, service) in calls.items()}

    def for_job(job: JobInfo) -> LineRunner:
        if job.agent_id is None:
            return by_endpoint[job.endpoint]
        if job.endpoint == CONVERSATIONS:  # a conversation takes its agent and version itself
            pinned = {"agent_id": job.agent_id, "agent_version": job.agent_version}
            start = by_endpoint[job.endpoint]
            return lambda body, call: start({**body, **pinned}, call)

        async def run(body: dict[str, Any], call: Call) -> BaseModel:
            request = _validated(AgentsCompletionRequest, {**body, "agent_id": job.agent_id})
            return await chat.complete(await agent_request(call, request, job.agent_version), call)
        return run

    return for_job


def metered_endpoint(job: JobInfo) -> str:
    """What a job's lines are metered as: their endpoint's, or agent completions for the
    chat lines an agent answers."""
    return "/v1/agents/completions" if job.agent_id is not None and job.endpoint == CHAT else job.endpoint


def output_line(job_id: str, line: Line, status: int, body: dict[str, Any], error: AlizeError | None) -> str:
    """A line of the output file, or (with an error) of the error file, in the same shape."""
    return json.dumps({
        "id": line_id(job_id, line.index), "custom_id": line.custom_id,
        "response": {"status_code": status, "body": body},
        "error": None if error is None else {"message": error.message, "code": error.code or error.type},
    }, ensure_ascii=False, separators=(",", ":"))
