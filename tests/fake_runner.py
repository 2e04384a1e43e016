"""A scripted fake of the engine's runner (the layer below EngineCore): no model, no
llama.cpp, millisecond tests. A word vocabulary; each sequence answers what `reply`
says for its prompt, one token a step (more with a draft it agrees with), then an
end-of-generation token.

It keeps each slot's KV as the list of tokens fed to it, and follows copies and trims as
llama.cpp would, so the scheduler's prefix cache and n > 1 choices behave for real."""

from collections.abc import Callable
from dataclasses import dataclass

from alize.engine.drafting import FREE, StepCost
from alize.engine.params import BatchItem, SamplingParams
from alize.errors import EngineFailure

EOG = 0
BOS = 1
WORDS = ["<eos>", "<s>", *(f" w{i}" for i in range(2, 64)), " Hello", " world", "!", " Bonjour", " é", "🎉"]


@dataclass
class FakeSampler:
    params: SamplingParams
    ban_eog: bool


def default_reply(prompt: list[int]) -> list[int]:
    """Hello world! then the end."""
    return [WORDS.index(" Hello"), WORDS.index(" world"), WORDS.index("!")]


class FakeRunner:
    def __init__(self, reply: Callable[[list[int]], list[int]] = default_reply, slots: int = 8,
                 kv_pool_cells: int | None = None):
        self.reply = reply
        self.kv_pool_cells = kv_pool_cells  # like llama.cpp's unified KV: a decode past it fails
        self.most_cells = 0  # the most cells the slots ever held together
        self.kv: dict[int, list[int]] = {slot: [] for slot in range(slots)}
        self.prompts: dict[int, int] = {}  # slot -> prompt length of the sequence it runs
        self.steps = 0
        self.grammars: list[str] = []
        self.closed = False

    # -- what ChatModel and the services read --------------------------------
    n_vocab = len(WORDS)
    adds_bos = True

    def metadata(self, key: str) -> str | None:
        return None

    def special_token(self, name: str) -> int:
        return {"bos": BOS, "eos": EOG}.get(name, -1)

    def tokenize(self, text: str, add_special: bool, parse_special: bool = True) -> list[int]:
        out = [BOS] if add_special else []
        for word in text.split():
            token = f" {word}"
            out.append(WORDS.index(token) if token in WORDS else 2 + hash(word) % 60)
        return out

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        return WORDS[token].encode()

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOG

    def check_grammar(self, grammar: str) -> bool:
        self.grammars.append(grammar)
        return True

    # -- what EngineCore drives ------------------------------------------------
    def create_sampler(self, params: SamplingParams, ban_eog: bool = False) -> FakeSampler:
        return FakeSampler(params, ban_eog)

    def free_sampler(self, sampler: FakeSampler) -> None:
        pass

    def step_cost(self) -> StepCost:
        return FREE  # a draft costs nothing here: every useful one is made

    def copy_sequence(self, src: int, dst: int) -> None:
        self.kv[dst] = list(self.kv[src])

    def trim_sequence(self, seq_id: int, keep: int) -> None:
        del self.kv[seq_id][keep:]
        if keep < self.prompts.get(seq_id, 0):
            self.prompts.pop(seq_id)  # a new sequence starts in this slot

    def run(self, items: list[BatchItem], samplers: list[FakeSampler]) -> list[list[int]]:
        self.steps += 1
        sampled = []
        for item, sampler in zip(items, samplers, strict=True):  # one sampler per sequence in the batch
            kv = self.kv[item.seq_id]
            assert len(kv) == item.start_pos, "tokens must be fed at the end of the slot's KV"
            kv.extend(item.tokens)
            self.most_cells = max(self.most_cells, sum(map(len, self.kv.values())))
            if self.kv_pool_cells is not None and self.most_cells > self.kv_pool_cells:
                raise EngineFailure(f"llama_decode failed with code 1 (no KV cells: {self.most_cells})")
            if not item.wants_logits:
                continue
            prompt_len = self.prompts.setdefault(item.seq_id, len(kv) - item.num_draft)
            script = self.reply(kv[:prompt_len])
            draft = item.tokens[len(item.tokens) - item.num_draft:]
            tokens: list[int] = []
            while not tokens or (len(tokens) <= len(draft) and tokens[-1] == draft[len(tokens) - 1]):
                index = len(kv) - item.num_draft + len(tokens) - prompt_len  # the token after this row's
                token = script[index] if index < len(script) else EOG
                if token == EOG and sampler.ban_eog:
                    token = WORDS.index(" w2")
                tokens.append(token)
            sampled.append(tokens)
        return sampled

    def close(self) -> None:
        self.closed = True
