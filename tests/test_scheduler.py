"""The scheduler alone (pure Python, no model): batch work runs behind interactive work, and
a prompt prefix is copied from another slot only when that is worth it."""

from alize.engine.params import BACKGROUND, INTERACTIVE, GenerationRequest, SamplingParams
from alize.engine.scheduler import COPY_CELLS_PER_TOKEN, MIN_COPY, Scheduler
from alize.engine.sequence import Sequence


def sequence(name: str, priority: int = INTERACTIVE, prompt_len: int = 40, prompt: list[int] | None = None,
             scope: str | None = None) -> Sequence:
    tokens = prompt if prompt is not None else list(range(100, 100 + prompt_len))
    request = GenerationRequest(name, tokens, SamplingParams(max_tokens=8), cache_scope=scope, priority=priority)
    return Sequence(request, sink=lambda event: None, assembler=None)  # type: ignore[arg-type]


def decode_once(scheduler: Scheduler) -> list[str]:
    """Runs one step as the engine would (prompt chunks done, one token out); returns who ran."""
    seqs, items = scheduler.schedule()
    for seq, item in zip(seqs, items, strict=True):
        seq.sampler = seq.sampler or object()  # started (the engine makes its sampler chain)
        seq.num_kv_tokens += len(item.tokens)
        if seq.is_prefilling:
            seq.num_prefilled += len(item.tokens)
            if not seq.is_prefilling:
                seq.output_tokens.append(7)
        else:
            seq.output_tokens.append(7)
    return [s.request_id for s in seqs]


def test_interactive_requests_are_admitted_first():
    scheduler = Scheduler(max_sequences=2, token_budget=512)
    for name, priority in (("batch-1", BACKGROUND), ("batch-2", BACKGROUND), ("chat", INTERACTIVE)):
        scheduler.add(sequence(name, priority))
    assert decode_once(scheduler) == ["chat"]  # the interactive one took a slot first, and prefills alone
    assert {s.request_id for s in scheduler.running} == {"chat", "batch-1"}
    assert [s.request_id for s in scheduler.waiting] == ["batch-2"]


def test_background_work_gets_one_step_in_share_while_interactive_work_runs():
    scheduler = Scheduler(max_sequences=4, token_budget=512, background_share=3)
    scheduler.add(sequence("batch", BACKGROUND))
    assert decode_once(scheduler) == ["batch"]  # prefill: alone, it runs every step
    assert decode_once(scheduler) == ["batch"]
    scheduler.add(sequence("chat", INTERACTIVE))
    assert decode_once(scheduler) == ["chat"]  # prefilling an interactive prompt: batch sits out
    ran = [decode_once(scheduler) for _ in range(6)]
    assert ran == [["chat"], ["chat"], ["batch", "chat"]] * 2  # one step in three
    scheduler.add(sequence("chat-2", INTERACTIVE))
    scheduler.add(sequence("batch-2", BACKGROUND))
    assert decode_once(scheduler) == ["chat", "chat-2"]  # never in a step that prefills chat-2
    assert decode_once(scheduler) == ["chat", "chat-2"]  # (which does not count among the three)
    assert decode_once(scheduler) == ["chat", "chat-2"]
    assert decode_once(scheduler) == ["batch", "chat", "chat-2", "batch-2"]  # its turn: decode and prompt
    for seq in [s for s in scheduler.running if s.request.priority == INTERACTIVE]:
        scheduler.deallocate(seq)
    assert decode_once(scheduler) == ["batch", "batch-2"]  # interactive work gone: every step again
    assert decode_once(scheduler) == ["batch", "batch-2"]


def test_one_priority_alone_is_scheduled_as_before():
    scheduler = Scheduler(max_sequences=4, token_budget=64)
    for name in ("a", "b", "c"):
        scheduler.add(sequence(name, INTERACTIVE, prompt_len=40))
    assert decode_once(scheduler) == ["a", "b"]  # 40 + 24 prompt tokens fill the budget
    assert decode_once(scheduler) == ["a", "b", "c"]


def test_a_prefix_is_copied_only_when_it_saves_more_than_the_copy_moves():
    """A copy moves every cell the source holds: worth it for a prefix of at least
    1/COPY_CELLS_PER_TOKEN of the source (and MIN_COPY tokens), in the same scope only."""
    source_len = 3000
    scheduler = Scheduler(max_sequences=6, token_budget=4096)
    scheduler.add(sequence("long", prompt=list(range(source_len)), scope="k"))
    decode_once(scheduler)
    cells = scheduler.running[0].num_kv_tokens
    too_short = cells // COPY_CELLS_PER_TOKEN - 1
    enough = cells // COPY_CELLS_PER_TOKEN + 1
    cases = {"short": (too_short, "k"), "enough": (enough, "k"), "tiny": (MIN_COPY - 1, "k"),
             "other-key": (enough, "other")}
    for name, (shared, scope) in cases.items():
        scheduler.add(sequence(name, prompt=list(range(shared)) + [-1] * 20, scope=scope))
    scheduler.schedule()
    started = {s.request_id: s for s in scheduler.running}
    assert started["enough"].copy_kv_from == started["long"].slot and started["enough"].num_cached == enough
    for name in ("short", "tiny", "other-key"):
        assert started[name].copy_kv_from is None and started[name].num_cached == 0, name


