"""The local llama.cpp engine as a backend: prepared prompts run as one Generation."""

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from alize.engine.chat_model import ChatModel
from alize.engine.params import FinishReason, GenerationRequest, SamplingParams, TokenEvent
from alize.errors import AlizeError, EngineFailure, Overloaded
from alize.protocol.common import CompletionTokensDetails, UsageInfo
from alize.registry import ModelEntry
from alize.services.backend import Generation, Piece, usage_info
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
    prediction: list[int] | None = None  # the answer the client expects, as tokens: drafts to verify
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


def failure_of(event: TokenEvent) -> AlizeError | None:
    """The error the client should get for an engine failure, if the event is one."""
    if event.finish_reason is FinishReason.TIMEOUT:
        return Overloaded(f"The model is overloaded: the request {event.error}; retry later")
    if event.finish_reason is FinishReason.ERROR:
        return EngineFailure(f"Generation failed: {event.error}")
    if event.finish_reason is FinishReason.SHUTDOWN:
        return Overloaded("The server is shutting down; retry on another replica or in a moment")
    return None


def wire_finish_reason(reason: FinishReason) -> str:
    if reason in (FinishReason.ABORT, FinishReason.TIMEOUT, FinishReason.SHUTDOWN):
        return "error"
    return reason.value


def stream_finish_reason(wire: str) -> str:
    """Stream chunks know no "model_length" (the spec's enum): it is sent as "length"."""
    return "length" if wire == "model_length" else wire


def _requests(prep: Prepared) -> list[GenerationRequest]:
    out: list[GenerationRequest] = []
    for i in range(prep.n):
        params = prep.params
        if params.seed is not None and i:
            params = replace(params, seed=params.seed + i)  # n samples, not n copies
        leader = out[0].request_id if out else None  # the other choices share its prompt KV
        out.append(GenerationRequest(new_id(), prep.prompt_tokens, params, prep.cache_scope, leader,
                                      prep.call.priority, prep.prediction))
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


Started = tuple[list[tuple[int, TokenEvent]], AsyncIterator[tuple[int, TokenEvent]]]  # (those read, the rest)


async def started(*preps: Prepared) -> Started:
    """stream_events, once the engine has answered: a request it refused (queue timeout,
    failure, shutdown) raises here, before anything was sent, so that it still gets a JSON
    error status. Every streaming use case begins with it. The first event comes back
    apart from the rest (not chained back in front of them: a generator more a token)."""
    events = stream_events(*preps)
    first = await anext(events)
    failure = failure_of(first[1])
    if failure is not None and first[1].num_completion_tokens == 0:
        raise failure
    preps[0].call.delivering = True
    return [first], events


def groups(preps: list[Prepared]) -> Iterator[tuple[int, list[Prepared]]]:
    """The prompts in groups whose choices all fit in the engine at once (decoded together),
    with the choice index each group starts at."""
    n, capacity = preps[0].n, preps[0].model.engine.capacity
    size = max(1, capacity // n)
    for start in range(0, len(preps), size):
        yield start * n, preps[start:start + size]


class LocalGeneration(Generation):
    """One or more prepared prompts (their n choices each) on the local engine, a group at
    a time; prompt p's choice i is piece index p * n + i."""

    def __init__(self, preps: list[Prepared], stream: bool, prefix: str = ""):
        first = preps[0]
        super().__init__(call=first.call, model_id=first.model_id, n=first.n, prefix=prefix, tools=first.tools,
                         check=first.check, created=first.created)
        self.preps, self.stream = preps, stream
        self.num_completion = self.num_cached = self.num_accepted = self.num_rejected = 0

    async def admit(self) -> "LocalGeneration":
        await admit(self.preps)
        return self

    async def _events(self, group: list[Prepared]) -> Started:
        # streamed, a refusal raises before anything is sent, and what is delivered is billed
        return await started(*group) if self.stream else ([], stream_events(*group))

    async def start(self) -> AsyncIterator[Piece]:
        parts = list(groups(self.preps))
        return self._pieces(parts, await self._events(parts[0][1]))

    async def _pieces(self, parts: list[tuple[int, list[Prepared]]], events: Started) -> AsyncIterator[Piece]:
        for number, (offset, group) in enumerate(parts):
            read, rest = await self._events(group) if number else events
            for index, event in read:
                if (piece := self._piece(offset + index, index, event)) is not None:
                    yield piece
            async for index, event in rest:
                if (piece := self._piece(offset + index, index, event)) is not None:
                    yield piece

    def _piece(self, number: int, index: int, event: TokenEvent) -> Piece | None:
        """Choice `number`'s piece for an event of its group (`index` in the group); None
        for an empty one."""
        if event.finish_reason is None:
            return Piece(number, event.text) if event.text else None
        self.num_completion += event.num_completion_tokens
        self.num_accepted += event.num_draft_accepted
        self.num_rejected += event.num_draft_rejected
        if holds_cache(index, self.n):
            self.num_cached += event.num_cached_tokens
        return Piece(number, event.text, wire_finish_reason(event.finish_reason), failure=failure_of(event))

    def usage(self) -> UsageInfo:
        usage = usage_info(sum(len(p.prompt_tokens) for p in self.preps), self.num_completion, self.num_cached)
        usage.completion_tokens_details = CompletionTokensDetails(accepted_prediction_tokens=self.num_accepted,
                                                                  rejected_prediction_tokens=self.num_rejected)
        return usage
