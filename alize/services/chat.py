"""POST /v1/chat/completions (and FIM, which answers in its shapes) as a use case: a
request in, Mistral's completion or chunks out, whichever backend serves the model."""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from pydantic_core import to_json

from alize.engine.chat_model import ChatModel
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
from alize.protocol.common import UsageInfo
from alize.services.backend import Generation, Piece, collect
from alize.services.generation import LocalGeneration, Prepared, stream_finish_reason
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import add_system, content_text, conversation, prompt_tokens
from alize.services.sampling import SamplingFields, build_params, pick_seed
from alize.services.structured import plan_response, text_is_valid
from alize.services.tools import parse_calls, plan_tools
from alize.services.upstream_chat import UpstreamChat

log = logging.getLogger(__name__)


Guard = Callable[[ChatCompletionRequest, Call], Awaitable[None]]


class ChatService:
    def __init__(self, hub: ModelHub):
        self.hub = hub
        self.upstream = UpstreamChat(hub)
        # the request's guardrails, checked (services/guardrails.py): set by the platform, since
        # they run the moderation service, which runs on this one
        self.guard: Guard | None = None

    async def generation(self, request: ChatCompletionRequest, call: Call, stream: bool) -> Generation:
        """The request checked (its guardrails too), admitted and ready to run on the backend
        that serves its model."""
        entry = self.hub.registry.get(request.model)  # an unknown model is a 404 before any screening
        if request.guardrails:
            if self.guard is None:
                raise InvalidRequest("guardrails are not offered here", param="guardrails")
            await self.guard(request, call)
        if entry.is_upstream:
            return await self.upstream.generation(request, call, stream)
        prep, prefix = self.prepare(request, call)
        return await LocalGeneration([prep], stream, prefix).admit()

    def prepare(self, request: ChatCompletionRequest, call: Call, capability: str = "completion_chat",
                grammar: str | None = None) -> tuple[Prepared, str]:
        """The request for the local engine: its prompt's tokens and sampling parameters
        (`capability`: what the model must be registered for, moderation asks another;
        `grammar`: what the answer must be, where no response_format can say it)."""
        entry, model = self.hub.chat_model(request.model, capability)
        response = plan_response(request.response_format)
        grammar, instruction = grammar or response.grammar, response.instruction
        plan = plan_tools(request, model.tool_style, response.schema)
        if plan is not None:  # calls, or an answer that follows the response_format
            grammar = plan.grammar
            instruction = (f"{plan.instruction} Otherwise: {instruction}" if plan.instruction and instruction
                           else plan.instruction or instruction)
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
        return Prepared(entry, model, tokens, params, n=request.n or 1, call=call, tools=plan, check=response.check,
                        prediction=_prediction(request, model)), prefix

    async def complete(self, request: ChatCompletionRequest, call: Call) -> ChatCompletionResponse:
        return await self.respond(await self.generation(request, call, stream=False))

    async def respond(self, gen: Generation) -> ChatCompletionResponse:
        ends, usage = await collect(gen)
        return ChatCompletionResponse(
            id=gen.id, created=gen.created, model=gen.model_id,
            choices=[_choice(gen, text, end) for end, text in ends], usage=usage)

    async def stream(self, gen: Generation, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
        async for chunk in self.frames(gen, include_usage, rendered=False):
            assert isinstance(chunk, ChatCompletionChunk)
            yield chunk

    async def frames(self, gen: Generation, include_usage: bool,
                     rendered: bool = True) -> AsyncIterator[ChatCompletionChunk | bytes]:
        """The stream's chunks; with `rendered`, those of plain content already as their
        JSON (ContentChunks), which is what most of a stream is."""
        def chunk(choices: list[ChunkChoice], usage_info: UsageInfo | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=gen.id, created=gen.created, model=gen.model_id,
                                       choices=choices, usage=usage_info)

        templates: dict[int, ContentChunks] = {}  # by choice index

        def content(index: int, text: str) -> ChatCompletionChunk | bytes:
            if not rendered:
                return chunk([ChunkChoice(index=index, delta=DeltaMessage(content=text))])
            if index not in templates:
                templates[index] = ContentChunks(chunk, index)
            return templates[index].render(text)

        pieces = await gen.start()
        for i in range(gen.n):
            yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            if gen.prefix:
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(content=gen.prefix))])
        held = {i: _HeldText(gen) for i in range(gen.n)}
        remaining = gen.n
        last: ChunkChoice | None = None  # the last end, which waits for the usage
        async for piece in pieces:
            text = held.get(piece.index) or held.setdefault(piece.index, _HeldText(gen))
            if piece.finish is None:
                out = text.feed(piece.text)
                if out:
                    yield content(piece.index, out)
                continue
            delta, reason = text.finish(piece.text, piece.finish, piece.calls)
            end = ChunkChoice(index=piece.index, delta=delta, finish_reason=stream_finish_reason(reason))
            remaining -= 1
            if remaining > 0:
                yield chunk([end])
                continue
            if last is not None:
                yield chunk([last])
            last = end
        # Usage goes on exactly one chunk (clients add up what they find): Mistral's last
        # finishing chunk, or for OpenAI clients that asked for include_usage an extra chunk
        # with no choices after it.
        final = gen.usage()
        await gen.call.succeed()  # recorded before the client sees the last chunk
        yield chunk([last] if last is not None else [], None if include_usage else final)
        if include_usage:
            yield chunk([], final)


