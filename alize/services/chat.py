"""POST /v1/chat/completions as a use case: messages in, completion or chunks out."""

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from alize.errors import InvalidRequest, MessageOrderError, Unsupported
from alize.protocol.chat import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    ChunkChoice,
    DeltaMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from alize.protocol.common import PromptTokensDetails, UsageInfo
from alize.services.generation import (
    Prepared,
    admit,
    collect,
    raise_for_failure,
    stream_events,
    stream_finish_reason,
    wire_finish_reason,
)
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.sampling import SamplingFields, build_params, pick_seed

T = TypeVar("T")

# The system prompt Mistral's API prepends when safe_prompt is true.
SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. "
    "Avoid harmful, unethical, prejudiced, or negative content. "
    "Ensure replies promote fairness and positivity."
)


def content_text(content: str | list[dict[str, Any]] | None, where: str) -> str:
    """The text of a message's content; non-text chunks need a capability we lack."""
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for chunk in content:
        kind = chunk.get("type", "text" if "text" in chunk else None)  # "type" defaults to text
        if kind == "text" and isinstance(chunk.get("text"), str):
            parts.append(chunk["text"])
        elif kind == "thinking" and isinstance(chunk.get("thinking"), list):
            parts.append(content_text(chunk["thinking"], where))
        elif kind == "text":
            raise InvalidRequest(f"{where}: a text chunk needs a string 'text'", param="messages")
        else:
            raise Unsupported(f"{where}: content chunks of type {kind!r} are not supported by "
                              "this model (text only)", param="messages")
    return "".join(parts)


def _check_order(request: ChatCompletionRequest) -> None:
    last = request.messages[-1]
    if isinstance(last, UserMessage | ToolMessage):
        return
    if isinstance(last, AssistantMessage) and last.prefix:
        return
    raise MessageOrderError(
        f"Expected last role User or Tool (or Assistant with prefix True) for serving but got {last.role}",
        param="messages")


def render_messages(request: ChatCompletionRequest) -> tuple[list[dict[str, str]], str]:
    """Template messages, and the assistant prefix the model must continue (or '')."""
    _check_order(request)
    messages: list[dict[str, str]] = []
    prefix = ""
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        if isinstance(message, SystemMessage):
            messages.append({"role": "system", "content": content_text(message.content, where)})
        elif isinstance(message, UserMessage):
            messages.append({"role": "user", "content": content_text(message.content, where)})
        elif isinstance(message, ToolMessage):
            messages.append({"role": "tool", "content": content_text(message.content, where)})
        elif message.prefix:
            prefix = content_text(message.content, where)
        else:
            text = content_text(message.content, where)
            if message.tool_calls:
                calls = [{"name": c.function.name, "arguments": c.function.arguments}
                         for c in message.tool_calls]
                text = (text + "\n" if text else "") + json.dumps(calls)
            messages.append({"role": "assistant", "content": text})
    if request.safe_prompt:
        if messages and messages[0]["role"] == "system":
            messages[0]["content"] = SAFE_PROMPT + "\n\n" + messages[0]["content"]
        else:
            messages.insert(0, {"role": "system", "content": SAFE_PROMPT})
    return messages, prefix


class ChatService:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    def prepare(self, request: ChatCompletionRequest, call: Call | None = None) -> tuple[Prepared, str]:
        if request.tools:
            raise Unsupported("Function calling (tools) is not supported yet", param="tools")
        if request.response_format and request.response_format.type != "text":
            raise Unsupported(f"response_format {request.response_format.type!r} is not supported yet",
                              param="response_format")
        entry, model = self.hub.chat_model(request.model)
        messages, prefix = render_messages(request)
        prompt = model.template.render(messages, add_generation_prompt=True) + prefix
        tokens = model.tokenize_prompt(prompt)
        fields = SamplingFields(
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_completion_tokens if request.max_completion_tokens is not None
            else request.max_tokens,
            stop=request.stop,
            seed=pick_seed(request.random_seed, request.seed),
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            logit_bias=request.logit_bias,
            top_k=request.top_k,
            repetition_penalty=request.repetition_penalty,
            min_tokens=request.min_tokens,
        )
        params = build_params(fields, len(tokens), entry.backend, model.runner.n_vocab)
        return Prepared(entry, model, tokens, params, n=request.n or 1, call=call or Call.detached()), prefix

    async def complete(self, request: ChatCompletionRequest, call: Call | None = None) -> ChatCompletionResponse:
        prep, prefix = self.prepare(request, call)
        return await self.respond(prep, prefix)

    async def respond(self, prep: Prepared, prefix: str = "") -> ChatCompletionResponse:
        await admit([prep])
        result = await collect(prep)
        await prep.call.succeed()  # recorded before the client can see the answer
        return ChatCompletionResponse(
            id=prep.id,
            created=prep.created,
            model=prep.model_id,
            choices=[
                ChatChoice(index=c.index, message=ChatMessageOut(content=prefix + c.text),
                           finish_reason=wire_finish_reason(c.finish_reason))
                for c in result.choices
            ],
            usage=usage(result.num_prompt_tokens, result.num_completion_tokens, result.num_cached_tokens),
        )

    async def stream(self, prep: Prepared, prefix: str, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
        def chunk(choices: list[ChunkChoice], usage_info: UsageInfo | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=prep.id, created=prep.created, model=prep.model_id,
                                       choices=choices, usage=usage_info)

        await admit([prep])
        events = stream_events(prep)
        # Wait for the first event before sending anything, so that a request refused
        # by the engine (queue timeout, failure) still gets a JSON error status.
        first = await anext(events)
        if first[1].num_completion_tokens == 0 and first[1].finish_reason is not None:
            raise_for_failure(first[1])
        for i in range(prep.n):
            yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            if prefix:
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(content=prefix))])
        completion_tokens = [0] * prep.n
        remaining = prep.n
        num_cached = first[1].num_cached_tokens
        async for index, event in _chain(first, events):
            completion_tokens[index] = event.num_completion_tokens
            if event.finish_reason is None:
                yield chunk([ChunkChoice(index=index, delta=DeltaMessage(content=event.text))])
                continue
            remaining -= 1
            # Mistral puts usage on the last finishing chunk; OpenAI clients that asked
            # for include_usage get it again on an extra chunk with no choices.
            final_usage = usage(len(prep.prompt_tokens), sum(completion_tokens), num_cached) if not remaining else None
            if final_usage is not None:
                await prep.call.succeed()  # recorded before the client sees the last chunk
            yield chunk([ChunkChoice(index=index, delta=DeltaMessage(content=event.text),
                                     finish_reason=stream_finish_reason(event.finish_reason))],
                        final_usage)
            if final_usage is not None and include_usage:
                yield chunk([], final_usage)


async def _chain(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


def usage(num_prompt: int, num_completion: int, num_cached: int = 0) -> UsageInfo:
    """Cached prompt tokens still count as prompt tokens; prompt_tokens_details says how many."""
    return UsageInfo(prompt_tokens=num_prompt, completion_tokens=num_completion,
                     total_tokens=num_prompt + num_completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=num_cached))
