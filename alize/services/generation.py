"""Running a prepared prompt through the engine: n choices, collected or streamed."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from alize.engine.chat_model import ChatModel
from alize.engine.params import FinishReason, GenerationRequest, SamplingParams, TokenEvent
from alize.errors import EngineFailure, Overloaded
from alize.registry import ModelEntry


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
    n: int = 1
    cache_scope: str | None = None  # None: no prefix-cache reuse
    id: str = field(default_factory=new_id)
    created: int = field(default_factory=now)

    @property
    def model_id(self) -> str:
        return self.entry.id


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


def wire_finish_reason(reason: FinishReason) -> str:
    if reason in (FinishReason.ABORT, FinishReason.TIMEOUT):
        return "error"
    return reason.value


def stream_finish_reason(reason: FinishReason) -> str:
    """Stream chunks know no "model_length" (the spec's enum): it is sent as "length"."""
    wire = wire_finish_reason(reason)
    return "length" if wire == "model_length" else wire


def _requests(prep: Prepared) -> list[GenerationRequest]:
    out = []
    for i in range(prep.n):
        params = prep.params
        if params.seed is not None and i:
            params = replace(params, seed=params.seed + i)  # n samples, not n copies
        out.append(GenerationRequest(new_id(), prep.prompt_tokens, params, prep.cache_scope))
    return out


async def stream_events(prep: Prepared) -> AsyncIterator[tuple[int, TokenEvent]]:
    """Yields (choice index, event) for every choice as the engine produces them."""
    requests = _requests(prep)
    engine = prep.model.engine
    engine.check_capacity(len(requests))
    if len(requests) == 1:
        async for event in engine.generate(requests[0]):
            yield 0, event
        return
    events: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()

    async def pump(index: int, request: GenerationRequest) -> None:
        async for event in engine.generate(request):
            await events.put((index, event))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    try:
        remaining = len(tasks)
        while remaining:
            index, event = await events.get()
            if event.finish_reason is not None:
                remaining -= 1
            yield index, event
    finally:
        for task in tasks:
            task.cancel()


async def collect(prep: Prepared) -> Result:
    choices = [Choice(i) for i in range(prep.n)]
    num_cached = 0
    async for index, event in stream_events(prep):
        choice = choices[index]
        choice.text += event.text
        choice.num_completion_tokens = event.num_completion_tokens
        if event.finish_reason is not None:
            raise_for_failure(event)
            choice.finish_reason = event.finish_reason
            if index == 0:
                num_cached = event.num_cached_tokens
    return Result(choices, len(prep.prompt_tokens), num_cached)
