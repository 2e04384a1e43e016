"""The prefix cache: reused within one API key, never across keys."""

import httpx

from alize.engine.kv_cache import SlotCache
from tests.server import alize

SYSTEM = "You are a museum guide. " + " ".join(f"Room {i} holds paintings from century {i}." for i in range(60))


def ask(server, key: str, question: str) -> dict:
    r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                   json={"model": "mistral-small-latest", "temperature": 0, "max_tokens": 12,
                         "messages": [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": question}]})
    assert r.status_code == 200, r.text
    return r.json()


def test_same_key_reuses_the_prefix_and_answers_the_same(server):
    cold = ask(server, server.key, "What is in room 3?")
    assert cold["usage"]["prompt_tokens"] > 500
    warm = ask(server, server.key, "What is in room 3?")
    assert warm["usage"]["prompt_tokens"] == cold["usage"]["prompt_tokens"]  # cached tokens still count
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] >= cold["usage"]["prompt_tokens"] - 1 - 20
    # The reused KV is the right one: the greedy answer starts the same. (Bit-identical
    # logits are not guaranteed: one token computed alone vs inside a 512-token prefill
    # chunk sums in another order, as llama.cpp's server documents for cache_prompt.)
    cold_words = cold["choices"][0]["message"]["content"].split()[:4]
    assert warm["choices"][0]["message"]["content"].split()[:4] == cold_words
    other_question = ask(server, server.key, "What is in room 7?")
    assert other_question["usage"]["prompt_tokens_details"]["cached_tokens"] > 500


def test_another_key_never_gets_the_cached_prefix(server):
    ask(server, server.key, "Which room is the oldest?")
    other_key = alize("keys", "create", "--name", "tenant-b", "--data-dir", str(server.data_dir)).stdout.strip()
    answer = ask(server, other_key, "Which room is the oldest?")
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_slot_cache_picks_the_longest_prefix_in_scope():
    cache = SlotCache(3)
    a, _ = cache.allocate("k1", [1, 2, 3, 4])
    b, _ = cache.allocate("k1", [1, 2, 7])
    cache.release(a, "k1", [1, 2, 3, 4, 9])
    cache.release(b, "k1", [1, 2, 7, 8])
    assert cache.allocate("k2", [1, 2, 3, 4, 5])[1] == 0  # another scope: nothing reused
    slot, cached = cache.allocate("k1", [1, 2, 3, 4, 5])
    assert (slot, cached) == (a, 4)
    assert cache.allocate("k1", [1, 2, 7, 8])[1] == 3  # a full match still leaves one token to compute
    cache.release(slot, "k1", None)  # KV not trusted (failed step): nothing kept
    assert cache.allocate("k1", [1, 2, 3, 4, 5])[1] == 0


def test_slot_cache_keeps_a_long_conversation_from_a_short_shared_prefix():
    cache = SlotCache(3)
    system, conversation = [1, 2, 3], [1, 2, 3] + list(range(10, 60))
    long_slot, _ = cache.allocate("k", conversation)
    cache.release(long_slot, "k", conversation)
    # a new conversation sharing a prefix shorter than half the cache takes an empty slot
    # (the scheduler copies the prefix there: longest_free_prefix)
    new_slot, cached = cache.allocate("k", system + [99, 98])
    assert new_slot != long_slot and cached == 0
    assert cache.longest_free_prefix("k", system + [99, 98]) == (long_slot, 3, len(conversation))
    # ... and the long one's next turn still finds it whole
    assert cache.allocate("k", conversation + [7, 8]) == (long_slot, len(conversation))
    # with no empty slot, the oldest cache gives way, not the one with a longer short match
    cache = SlotCache(2)
    first, _ = cache.allocate("k", conversation)
    other = system + [99, 98] + list(range(100, 140))
    second, _ = cache.allocate("k", other)
    cache.release(first, "k", conversation)
    cache.release(second, "k", other)
    assert cache.allocate("k", system + [99, 98, 42]) == (first, 3)
    # a prefix of at least half the cache is worth its slot (an edited last turn)
    cache = SlotCache(3)
    slot, _ = cache.allocate("k", conversation)
    cache.release(slot, "k", conversation)
    assert cache.allocate("k", conversation[:27] + [5]) == (slot, 27)
    # a pinned slot (a copy source this step) is neither taken nor emptied
    cache.release(slot, "k", conversation)
    cache.pin(slot)
    assert cache.allocate("k", conversation + [1])[0] != slot and cache.evict_oldest(keep=-1) is None
    assert cache.allocate("k", conversation + [1])[0] != slot
    assert not cache.can_allocate()  # the last free slot is pinned
    cache.unpin_all()
    assert cache.allocate("k", conversation + [1]) == (slot, len(conversation))


def test_slot_cache_keeps_running_slots_consecutive():
    """llama.cpp decodes each run of consecutive running slots as its own micro-batch."""
    cache = SlotCache(6)
    slots = [cache.allocate(None, [1])[0] for _ in range(4)]
    assert sorted(slots) == [0, 1, 2, 3] or sorted(slots) == list(range(min(slots), min(slots) + 4))
    middle = sorted(slots)[1]
    cache.release(middle, "k", [1, 2])
    # a hole between two running slots is filled before a slot that only extends a run
    assert cache.allocate(None, [5])[0] == middle
    cache.release(middle, "k", [1, 2])
    # ... unless another slot holds a longer cached prefix for the caller
    assert cache.allocate("k", [1, 2, 3]) == (middle, 2)


def test_choices_of_one_request_share_the_prompt_kv(server):
    """n = 3: the prompt is computed once; the other choices start from a copy of its KV."""
    from tests.test_cancellation import engine_metrics

    def prefilled() -> float:
        return engine_metrics(server)['alize_engine_prompt_tokens_total{model="smollm2-135m-instruct"}']

    key = alize("keys", "create", "--name", "n-choices", "--data-dir", str(server.data_dir)).stdout.strip()
    question = "Which rooms hold paintings from century 12?"
    body = {"model": "mistral-small-latest", "temperature": 0, "max_tokens": 8,
            "messages": [{"role": "system", "content": SYSTEM + " Welcome."}, {"role": "user", "content": question}]}
    before = prefilled()
    r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                   json={**body, "n": 3})
    assert r.status_code == 200, r.text
    answer = r.json()
    num_prompt = answer["usage"]["prompt_tokens"]
    assert num_prompt > 500 and answer["usage"]["completion_tokens"] == 24
    assert prefilled() - before <= num_prompt + 3 * 2  # not 3 x the prompt
    texts = [c["message"]["content"] for c in answer["choices"]]
    other = alize("keys", "create", "--name", "n-reference", "--data-dir", str(server.data_dir)).stdout.strip()
    reference = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {other}"},
                           timeout=120, json=body).json()["choices"][0]["message"]["content"]
    # greedy: every choice continues the copied prompt as a prompt computed from scratch does
    for text in texts:
        assert text.split()[:3] == reference.split()[:3], (texts, reference)


