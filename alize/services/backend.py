"""The seam between the use cases and whatever generates the answer.

A use case (chat, FIM, completions) turns a validated request into a Generation through
the backend that serves its model: the local llama.cpp engine (services/generation.py) or
an upstream engine (services/upstream_chat.py, upstream_text.py). The generation is
admitted against the key's limits; it yields Pieces — text as it comes, each choice's end —
and then says what it used. The use case writes Mistral's shapes from the pieces, one way
whichever backend answers: the same chunks, tool-call settling, schema checks and usage."""

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from alize.errors import AlizeError
from alize.protocol.common import PromptTokensDetails, UsageInfo
from alize.services.metering import Call
from alize.services.tools import ToolPlan


@dataclass
class Piece:
    """Text for one choice, or its end (`finish` set)."""

    index: int  # the choice (prompt x n + choice when there are several prompts)
    text: str = ""
    finish: str | None = None  # the end's wire reason: stop, length, model_length, tool_calls, error
    calls: list[dict[str, Any]] | None = None  # at the end: tool calls the engine parsed itself
    failure: AlizeError | None = None  # at the end: why it failed (a whole answer raises it)


def usage_info(prompt: int, completion: int, cached: int = 0) -> UsageInfo:
    """Cached prompt tokens still count as prompt tokens; prompt_tokens_details says how many."""
    return UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))


@dataclass(kw_only=True)
class Generation(ABC):
    """One admitted request on one backend, streamed (billed as delivered once begun) or
    whole. `start` runs it: a refusal or a failure before anything is produced raises there,
    so that the client still gets a JSON error; then its pieces come, then `usage`."""

    call: Call  # who asks, and the meter of the request
    model_id: str
    n: int = 1  # choices per prompt
    prefix: str = ""  # the assistant's message the answer continues (Mistral's `prefix`)
    tools: ToolPlan | None = None  # function calling: the answer may be (or must be) tool calls
    calls_in_text: bool = True  # tool calls are read from the text here (the local engine)
    check: Callable[[Any], bool] | None = None  # structured output: validates the parsed answer
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        """The response id, which is also the id of the request's usage record."""
        return self.call.id

    @abstractmethod
    async def start(self) -> AsyncIterator[Piece]:
        """Runs the request; returns its pieces once the backend has answered."""

    @abstractmethod
    def usage(self) -> UsageInfo:
        """What the request used, once its pieces have all come; also settled on the call."""


async def collect(gen: Generation) -> tuple[list[tuple[Piece, str]], UsageInfo]:
    """A whole answer: each choice's end and its text, by index, and the usage. A choice
    that failed raises its error (the client gets an error status); the call is recorded
    before the answer is returned."""
    texts: dict[int, list[str]] = {}
    ends: dict[int, Piece] = {}
    async for piece in await gen.start():
        texts.setdefault(piece.index, []).append(piece.text)
        if piece.finish is not None:
            if piece.failure is not None:
                raise piece.failure
            ends[piece.index] = piece
    usage = gen.usage()
    await gen.call.succeed()
    return [(end, "".join(texts[index])) for index, end in sorted(ends.items())], usage
