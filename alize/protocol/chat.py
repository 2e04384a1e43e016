from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from alize.protocol.common import (
    LogitBias,
    MaxTokens,
    Metadata,
    Penalty,
    Request,
    Response,
    Seed,
    Stop,
    StreamOptions,
    Temperature,
    TopP,
    UsageInfo,
)
from alize.protocol.guardrails import Guardrails

Content = str | list[dict[str, Any]] | None


class FunctionCall(Request):
    name: str
    arguments: dict[str, Any] | str


class ToolCall(Request):
    id: str | None = None
    type: str | None = "function"
    function: FunctionCall
    index: int | None = None


class SystemMessage(Request):
    role: Literal["system", "developer"]
    content: Content


class UserMessage(Request):
    role: Literal["user"]
    content: Content


class AssistantMessage(Request):
    role: Literal["assistant"]
    content: Content = None
    tool_calls: list[ToolCall] | None = None
    prefix: bool = False


class ToolMessage(Request):
    role: Literal["tool"]
    content: Content
    tool_call_id: str | None = None
    name: str | None = None


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class ResponseFormat(Request):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class Prediction(Request):
    """The answer the client expects (Mistral's and OpenAI's predicted outputs): text, or
    OpenAI's list of text parts."""

    type: Literal["content"] = "content"
    content: str | list[dict[str, Any]] = ""


class ChatCompletionRequest(Request):
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: Temperature = None
    top_p: TopP = None
    max_tokens: MaxTokens = None
    max_completion_tokens: MaxTokens = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    random_seed: Seed = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    presence_penalty: Penalty = None
    frequency_penalty: Penalty = None
    logit_bias: LogitBias = None
    n: int | None = Field(default=None, ge=1, le=16)
    min_tokens: int | None = Field(default=None, ge=0)
    top_k: int | None = Field(default=None, ge=0, le=1_000_000)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    safe_prompt: bool = False
    metadata: Metadata = None
    prediction: Prediction | None = None
    prompt_cache_key: str | None = None
    guardrails: Guardrails = None

    @model_validator(mode="after")
    def _prefix_only_last(self) -> "ChatCompletionRequest":
        for message in self.messages[:-1]:
            if isinstance(message, AssistantMessage) and message.prefix:
                raise ValueError("only the last message may be an assistant message with prefix")
        return self


class ChatMessageOut(Response):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None
    prefix: bool = False


class ChatChoice(Response):
    index: int
    message: ChatMessageOut
    finish_reason: str


class ChatCompletionResponse(Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo


def _omit_if_null(data: dict[str, Any], key: str) -> dict[str, Any]:
    if data.get(key) is None:
        data.pop(key, None)
    return data


class DeltaMessage(Response):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # left out when there are none

    @model_serializer(mode="wrap")
    def _omit_null_tool_calls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_if_null(handler(self), "tool_calls")


class ChunkChoice(Response):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None


class ChatCompletionChunk(Response):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None

    @model_serializer(mode="wrap")
    def _omit_null_usage(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The spec's UsageInfo is not nullable: chunks without usage leave the key out.
        return _omit_if_null(handler(self), "usage")
