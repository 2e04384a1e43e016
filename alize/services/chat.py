"""POST /v1/chat/completions as a use case: messages in, completion or chunks out."""

import logging
from collections.abc import AsyncIterator

from alize.errors import EngineFailure, InvalidRequest
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
    started,
    stream_finish_reason,
    wire_finish_reason,
)
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import add_system, conversation, prompt_tokens
from alize.services.sampling import SamplingFields, build_params, pick_seed
from alize.services.structured import plan_response, text_is_valid
from alize.services.tools import parse_calls, plan_tools

log = logging.getLogger(__name__)

class ChatService:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    def prepare(self, request: ChatCompletionRequest, call: Call) -> tuple[Prepared, str]:
        entry, model = self.hub.chat_model(request.model)
        response = plan_response(request.response_format)
        grammar, instruction = response.grammar, response.instruction
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
        params = build_params(fields, len(tokens), entry.backend, model.n_vocab, model.context_length)
        if grammar is not None and not model.check_grammar(grammar):
            # the schema passed every check: a grammar llama.cpp refuses is Alizé's bug, not the client's
            log.error("llama.cpp refused the grammar built for this request:\n%s", grammar)
            raise EngineFailure("the grammar built for this request's schema was refused by llama.cpp")
        return Prepared(entry, model, tokens, params, n=request.n or 1, call=call,
                        tools=plan, check=response.check), prefix

    async def complete(self, request: ChatCompletionRequest, call: Call) -> ChatCompletionResponse:
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
            choices=[_choice(c.index, prefix, c.text, wire_finish_reason(c.finish_reason), prep)
                     for c in result.choices],
            usage=usage(result.num_prompt_tokens, result.num_completion_tokens, result.num_cached_tokens),
        )

    async def stream(self, prep: Prepared, prefix: str, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
        def chunk(choices: list[ChunkChoice], usage_info: UsageInfo | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=prep.id, created=prep.created, model=prep.model_id,
                                       choices=choices, usage=usage_info)

        await admit([prep])
        events = await started(prep)
        for i in range(prep.n):
            yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            if prefix:
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(content=prefix))])
        completion_tokens = [0] * prep.n
        remaining = prep.n
        num_cached = 0
        held = [_HeldText(prep) for _ in range(prep.n)]
        async for index, event in events:
            if index == 0:
                num_cached = event.num_cached_tokens
            completion_tokens[index] = event.num_completion_tokens
            if event.finish_reason is None:
                text = held[index].feed(event.text)
                if text:
                    yield chunk([ChunkChoice(index=index, delta=DeltaMessage(content=text))])
                continue
            remaining -= 1
            # Usage goes on exactly one chunk (clients add up what they find): Mistral's
            # last finishing chunk, or for OpenAI clients that asked for include_usage an
            # extra chunk with no choices after it.
            final_usage = usage(len(prep.prompt_tokens), sum(completion_tokens), num_cached) if not remaining else None
            if final_usage is not None:
                await prep.call.succeed()  # recorded before the client sees the last chunk
            delta, reason = held[index].finish(event.text, stream_finish_reason(event.finish_reason))
            yield chunk([ChunkChoice(index=index, delta=delta, finish_reason=reason)],
                        None if include_usage else final_usage)
            if final_usage is not None and include_usage:
                yield chunk([], final_usage)


class _HeldText:
    """One streamed choice. With tools, an answer that starts like calls ("[", or "<" for
    <tool_call>) may be tool calls, which are sent whole in one delta when the answer ends;
    any other answer streams as text."""

    def __init__(self, prep: Prepared):
        self.prep = prep
        self.mode = "text" if prep.tools is None else "undecided"
        self.buffer = ""  # held back, while the answer may be calls
        # the whole answer, kept only when it is checked at the end (tools, a schema)
        self.parts: list[str] | None = [] if prep.tools is not None or prep.check is not None else None

    def feed(self, text: str) -> str:
        if self.parts is not None:
            self.parts.append(text)
        if self.mode == "text":
            return text
        self.buffer += text
        if not self.buffer.strip():
            return ""
        if self.mode == "undecided":
            assert self.prep.tools is not None
            self.mode = "calls" if self.prep.tools.starts_calls(self.buffer) else "text"
        if self.mode == "text":
            out, self.buffer = self.buffer, ""
            return out
        return ""

    def finish(self, text: str, finish_reason: str) -> tuple[DeltaMessage, str]:
        rest = self.feed(text)
        content, calls, reason = settle(self.prep, "".join(self.parts or ()), finish_reason)
        if calls is not None:
            return DeltaMessage(content="", tool_calls=calls), reason
        if self.mode == "calls":
            return DeltaMessage(content=""), reason  # cut calls: never raw call syntax as text
        return DeltaMessage(content=rest + self.buffer), reason


def settle(prep: Prepared, text: str, finish_reason: str) -> tuple[str, list[dict] | None, str]:
    """(content, tool calls, finish reason) of a whole answer. Calls cut short (max_tokens)
    give no content rather than the model's raw call syntax; an answer that ended but does
    not follow its schema (what no grammar enforces: multipleOf, uniqueItems...) keeps its
    content and gets finish_reason "error"."""
    plan = prep.tools
    if plan is not None and plan.starts_calls(text):
        calls = parse_calls(text, plan)
        if calls is None:
            return "", None, finish_reason
        return "", calls, "tool_calls" if plan.arguments_valid(calls) else "error"
    if prep.check is not None and finish_reason == "stop" and not text_is_valid(text, prep.check):
        return text, None, "error"
    return text, None, finish_reason


def _choice(index: int, prefix: str, text: str, finish_reason: str, prep: Prepared) -> ChatChoice:
    content, calls, reason = settle(prep, text, finish_reason)
    message = ChatMessageOut(content="", tool_calls=calls) if calls is not None else ChatMessageOut(
        content=prefix + content)
    return ChatChoice(index=index, message=message, finish_reason=reason)


def usage(num_prompt: int, num_completion: int, num_cached: int = 0) -> UsageInfo:
    """Cached prompt tokens still count as prompt tokens; prompt_tokens_details says how many."""
    return UsageInfo(prompt_tokens=num_prompt, completion_tokens=num_completion,
                     total_tokens=num_prompt + num_completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=num_cached))