def test_a_running_request_lends_its_prefix_to_a_new_one(server):
    """While one request of a key still runs, another with the same long system prompt
    starts from a copy of its KV (another slot), and answers exactly as it does from its
    own key's cache, where the same prefix was computed the same way. (Against a cold
    start only the first words can be compared: a prompt computed in one chunk sums its
    attention in another order, and a near-tie may go the other way.)"""
    key = alize("keys", "create", "--name", "lender", "--data-dir", str(server.data_dir)).stdout.strip()
    system = SYSTEM + " Lending test."
    first = {"model": "mistral-small-latest", "temperature": 0, "max_tokens": 60, "min_tokens": 60, "stream": True,
             "messages": [{"role": "system", "content": system}, {"role": "user", "content": "Describe room 1."}]}
    second = {"model": "mistral-small-latest", "temperature": 0, "max_tokens": 8,
              "messages": [{"role": "system", "content": system}, {"role": "user", "content": "What is in room 9?"}]}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, timeout=120, headers=headers) as client:
        with client.stream("POST", "/v1/chat/completions", json=first) as running:
            lines = running.iter_lines()
            next(line for line in lines if line.startswith("data: {"))  # its prompt is computed
            warm = client.post("/v1/chat/completions", json=second).json()
            for _ in lines:
                pass
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] > 500
    other = alize("keys", "create", "--name", "lender-ref", "--data-dir", str(server.data_dir)).stdout.strip()
    with httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {other}"}) as client:
        client.post("/v1/chat/completions", json={**first, "stream": False, "max_tokens": 1, "min_tokens": 0})
        reference = client.post("/v1/chat/completions", json=second).json()
    assert reference["usage"]["prompt_tokens_details"]["cached_tokens"] == \
        warm["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert warm["choices"][0]["message"]["content"] == reference["choices"][0]["message"]["content"]


def test_a_new_conversation_borrows_a_cached_system_prompt_without_evicting_it(server):
    """A finished conversation's cache holds a short system prompt and a long first turn. A
    new conversation with the same system prompt copies that prefix into another slot, and
    answers as a cold start does; the first conversation's next turn still reuses its whole
    first prompt (taking its slot, the new one would have thrown that away)."""
    key = alize("keys", "create", "--name", "borrower", "--data-dir", str(server.data_dir)).stdout.strip()
    system = "You are a museum guide. Answer in one short sentence, naming the room."
    long_turn = "Here is my visit so far. " + " ".join(f"I saw room {i} and its paintings." for i in range(40))
    headers = {"Authorization": f"Bearer {key}"}

    def chat(messages: list[dict], auth: dict = headers) -> dict:
        r = httpx.post(server.url + "/v1/chat/completions", headers=auth, timeout=120, json={
            "model": "mistral-small-latest", "temperature": 0, "max_tokens": 8,
            "messages": [{"role": "system", "content": system}, *messages]})
        assert r.status_code == 200, r.text
        return r.json()

    first_turn = [{"role": "user", "content": long_turn}]
    first = chat(first_turn)
    assert first["usage"]["prompt_tokens"] > 300
    question = [{"role": "user", "content": "Where are the maps?"}]
    borrowed = chat(question)
    shared = borrowed["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert 16 <= shared < borrowed["usage"]["prompt_tokens"]  # the system prompt, copied
    again = chat([*first_turn, {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                  {"role": "user", "content": "Which room was the last?"}])
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"] - 1
    other = alize("keys", "create", "--name", "borrower-ref", "--data-dir", str(server.data_dir)).stdout.strip()
    cold = chat(question, {"Authorization": f"Bearer {other}"})
    assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert borrowed["choices"][0]["message"]["content"].split()[:3] == cold["choices"][0]["message"]["content"].split()[:3]
