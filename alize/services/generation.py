"""Running a prepared prompt through the engine: n choices, collected or streamed."""

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from alize.engine.chat_model import ChatModel
from alize.engine.params import FinishReason, GenerationRequest, SamplingParams, TokenEvent
from alize.errors import EngineFailure, Overloaded
from alize.registry import ModelEntry
from alize.services.metering import Call
from alize.services.tools import ToolPlan


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> int:
    return int(time.time())


@dataclass
class Prepared:
    """A request turned into tokens and sampling parameters, ready for the engine."""

    entry: ModelEntry
    model: ChatModel
    prompt_tokens: list[int]
    params: SamplingParams
    call: Call  # who asks, and the meter of the request
    n: int = 1
    tools: ToolPlan | None = None  # function calling: the answer may be (or must be) tool calls
    check: Callable[[Any], bool] | None = None  # structured output: validates the parsed answer
    created: int = field(default_factory=now)

    @property
    def id(self) -> str:
        """The response id, which is also the id of the request's usage record."""
        return self.call.id

    @property
    def model_id(self) -> str:
        return self.entry.id

    @property
    def cache_scope(self) -> str | None:
        return self.call.cache_scope  # None: no prefix-cache reuse


async def admit(preps: list["Prepared"]) -> None:
    """Admits a request (one or more prompts) against its key's limits, worst case first."""
    first = preps[0]
    await first.call.admit(first.entry, sum(len(p.prompt_tokens) for p in preps),
                           sum(p.n * p.params.max_tokens for p in preps))


@dataclass
class Choice:
    index: int
    text: str = ""
    finish_reason: FinishReason | None = None
    num_completion_tokens: int = 0


@dataclass
class Result:
    choices: list[Choice]
    num_prompt_tokens: int
    num_cached_tokens: int = 0

    @property
    def num_completion_tokens(self) -> int:
        return sum(c.num_completion_tokens for c in self.choices)


def raise_for_failure(event: TokenEvent) -> None:
    """Turns an engine failure into the error the client should get."""
    if event.finish_reason is FinishReason.TIMEOUT:
        raise Overloaded(f"The model is overloaded: the request {event.error}; retry later")
    if event.finish_reason is FinishReason.ERROR:
        raise EngineFailure(f"Generation failed: {event.error}")
    if event.finish_reason is FinishReason.SHUTDOWN:
        raise Overloaded("The server is shutting down; retry on another replica or in a moment")


def wire_finish_reason(reason: FinishReason) -> str:
    if reason in (FinishReason.ABORT, FinishReason.TIMEOUT, FinishReason.SHUTDOWN):
        return "error"
    return reason.value


def stream_finish_reason(reason: FinishReason) -> str:
    """Stream chunks know no "model_length" (the spec's enum): it is sent as "length"."""
    wire = wire_finish_reason(reason)
    return "length" if wire == "model_length" else wire


def _requests(prep: Prepared) -> list[GenerationRequest]:
    out: list[GenerationRequest] = []
    for i in range(prep.n):
        params = prep.params
        if params.seed is not None and i:
            params = replace(params, seed=params.seed + i)  # n samples, not n copies
        leader = out[0].request_id if out else None  # the other choices share its prompt KV
        out.append(GenerationRequest(new_id(), prep.prompt_tokens, params, prep.cache_scope, leader,
                                      prep.call.priority))
    return out


def holds_cache(index: int, n: int) -> bool:
    """Whether choice `index` is its prompt's first, whose cached tokens count for the prompt
    (the other choices copy the prompt's KV from it)."""
    return index % n == 0


async def stream_events(*preps: Prepared) -> AsyncIterator[tuple[int, TokenEvent]]:
    """Yields (choice index, event) for every choice of every prompt as the engine produces
    them: all are given to the engine at once (prompt p's choice i is index p * n + i)."""
    requests = [request for prep in preps for request in _requests(prep)]
    call, n = preps[0].call, preps[0].n
    async for index, event in preps[0].model.engine.generate_many(requests):
        if event.queue_s is not None:
            call.queued(event.queue_s)
        call.progress(requests[index].request_id, event.num_completion_tokens,
                      event.num_cached_tokens if holds_cache(index, n) else None)
        yield index, event


async def started(*preps: Prepared) -> AsyncIterator[tuple[int, TokenEvent]]:
    """stream_events, once the engine has answered: a request it refused (queue timeout,
    failure, shutdown) raises here, before anything was sent, so that it still gets a JSON
    error status. Every streaming use case begins with it."""
    events = stream_events(*preps)
    first = await anext(events)
    if first[1].num_completion_tokens == 0 and first[1].finish_reason is not None:
        raise_for_failure(first[1])
    preps[0].call.delivering = True
    return _chain(first, events)


async def _chain(first: tuple[int, TokenEvent],
                 rest: AsyncIterator[tuple[int, TokenEvent]]) -> AsyncIterator[tuple[int, TokenEvent]]:
    yield first
    async for item in rest:
        yield item


async def collect(*preps: Prepared) -> Result:
    """Every choice of every prompt, whole (the one generation path: chat, FIM and
    completions all come through stream_events)."""
    choices = [Choice(i) for i in range(sum(prep.n for prep in preps))]
    num_cached = 0
    async for index, event in stream_events(*preps):
        choice = choices[index]
        choice.text += event.text
        choice.num_completion_tokens = event.num_completion_tokens
        if event.finish_reason is not None:
            raise_for_failure(event)
            choice.finish_reason = event.finish_reason
            if holds_cache(index, preps[0].n):
                num_cached += event.num_cached_tokens
    return Result(choices, sum(len(prep.prompt_tokens) for prep in preps), num_cached)