def test_a_free_slots_cache_lends_its_prefix_and_stays_whole():
    """A new conversation sharing a system prompt with a long cached one copies that prefix
    into another slot: the cached conversation's next turn still reuses all of it, and no
    sequence admitted in the same step takes or empties the slot before it is copied."""
    system, history = list(range(40)), list(range(1000, 1400))
    scheduler = Scheduler(max_sequences=2, token_budget=4096)
    scheduler.add(sequence("conversation", prompt=system + history, scope="k"))
    decode_once(scheduler)  # the whole prompt in one step, and a first token
    held = scheduler.running[0]
    scheduler.deallocate(held)  # its KV stays in its slot
    scheduler.add(sequence("new", prompt=system + [-1] * 10, scope="k"))
    other = sequence("other", prompt=[-2] * 30, scope="k")  # would take the only other slot
    scheduler.add(other)
    scheduler.schedule()
    new = scheduler.running[0]
    assert (new.request_id, new.copy_kv_from, new.num_cached) == ("new", held.slot, len(system))
    assert new.slot != held.slot and [s.request_id for s in scheduler.waiting] == ["other"]
    scheduler.deallocate(new)
    scheduler.deallocate(other)  # (gone: else, first in line, it would take the oldest cache)
    turn = sequence("next-turn", prompt=held.tokens_in_kv + [5, 6], scope="k")
    scheduler.add(turn)
    scheduler.schedule()  # the copy is made: the slot may be taken again, by the cache's own next turn
    assert (turn.slot, turn.num_cached, turn.copy_kv_from) == (held.slot, len(held.tokens_in_kv), None)


def test_a_shorter_prefix_is_copied_when_the_longest_is_not_worth_its_copy():
    system = list(range(40))
    scheduler = Scheduler(max_sequences=3, token_budget=8192)
    scheduler.add(sequence("huge", prompt=system + [1] + list(range(1000, 7000)), scope="k"))
    decode_once(scheduler)
    huge = scheduler.running[0]
    scheduler.deallocate(huge)  # a free slot holding 6,042 cells: 41 shared tokens do not pay for moving them
    scheduler.add(sequence("running", prompt=system + [2] * 30, scope="k"))
    decode_once(scheduler)
    lender = next(s for s in scheduler.running if s.request_id == "running")
    scheduler.add(sequence("new", prompt=system + [1] + [3] * 10, scope="k"))
    scheduler.schedule()
    new = next(s for s in scheduler.running if s.request_id == "new")
    assert (new.copy_kv_from, new.num_cached) == (lender.slot, len(system))


def test_drafts_share_what_one_token_per_decoding_sequence_leaves():
    from alize.engine.drafting import Drafter, StepCost

    scheduler = Scheduler(max_sequences=4, token_budget=24)
    seqs = [sequence(f"s{i}", prompt_len=4) for i in range(4)]
    for seq in seqs:
        seq.request.params = SamplingParams(max_tokens=64)
        seq.drafter = Drafter.following([7] * 40)  # every sequence writes 7s: the draft always holds
        scheduler.add(seq)
    decode_once(scheduler)  # the prompts
    seqs_run, items = scheduler.schedule()
    assert len(items) == 4  # every sequence decodes, drafts or not
    assert [len(i.tokens) for i in items] == [1 + 20, 1, 1, 1]  # 24 tokens: 4 pending, 20 drafted
    assert [i.num_draft for i in items] == [20, 0, 0, 0]
    short = sequence("short", prompt_len=8)
    short.request.params = SamplingParams(max_tokens=3)
    short.drafter = Drafter.following([7] * 40)
    short.output_tokens = [7]
    assert Scheduler._draft(short, 100) == [7]  # never past max_tokens: 1 written, 1 pending, 1 drafted
    costly = Scheduler(max_sequences=4, token_budget=512, step_cost=StepCost.linear(0.6))
    for seq in seqs:
        seq.drafter = Drafter.following([7] * 40)
        costly.add(seq)
    decode_once(costly)
    _, items = costly.schedule()  # four sequences together on a costly engine: no draft pays
    assert [i.num_draft for i in items] == [0, 0, 0, 0]
