"""POST /v1/chat/completions as a use case: messages in, completion or chunks out."""

from collections.abc import AsyncIterator
from typing import TypeVar

from alize.errors import InvalidRequest
from alize.protocol.chat import (
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    ChunkChoice,
    DeltaMessage,
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
from alize.services.prompts import add_system, conversation, prompt_tokens
from alize.services.sampling import SamplingFields, build_params, pick_seed
from alize.services.structured import response_grammar
from alize.services.tools import ToolPlan, parse_calls, plan_tools

T = TypeVar("T")

class ChatService:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    def prepare(self, request: ChatCompletionRequest, call: Call | None = None) -> tuple[Prepared, str]:
        entry, model = self.hub.chat_model(request.model)
        grammar, instruction = response_grammar(request.response_format)
        plan = plan_tools(request, model.tool_style)
        if plan is not None and grammar is not None:
            raise InvalidRequest("tools and a JSON response_format cannot be combined", param="response_format")
        if plan is not None:
            grammar, instruction = plan.grammar, plan.instruction
        messages, prefix = conversation(request)
        if instruction:
            add_system(messages, instruction)
        tokens = prompt_tokens(model, messages, plan, prefix)
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
            grammar=grammar,
        )
        params = build_params(fields, len(tokens), entry.backend, model.runner.n_vocab)
        if grammar is not None and not model.runner.check_grammar(grammar):
            raise InvalidRequest("the response_format could not be compiled to a grammar", param="response_format")
        return Prepared(entry, model, tokens, params, n=request.n or 1, call=call or Call.detached(),
                        tools=plan), prefix

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
            choices=[_choice(c.index, prefix + c.text, wire_finish_reason(c.finish_reason), prep.tools)
                     for c in result.choices],
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
        held = [_HeldText(prep.tools) for _ in range(prep.n)]
        async for index, event in _chain(first, events):
            completion_tokens[index] = event.num_completion_tokens
            if event.finish_reason is None:
                text = held[index].feed(event.text)
                if text:
                    yield chunk([ChunkChoice(index=index, delta=DeltaMessage(content=text))])
                continue
            remaining -= 1
            # Mistral puts usage on the last finishing chunk; OpenAI clients that asked
            # for include_usage get it again on an extra chunk with no choices.
            final_usage = usage(len(prep.prompt_tokens), sum(completion_tokens), num_cached) if not remaining else None
            if final_usage is not None:
                await prep.call.succeed()  # recorded before the client sees the last chunk
            delta, reason = held[index].finish(event.text, stream_finish_reason(event.finish_reason))
            yield chunk([ChunkChoice(index=index, delta=delta, finish_reason=reason)], final_usage)
            if final_usage is not None and include_usage:
                yield chunk([], final_usage)


class _HeldText:
    """Streaming with tools: an answer that starts like calls ("[", or "<" for <tool_call>)
    may be tool calls, which are sent whole in one delta when the answer ends; any other
    answer streams as text."""

    def __init__(self, tools: ToolPlan | None):
        self.tools = tools
        self.mode = "text" if tools is None else "undecided"
        self.buffer = ""

    def feed(self, text: str) -> str:
        if self.mode == "text":
            return text
        self.buffer += text
        start = self.buffer.lstrip()
        if not start:
            return ""
        if self.mode == "undecided":
            assert self.tools is not None
            self.mode = "calls" if start.startswith(self.tools.opener) else "text"
        if self.mode == "text":
            out, self.buffer = self.buffer, ""
            return out
        return ""

    def finish(self, text: str, finish_reason: str) -> tuple[DeltaMessage, str]:
        rest = self.feed(text)
        if self.mode != "calls":
            return DeltaMessage(content=rest + self.buffer), finish_reason
        assert self.tools is not None
        calls = parse_calls(self.buffer, self.tools)
        if calls is None:
            return DeltaMessage(content=self.buffer), finish_reason
        return DeltaMessage(content="", tool_calls=calls), "tool_calls"


def _choice(index: int, text: str, finish_reason: str, tools: ToolPlan | None) -> ChatChoice:
    calls = parse_calls(text, tools) if tools is not None else None
    if calls is None:
        return ChatChoice(index=index, message=ChatMessageOut(content=text), finish_reason=finish_reason)
    return ChatChoice(index=index, message=ChatMessageOut(content="", tool_calls=calls), finish_reason="tool_calls")


async def _chain(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


def usage(num_prompt: int, num_completion: int, num_cached: int = 0) -> UsageInfo:
    """Cached prompt tokens still count as prompt tokens; prompt_tokens_details says how many."""
    return UsageInfo(prompt_tokens=num_prompt, completion_tokens=num_completion,
                     total_tokens=num_prompt + num_completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=num_cached))
