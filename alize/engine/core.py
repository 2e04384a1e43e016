"""EngineCore: one thread per loaded model owns the llama.cpp context and runs
schedule() -> runner.run() -> postprocess() until stopped."""

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alize.engine.drafting import Drafter, StepCost
from alize.engine.params import BatchItem, FinishReason, GenerationRequest, TokenEvent
from alize.engine.runner_protocol import Runner
from alize.engine.scheduler import Scheduler
from alize.engine.sequence import Sequence
from alize.engine.text import TextAssembler
from alize.errors import AlizeError

log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    """Counters the engine thread updates and anyone may read (for /metrics)."""

    num_running: int = 0
    num_waiting: int = 0
    num_prompt_tokens: int = 0  # prefilled
    num_cached_tokens: int = 0  # reused from the prefix cache
    num_generated_tokens: int = 0
    num_finished: dict[str, int] = field(default_factory=dict)


class EngineCore:
    def __init__(self, runner: Runner, scheduler: Scheduler, name: str = "engine", prompt_lookup: bool = False):
        self.runner = runner
        self.prompt_lookup = prompt_lookup  # requests without a prediction draft from their prompt
        self.scheduler = scheduler
        self._inbox: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"alize-{name}", daemon=True)
        self._is_stopping = False
        self._ready = threading.Event()  # set once the thread has measured what a draft costs
        self.stats = EngineStats()

    @property
    def scheduler_size(self) -> int:
        """How many sequences run at once."""
        return self.scheduler.max_sequences

    # -- called from any thread ---------------------------------------------
    def start(self) -> None:
        """Starts the engine thread and returns once it can take requests: its first act,
        timing steps to price drafts, must not hold the first requests in the queue (under
        load it took seconds: a short queue timeout answered them 503) or time itself while
        the server loads the next model beside it."""
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        self._inbox.put(("stop", None))
        self._thread.join(timeout=30)

    def submit(self, request: GenerationRequest, sink: Callable[[TokenEvent], None]) -> None:
        drafter = (Drafter.following(request.prediction) if request.prediction
                   else Drafter.looking_up(request.prompt_tokens) if self.prompt_lookup else None)
        self._inbox.put(("add", Sequence(request, sink, TextAssembler(request.params.stop), drafter=drafter)))

    def abort(self, request_id: str) -> None:
        self._inbox.put(("abort", request_id))

    def abort_all(self) -> None:
        """Ends every sequence, running or waiting, with FinishReason.SHUTDOWN."""
        self._inbox.put(("abort_all", None))

    # -- the engine thread --------------------------------------------------
    def _loop(self) -> None:
        # Measured here, in the thread that decodes: a decode run from another thread leaves
        # llama.cpp's OpenMP workers of that thread spinning beside this one's (one stream
        # went from 120 to 80 tok/s on two cores when the load thread measured it).
        try:
            self.scheduler.step_cost = self.runner.step_cost()
        except AlizeError as exc:
            log.error("could not measure what a draft costs (%s): no drafts", exc.message)
            self.scheduler.step_cost = StepCost.linear(float("inf"))
        finally:
            self._ready.set()
        while not self._is_stopping:
            self._drain_inbox(block=not self.scheduler.has_work)
            if self.scheduler.has_work:
                try:
                    self.step()
                    self._update_gauges()
                except Exception as exc:  # never let one bad step kill the engine thread
                    log.exception("engine step failed")
                    for seq in list(self.scheduler.running):
                        self._finish(seq, FinishReason.ERROR, error=f"engine step failed: {exc}")
        for seq in (*self.scheduler.running, *self.scheduler.waiting):
            self._finish(seq, FinishReason.ABORT)

    def _drain_inbox(self, block: bool) -> None:
        if not block and self._inbox.empty():  # most steps: no exception raised and caught
            return
        try:
            command, arg = self._inbox.get(block=block)
            while True:
                self._handle(command, arg)
                command, arg = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _handle(self, command: str, arg: object) -> None:
        if command == "add":
            assert isinstance(arg, Sequence)
            pool = self.scheduler.kv_pool
            if arg.num_prompt_tokens == 0:
                self._finish(arg, FinishReason.ERROR, error="the prompt has no tokens")
            elif pool is not None and self.scheduler.need(arg) > pool:  # the services refuse these first
                self._finish(arg, FinishReason.ERROR, error=f"prompt + max_tokens ({self.scheduler.need(arg)} "
                             f"tokens) exceed the KV cache ({pool} tokens)")
            else:
                self.scheduler.add(arg)
        elif command == "abort":
            seq = self.scheduler.find(str(arg))
            if seq is not None:
                self._finish(seq, FinishReason.ABORT)
        elif command == "abort_all":
            for seq in (*self.scheduler.running, *self.scheduler.waiting):
                self._finish(seq, FinishReason.SHUTDOWN, error="the server is shutting down")
        elif command == "stop":
            self._is_stopping = True

    def step(self) -> None:
        for seq in self.scheduler.expired(time.monotonic()):
            self._finish(seq, FinishReason.TIMEOUT, error="waited too long for a free sequence")
        seqs, items = self.scheduler.schedule()
        for slot in self.scheduler.cleared:  # cached prefixes that gave way to new sequences
            self.runner.trim_sequence(slot, 0)
        self.scheduler.cleared.clear()
        starting = [seq for seq in seqs if seq.sampler is None]
        # First step of a sequence: drop whatever KV its slot holds past the reused prefix.
        # Those that start from a copy go last: a source may be a slot another starting
        # sequence trims first (to the prefix the copy needs).
        for seq in sorted(starting, key=lambda s: s.copy_kv_from is not None):
            if seq.copy_kv_from is not None:
                self.runner.copy_sequence(seq.copy_kv_from, seq.slot)
            self.runner.trim_sequence(seq.slot, seq.num_cached)
            self.stats.num_cached_tokens += seq.num_cached
            params = seq.request.params
            seq.sampler = self.runner.create_sampler(params, ban_eog=params.min_tokens > 0)
            if params.max_tokens == 0:
                self._finish(seq, FinishReason.LENGTH)
        live = [(s, i) for s, i in zip(seqs, items, strict=True) if s.sampler is not None]
        if not live:
            return
        try:
            tokens = self.runner.run([i for _, i in live], [s.sampler for s, _ in live])
        except AlizeError as exc:
            log.error("decode failed: %s", exc.message)
            for seq, _ in live:
                self._finish(seq, FinishReason.ERROR, error=exc.message)
            return
        self._postprocess(live, tokens)

    def _postprocess(self, live: list[tuple[Sequence, BatchItem]], sampled: list[list[int]]) -> None:
        tokens = iter(sampled)
        for seq, item in live:
            if not item.wants_logits:
                self._computed(seq, item, len(item.tokens))
                continue
            written = next(tokens)
            kept = len(written) - 1  # drafted tokens kept: their KV stays, the rest goes
            self._computed(seq, item, len(item.tokens) - item.num_draft + kept)
            if kept < item.num_draft:
                self.runner.trim_sequence(seq.slot, item.start_pos + len(item.tokens) - item.num_draft + kept)
            if seq.drafter is not None:
                seq.drafter.update(item.num_draft, kept, written)
            text = ""
            for token in written:
                text, reason = self._accept(seq, token, text)
                if reason is not None:
                    self._finish(seq, reason, text=text)
                    break
            else:
                if text:
                    seq.sink(self._event(seq, text))

    def _computed(self, seq: Sequence, item: BatchItem, count: int) -> None:
        """`count` of the item's tokens now have their KV in the sequence's slot."""
        seq.num_kv_tokens += count
        if seq.is_prefilling:
            seq.num_prefilled += count
            self.stats.num_prompt_tokens += count

    def _accept(self, seq: Sequence, token: int, text: str) -> tuple[str, FinishReason | None]:
        """Appends a sampled token: the text so far, and why the sequence ends if it does."""
        if self.runner.is_end_of_generation(token):
            return text, FinishReason.STOP
        seq.output_tokens.append(token)
        self.stats.num_generated_tokens += 1
        if seq.num_completion_tokens == seq.request.params.min_tokens:
            self.runner.free_sampler(seq.sampler)  # min_tokens reached: allow EOS again
            seq.sampler = self.runner.create_sampler(seq.request.params)
        text += seq.assembler.feed(self.runner.token_bytes(token))
        if seq.assembler.is_stopped:
            return text, FinishReason.STOP
        if seq.num_completion_tokens >= seq.request.params.max_tokens:
            params = seq.request.params
            return text, FinishReason.MODEL_LENGTH if params.is_limit_from_context else FinishReason.LENGTH
        return text, None

    def _finish(self, seq: Sequence, reason: FinishReason, text: str = "", error: str | None = None) -> None:
        text += seq.assembler.finish()
        self.scheduler.deallocate(seq, is_kv_valid=reason is not FinishReason.ERROR)
        self.stats.num_finished[reason.value] = self.stats.num_finished.get(reason.value, 0) + 1
        self._update_gauges()
        if seq.sampler is not None:
            self.runner.free_sampler(seq.sampler)
            seq.sampler = None
        seq.sink(self._event(seq, text, reason, error))

    def _update_gauges(self) -> None:
        self.stats.num_running = len(self.scheduler.running)
        self.stats.num_waiting = len(self.scheduler.waiting)

    @staticmethod
    def _event(seq: Sequence, text: str, reason: FinishReason | None = None, error: str | None = None) -> TokenEvent:
        queue_s = None
        if not seq.reported_start and seq.started_at is not None:
            seq.reported_start, queue_s = True, seq.started_at - seq.arrived_at
        drafter = seq.drafter
        return TokenEvent(text, seq.num_prompt_tokens, seq.num_completion_tokens, reason, error,
                          num_cached_tokens=seq.num_cached, queue_s=queue_s,
                          num_draft_accepted=drafter.accepted if drafter else 0,
                          num_draft_rejected=drafter.rejected if drafter else 0)

    def kv_tokens(self) -> int:
        """Tokens whose KV the running sequences hold (read from any thread)."""
        return sum(s.num_kv_tokens for s in list(self.scheduler.running))
