"""EngineCore, AsyncEngine and the chat service over the scripted FakeRunner: the engine's
loop, streaming and the wire chunks in milliseconds, with no model."""

import asyncio
import time

import pytest

from alize.engine.client import AsyncEngine
from alize.engine.core import EngineCore
from alize.engine.drafting import StepCost
from alize.engine.params import FinishReason, GenerationRequest, SamplingParams
from alize.engine.scheduler import Scheduler
from tests.fake_runner import WORDS, FakeRunner


def engine(runner: FakeRunner, slots: int = 4, capacity: int = 8) -> tuple[EngineCore, AsyncEngine]:
    core = EngineCore(runner, Scheduler(slots, 64, queue_timeout_s=5), "fake")
    core.start()
    return core, AsyncEngine(core, capacity)


def request(rid: str, max_tokens: int = 16, stop: tuple[str, ...] = (), prompt: list[int] | None = None,
            min_tokens: int = 0) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, stop=stop, min_tokens=min_tokens)
    return GenerationRequest(rid, prompt or [1, 5, 6, 7], params, cache_scope="k")


async def collect(client: AsyncEngine, *requests: GenerationRequest):
    texts, finals = [""] * len(requests), [None] * len(requests)
    async for index, event in client.generate_many(list(requests)):
        texts[index] += event.text
        if event.finish_reason is not None:
            finals[index] = event
    return texts, finals


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_a_reply_streams_then_stops_at_end_of_generation():
    core, client = engine(FakeRunner())
    try:
        texts, finals = run(collect(client, request("a")))
    finally:
        core.stop()
    assert texts == [" Hello world!"]
    assert finals[0].finish_reason is FinishReason.STOP and finals[0].num_completion_tokens == 3


@pytest.mark.parametrize(("kwargs", "text", "reason", "tokens"), [
    ({"max_tokens": 2}, " Hello world", FinishReason.LENGTH, 2),
    ({"stop": (" world",)}, " Hello", FinishReason.STOP, 2),
    ({"min_tokens": 5, "max_tokens": 5}, " Hello world! w2 w2", FinishReason.LENGTH, 5),
])
def test_limits_stop_strings_and_min_tokens(kwargs, text, reason, tokens):
    core, client = engine(FakeRunner())
    try:
        texts, finals = run(collect(client, request("a", **kwargs)))
    finally:
        core.stop()
    assert texts == [text] and finals[0].finish_reason is reason and finals[0].num_completion_tokens == tokens


def test_many_requests_share_steps_and_choices_share_the_prompt():
    runner = FakeRunner(lambda prompt: [WORDS.index(" Bonjour")] * 6)
    core, client = engine(runner, slots=4)
    try:
        texts, finals = run(collect(client, *(request(f"r{i}", prompt=[1, *range(2, 30), 40 + i]) for i in range(3))))
    finally:
        core.stop()
    assert texts == [" Bonjour" * 6] * 3
    assert runner.steps < 3 * 7  # decoded together, not one after another
    assert all(f.finish_reason is FinishReason.STOP for f in finals)


def test_shutdown_ends_running_and_waiting_sequences():
    runner = FakeRunner(lambda prompt: [WORDS.index(" w3")] * 10_000)
    core, client = engine(runner, slots=1)

    async def main():
        stream = client.generate_many([request("a", max_tokens=10_000), request("b", max_tokens=10_000)])
        first = await anext(stream)
        client.close()  # the server is stopping
        events = [first] + [item async for item in stream]
        return [e for _, e in events if e.finish_reason is not None]

    try:
        finals = run(main())
    finally:
        core.stop()
    assert sorted(f.finish_reason for f in finals) == [FinishReason.SHUTDOWN] * 2
    assert client.num_inflight == 0


class SlowToPriceRunner(FakeRunner):
    def step_cost(self) -> StepCost:
        time.sleep(0.3)  # the real runner times steps here: seconds on a loaded machine
        return StepCost.linear(0.5)


def test_the_engine_is_ready_only_once_it_has_priced_drafts():
    # The first request must not queue behind the timing (a short queue timeout answered it 503).
    core = EngineCore(SlowToPriceRunner(lambda prompt: [0]), Scheduler(1, 64), "fake")
    core.start()
    try:
        assert core.scheduler.step_cost == StepCost.linear(0.5)
    finally:
        core.stop()


# -- the chat service over a ChatModel on the fake runner: wire chunks in milliseconds ------

class _Hub:
    def __init__(self, model):
        from alize.registry import Registry

        self.registry = Registry.load()
        self.model, self.entry = model, self.registry.get("mistral-tiny")

    def chat_model(self, model_id, capability="completion_chat"):
        return self.entry, self.model


@pytest.fixture
def chat():
    from alize.engine.chat_model import ChatModel
    from alize.engine.params import EngineConfig
    from alize.services.chat import ChatService

    model = ChatModel("fake", FakeRunner(), EngineConfig(context_per_sequence=512, max_sequences=2, threads=1))
    yield ChatService(_Hub(model))
    model.close()


def _request(**body):
    from alize.protocol.chat import ChatCompletionRequest

    return ChatCompletionRequest.model_validate({"model": "mistral-tiny", "messages": [
        {"role": "user", "content": "Hello there"}], **body})


def _call():
    from alize.services.metering import Call

    return Call(None, "chat.completions")


def test_a_streamed_answer_becomes_mistral_chunks(chat):
    async def main():
        gen = await chat.generation(_request(stream=True, stream_options={"include_usage": True}), _call(), True)
        return [c async for c in chat.stream(gen, include_usage=True)]

    chunks = run(main())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == " Hello world!"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].usage is None
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3  # usage on one chunk only
    assert len({c.id for c in chunks}) == 1


def test_a_non_streamed_answer_and_its_usage(chat):
    async def main():
        return await chat.complete(_request(max_tokens=2, n=2), _call())

    response = run(main())
    assert [c.message.content for c in response.choices] == [" Hello world"] * 2
    assert {c.finish_reason for c in response.choices} == {"length"}
    assert response.usage.completion_tokens == 4


@pytest.fixture
def completions():
    from alize.engine.chat_model import ChatModel
    from alize.engine.params import EngineConfig
    from alize.services.completions import CompletionService

    config = EngineConfig(context_per_sequence=512, max_sequences=2, threads=1, queue_size=3)  # capacity 5
    model = ChatModel("fake", FakeRunner(), config)
    yield CompletionService(_Hub(model), upstream=None)
    model.close()


def _completion(**body):
    from alize.protocol.completions import CompletionRequest

    return CompletionRequest.model_validate({"model": "mistral-tiny", **body})


def test_completions_of_several_prompts_come_through_the_one_generation_path(completions):
    # 4 prompts x 2 choices = 8 choices, more than the engine's 5 at once: in groups that fit
    request = _completion(prompt=["Hello a", "Hello b", "Hello c", "Hello d"], n=2, echo=True, max_tokens=2)

    async def whole():
        return await completions.complete(request, _call())

    async def streamed():
        gen = await completions.generation(request, _call(), stream=True)
        return [c async for c in completions.stream(request, gen, include_usage=True)]

    response = run(whole())
    assert [c.index for c in response.choices] == list(range(8))
    assert [c.text for c in response.choices] == [f"Hello {p} Hello world" for p in "abcd" for _ in range(2)]
    assert response.usage.completion_tokens == 16
    chunks = run(streamed())
    texts = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {c.index: c.text for c in response.choices}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