class ContentChunks:
    """The JSON of one choice's content chunks, from a template: the chunk rendered once by
    its model with a marker for the text, which each token then replaces with its own JSON
    string. The same bytes as ChatCompletionChunk.model_dump_json(), without building and
    serializing three models a token (a tenth of the event loop's time at one stream)."""

    _MARKER = "\ue000alize-content\ue000"

    def __init__(self, chunk: Callable[[list[ChunkChoice]], ChatCompletionChunk], index: int):
        whole = chunk([ChunkChoice(index=index, delta=DeltaMessage(content=self._MARKER))]).model_dump_json().encode()
        self._head, self._tail = whole.split(to_json(self._MARKER))

    def render(self, text: str) -> bytes:
        return self._head + to_json(text) + self._tail


def _prediction(request: ChatCompletionRequest, model: ChatModel) -> list[int] | None:
    """The predicted output's tokens, refused when longer than any answer could be."""
    if request.prediction is None:
        return None
    text = content_text(request.prediction.content, "prediction", param="prediction")
    tokens = model.tokenize_text(text) if text else []
    if len(tokens) > model.context_length:
        raise InvalidRequest(f"The prediction has {len(tokens)} tokens, more than the model's context "
                             f"({model.context_length})", param="prediction")
    return tokens or None


class _HeldText:
    """One streamed choice. With tools read from the text, an answer that starts like calls
    ("[", or "<" for <tool_call>) may be tool calls, which are sent whole in one delta when
    the answer ends; any other answer streams as text."""

    def __init__(self, gen: Generation):
        self.gen = gen
        self.mode = "undecided" if gen.tools is not None and gen.calls_in_text else "text"
        self.buffer = ""  # held back, while the answer may be calls
        # the whole answer, kept only when it is checked at the end (tools, a schema)
        self.parts: list[str] | None = [] if gen.tools is not None or gen.check is not None else None

    def feed(self, text: str) -> str:
        if self.parts is not None:
            self.parts.append(text)
        if self.mode == "text":
            return text
        self.buffer += text
        if not self.buffer.strip():
            return ""
        if self.mode == "undecided":
            assert self.gen.tools is not None
            self.mode = "calls" if self.gen.tools.starts_calls(self.buffer) else "text"
        if self.mode == "text":
            out, self.buffer = self.buffer, ""
            return out
        return ""

    def finish(self, text: str, finish_reason: str, calls: list[dict] | None) -> tuple[DeltaMessage, str]:
        rest = self.feed(text)
        content, calls, reason = settle(self.gen, "".join(self.parts or ()), finish_reason, calls)
        if calls is not None:
            return DeltaMessage(content="", tool_calls=calls), reason
        if self.mode == "calls":
            return DeltaMessage(content=""), reason  # cut calls: never raw call syntax as text
        return DeltaMessage(content=rest + self.buffer), reason


def settle(gen: Generation, text: str, finish_reason: str,
           calls: list[dict] | None = None) -> tuple[str, list[dict] | None, str]:
    """(content, tool calls, finish reason) of a whole answer. Calls come parsed by the
    engine (upstreams) or are read from the text here; calls cut short (max_tokens) give no
    content rather than the model's raw call syntax, and calls to functions not offered or
    with arguments off their schema end with "error". An answer that ended but does not
    follow its schema (what no grammar enforces: multipleOf, uniqueItems...) keeps its
    content and gets finish_reason "error"."""
    plan = gen.tools
    if not calls and plan is not None and gen.calls_in_text and plan.starts_calls(text):
        calls = parse_calls(text, plan)
        if calls is None:
            return "", None, finish_reason
    if calls:
        try:
            valid = plan is not None and plan.arguments_valid(calls)
        except (KeyError, ValueError):
            valid = False
        return "", calls, "tool_calls" if valid else "error"
    if gen.check is not None and finish_reason == "stop" and not text_is_valid(text, gen.check):
        return text, None, "error"
    return text, None, finish_reason


def _choice(gen: Generation, text: str, end: Piece) -> ChatChoice:
    assert end.finish is not None
    content, calls, reason = settle(gen, text, end.finish, end.calls)
    message = ChatMessageOut(content="", tool_calls=calls) if calls is not None else ChatMessageOut(
        content=gen.prefix + content)
    return ChatChoice(index=end.index, message=message, finish_reason=reason)
