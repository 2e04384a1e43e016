"""OpenAI's legacy text completion endpoint (/v1/completions)."""

from typing import Literal

from pydantic import Field

from alize.protocol.common import (
    LogitBias,
    Penalty,
    Request,
    Response,
    Stop,
    StreamOptions,
    Temperature,
    TopP,
    UsageInfo,
)


class CompletionRequest(Request):
    model: str
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int | None = Field(default=16, ge=0)
    temperature: Temperature = None
    top_p: TopP = None
    n: int | None = Field(default=None, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: int | None = None
    random_seed: int | None = Field(default=None, ge=0)
    presence_penalty: Penalty = None
    frequency_penalty: Penalty = None
    logit_bias: LogitBias = None
    echo: bool = False


class CompletionChoice(Response):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class CompletionResponse(Response):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None
