"""The only module that talks to llama.cpp: load a GGUF model, tokenize, decode batches, sample.

Built on llama.cpp's low-level C API (through llama-cpp-python's ctypes bindings):
one llama_batch is filled per step, llama_decode runs it (releasing the GIL), and
each sequence samples with its own sampler: greedy picks, unseeded full-distribution draws,
bias and penalties in numpy (draw.py, penalties.py); seeded draws, top-k/top-p and grammars
with llama.cpp's sampler chains, in C."""

import ctypes
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import llama_cpp as lc
import numpy as np

from alize.engine.drafting import MAX_DRAFT, StepCost
from alize.engine.draw import TemperatureDraw
from alize.engine.params import KV_TYPES, BatchItem, EngineConfig, SamplingParams
from alize.engine.penalties import Penalties
from alize.errors import ConfigError, EngineFailure

_backend_lock = threading.Lock()
log = logging.getLogger(__name__)

# a greedy pick under a grammar checks this many of the likeliest tokens before the rest
GRAMMAR_FIRST = 64
# the step sizes at which step_cost measures a step: the rest is read between them
STEP_COST_TOKENS = (1, 2, 9, MAX_DRAFT + 1)
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])  # llama_token_data
# llama_get_logits_ith returning the address as an int (the binding's own returns a ctypes
# pointer, which numpy then wraps in ~30 µs a row right after a decode)
_logits_address = lc.llama_cpp._lib["llama_get_logits_ith"]
_logits_address.argtypes = [ctypes.c_void_p, ctypes.c_int32]
_logits_address.restype = ctypes.c_void_p


@dataclass
class GrammarSampler:
    """Sampling under a grammar the way llama.cpp's own common sampler does it: sample as
    if free, check only that token against the grammar, and apply the grammar to the whole
    vocabulary only when it rejects the token (checking 49,152 candidates every token
    would cost more than the decode itself on a small model); a greedy pick checks the
    likeliest tokens first (_likeliest_first)."""

    pre: ctypes.c_void_p  # logit bias and penalties
    post: ctypes.c_void_p  # top-k, top-p, temperature and the draw (or greedy)
    grammar: ctypes.c_void_p
    greedy: bool = False  # a rejected token is replaced by the likeliest one the grammar accepts
@dataclass
class PenalizedChain:
    """A draw chain in C (greedy, or top-k/top-p/temperature), after logit bias and
    penalties applied in numpy (engine/penalties.py)."""

    chain: ctypes.c_void_p
    penalties: Penalties


_backend_ready = False


def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    pass  # llama.cpp logs loudly on stderr; Alizé keeps its own logs.


# Keep a reference: llama.cpp holds the pointer for the life of the process.
_LOG_CALLBACK = lc.llama_log_callback(_log_callback)


def init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            lc.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
            lc.llama_backend_init()
            _backend_ready = True


def read_metadata(model: ctypes.c_void_p, key: str) -> str | None:
    buf = ctypes.create_string_buffer(1 << 16)
    n = lc.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        lc.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", errors="replace")


def tokenize_text(vocab: ctypes.c_void_p, text: str, add_special: bool, parse_special: bool) -> list[int]:
    data = text.encode("utf-8")
    n_max = len(data) + 8
    arr = (lc.llama_token * n_max)()
    n = lc.llama_tokenize(vocab, data, len(data), arr, n_max, add_special, parse_special)
    if n < 0:
        arr = (lc.llama_token * -n)()
        n = lc.llama_tokenize(vocab, data, len(data), arr, -n, add_special, parse_special)
    return list(arr[:n])


class Vocabulary:
    """A model file's tokenizer and metadata alone (vocab_only: no weights in memory), to
    count tokens for a model another engine runs."""

    def __init__(self, model_path: Path):
        init_backend()
        mparams = lc.llama_model_default_params()
        mparams.vocab_only = True
        self._model = lc.llama_model_load_from_file(str(model_path).encode(), mparams)
        if not self._model:
            raise ConfigError(f"llama.cpp could not read the tokenizer of {model_path}")
        self._vocab = lc.llama_model_get_vocab(self._model)

    def metadata(self, key: str) -> str | None:
        return read_metadata(self._model, key)

    def tokenize(self, text: str, add_special: bool, parse_special: bool = True) -> list[int]:
        return tokenize_text(self._vocab, text, add_special, parse_special)

    def special_text(self, name: str) -> str:
        """The bos or eos token's text ("" when the model has none)."""
        token = int({"bos": lc.llama_vocab_bos, "eos": lc.llama_vocab_eos}[name](self._vocab))
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = lc.llama_token_to_piece(self._vocab, token, buf, 256, 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._model:
            lc.llama_model_free(self._model)
            self._model = None


class LlamaRunner:
    def __init__(self, model_path: Path, config: EngineConfig):
        init_backend()
        self.config = config
        mparams = lc.llama_model_default_params()
        self._model = lc.llama_model_load_from_file(str(model_path).encode(), mparams)
        if not self._model:
            raise ConfigError(f"llama.cpp could not load the model file {model_path}")
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self.n_ctx_train = lc.llama_model_n_ctx_train(self._model)
        cparams = lc.llama_context_default_params()
        cparams.n_seq_max = config.max_sequences
        every = config.context_per_sequence * config.max_sequences
        over_budget = 0 < config.kv_budget < every * self.kv_cell_bytes()
        pool_bytes = config.kv_bytes or (config.kv_budget if over_budget else 0)
        self.kv_pool_cells = self._pool_cells(config, pool_bytes) if pool_bytes else None
        self._log_kv_layout(model_path.name, every)
        cparams.n_ctx = self.kv_pool_cells or every
        cparams.n_batch = config.batch_tokens
        cparams.n_ubatch = config.batch_tokens
        cparams.n_threads = config.threads
        cparams.n_threads_batch = config.threads
        self._kv_unified = config.kv_unified or self.kv_pool_cells is not None
        cparams.kv_unified = self._kv_unified
        cparams.type_k = cparams.type_v = KV_TYPES[config.kv_type][0]
        self._ctx = lc.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise ConfigError(f"llama.cpp could not create a context for {model_path}")
        self._memory = lc.llama_get_memory(self._ctx)
        self._batch = lc.llama_batch_init(config.batch_tokens, 0, 1)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._state_buf = (ctypes.c_uint8 * 0)()  # grown on demand by copy_sequence
        self.eog_tokens = [t for t in range(self.n_vocab) if lc.llama_vocab_is_eog(self._vocab, t)]
        self._eog = frozenset(self.eog_tokens)
        # Every token's text, looked up once (~50 ms): postprocess then makes no ctypes call
        # per token (each one releases the GIL, which the event loop may then hold a while).
        self._pieces = [self._piece(t, special=False) for t in range(self.n_vocab)]
        self._token_ids = np.arange(self.n_vocab, dtype=np.int32)
        self._logit_rows: dict[int, np.ndarray] = {}  # address -> a view of the row there
        self._valid_grammars: set[str] = set()
        self.penalties_in_c = False  # llama.cpp's own samplers for bias and penalties (to compare)
        self.numpy_draw = True  # greedy picks and unseeded draws in numpy (False: llama.cpp's, to compare)
        self._step_cost: StepCost | None = None

    def _pool_cells(self, config: EngineConfig, pool_bytes: int) -> int:
        """As many cells as pool_bytes hold, or one full context if the pool may grow to it;
        a multiple of 256 (llama.cpp's padding), at most what every slot could use."""
        cell = self.kv_cell_bytes()
        cells = pool_bytes // cell
        if config.kv_bytes_for_context:
            cells = max(cells, min(config.context_per_sequence, config.kv_bytes_for_context // cell))
        cells = -(-cells // 256) * 256 if cells >= config.context_per_sequence else cells // 256 * 256
        return max(256, min(config.context_per_sequence * config.max_sequences, cells))

    def _log_kv_layout(self, name: str, every: int) -> None:
        mb = (self.kv_pool_cells or every) * self.kv_cell_bytes() / 2**20
        if self.kv_pool_cells:
            log.info("KV cache of %s: one pool of %d tokens (%.0f MB) for %d sequences", name, self.kv_pool_cells,
                     mb, self.config.max_sequences)
        else:
            log.info("KV cache of %s: a buffer per sequence, %d x %d tokens (%.0f MB at most)", name,
                     self.config.max_sequences, self.config.context_per_sequence, mb)

    def kv_cell_bytes(self) -> int:
        """The KV cache's bytes per token (every layer's keys and values)."""
        arch = self.metadata("general.architecture") or ""
        heads = lc.llama_model_n_head(self._model)
        width = lc.llama_model_n_embd(self._model) // max(1, heads)
        key = int(self.metadata(f"{arch}.attention.key_length") or width)
        value = int(self.metadata(f"{arch}.attention.value_length") or width)
        per_value = KV_TYPES[self.config.kv_type][1]
        layers, kv_heads = lc.llama_model_n_layer(self._model), lc.llama_model_n_head_kv(self._model)
        return max(1, int(layers * kv_heads * (key + value) * per_value))

    # -- vocabulary ---------------------------------------------------------
    def metadata(self, key: str) -> str | None:
        return read_metadata(self._model, key)

    def tokenize(self, text: str, add_special: bool, parse_special: bool = True) -> list[int]:
        return tokenize_text(self._vocab, text, add_special, parse_special)

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        return self._piece(token, special) if special else self._pieces[token]

    def _piece(self, token: int, special: bool) -> bytes:
        n = lc.llama_token_to_piece(self._vocab, token, self._piece_buf, 256, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
            return buf.raw[:n]
        return self._piece_buf.raw[:n]

    def is_end_of_generation(self, token: int) -> bool:
        return token in self._eog

    @property
    def adds_bos(self) -> bool:
        return bool(lc.llama_vocab_get_add_bos(self._vocab))

    def special_token(self, name: str) -> int:
        """bos, eos, fim_pre, fim_suf, fim_mid: the token id, or -1 when the model has none."""
        fn = {
            "bos": lc.llama_vocab_bos,
            "eos": lc.llama_vocab_eos,
            "fim_pre": lc.llama_vocab_fim_pre,
            "fim_suf": lc.llama_vocab_fim_suf,
            "fim_mid": lc.llama_vocab_fim_mid,
        }[name]
        return int(fn(self._vocab))

    # -- sampling -----------------------------------------------------------
    def create_sampler(self, params: SamplingParams,
                       ban_eog: bool = False) -> ctypes.c_void_p | GrammarSampler | PenalizedChain | TemperatureDraw:
        """Greedy picks and unseeded full-distribution draws in numpy, after bias and penalties
        (TemperatureDraw); otherwise a chain in C (top-k, top-p, temperature, a seeded draw)
        with bias and penalties applied in numpy before it (PenalizedChain), or with a
        grammar, a GrammarSampler around the same samplers."""
        if params.grammar is not None:
            pre = self._new_chain()
            self._add_bias_and_penalties(pre, params, ban_eog)
            post = self._new_chain()
            self._add_draw(post, params)
            return GrammarSampler(pre, post, self._grammar_sampler(params.grammar), params.is_greedy)
        penalties = Penalties(self._bias(params, ban_eog), params.repetition_penalty, params.frequency_penalty,
                              params.presence_penalty)
        full_distribution = params.seed is None and params.top_k == 0 and params.top_p >= 1.0
        if self.numpy_draw and (params.is_greedy or full_distribution) and not self.penalties_in_c:
            return TemperatureDraw(params.temperature, penalties)
        chain = self._new_chain()
        if penalties.is_needed and not self.penalties_in_c:
            self._add_draw(chain, params)
            return PenalizedChain(chain, penalties)
        self._add_bias_and_penalties(chain, params, ban_eog)
        self._add_draw(chain, params)
        return chain

    @staticmethod
    def _new_chain() -> ctypes.c_void_p:
        return cast(ctypes.c_void_p, lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params()))

    def _bias(self, params: SamplingParams, ban_eog: bool) -> list[tuple[int, float]]:
        return list(params.logit_bias) + ([(t, float("-inf")) for t in self.eog_tokens] if ban_eog else [])

    def _add_bias_and_penalties(self, chain: ctypes.c_void_p, params: SamplingParams, ban_eog: bool) -> None:
        bias = self._bias(params, ban_eog)
        if bias:
            arr = (lc.llama_logit_bias * len(bias))()
            for i, (token, value) in enumerate(bias):
                arr[i].token = token  # type: ignore[assignment]  # ctypes converts the int
                arr[i].bias = value
            lc.llama_sampler_chain_add(
                chain, lc.llama_sampler_init_logit_bias(self.n_vocab, len(arr), arr)
            )
        if params.presence_penalty or params.frequency_penalty or params.repetition_penalty != 1.0:
            lc.llama_sampler_chain_add(
                chain,
                lc.llama_sampler_init_penalties(
                    # last_n: the whole context (-1 would mean "disabled" here)
                    self.n_vocab, self.config.context_per_sequence, params.repetition_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )

    @staticmethod
    def _add_draw(chain: ctypes.c_void_p, params: SamplingParams) -> None:
        if params.is_greedy:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(params.top_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(params.temperature))
        seed = lc.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        if seed == lc.LLAMA_DEFAULT_SEED and params.seed is not None:
            seed = 0xFFFFFFFE  # LLAMA_DEFAULT_SEED means "random"; keep a given seed fixed
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed))

    def _grammar_sampler(self, grammar: str) -> ctypes.c_void_p:
        sampler = lc.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise EngineFailure("llama.cpp could not parse the grammar")
        return cast(ctypes.c_void_p, sampler)

    def check_grammar(self, grammar: str) -> bool:
        """Whether llama.cpp accepts the grammar; each grammar is parsed once (the same
        schema comes back request after request)."""
        if grammar not in self._valid_grammars:
            try:
                lc.llama_sampler_free(self._grammar_sampler(grammar))
            except EngineFailure:
                return False
            if len(self._valid_grammars) >= 1024:  # bounded: schemas are client input
                self._valid_grammars.clear()
            self._valid_grammars.add(grammar)
        return True

    def free_sampler(self, sampler: ctypes.c_void_p | GrammarSampler | PenalizedChain | TemperatureDraw) -> None:
        if isinstance(sampler, TemperatureDraw):
            return
        if isinstance(sampler, PenalizedChain):
            lc.llama_sampler_free(sampler.chain)
        elif isinstance(sampler, GrammarSampler):
            for part in (sampler.pre, sampler.post, sampler.grammar):
                lc.llama_sampler_free(part)
        else:
            lc.llama_sampler_free(sampler)

    def _logits(self, row: int) -> np.ndarray:
        """One batch row's logits: a numpy view of llama.cpp's buffer. The views are kept by
        address: the buffer moves only when it grows, and a row's address then always holds
        a row of the current buffer."""
        address = _logits_address(self._ctx, row)
        if not address:
            raise EngineFailure(f"llama.cpp has no logits for batch row {row}")
        view = self._logit_rows.get(address)
        if view is None:
            if len(self._logit_rows) >= 4096:
                self._logit_rows.clear()
            view = np.ctypeslib.as_array((ctypes.c_float * self.n_vocab).from_address(address))
            self._logit_rows[address] = view
        return view

    def _candidates(self, row: int) -> np.ndarray:
        """The logits of one batch row as llama_token_data (copied, vectorised)."""
        logits = self._logits(row)
        data = np.empty(self.n_vocab, dtype=_TOKEN_DATA)
        data["id"] = self._token_ids
        data["logit"] = logits
        data["p"] = 0.0
        return data

    @staticmethod
    def _apply(sampler: ctypes.c_void_p, data: np.ndarray) -> int:
        """Runs a sampler over candidates; returns the index it selected (or -1)."""
        array = lc.llama_token_data_array(data.ctypes.data_as(ctypes.POINTER(lc.llama_token_data)),
                                          len(data), -1, False)
        lc.llama_sampler_apply(sampler, ctypes.byref(array))
        return int(array.selected)

    def _likeliest_first(self, grammar: ctypes.c_void_p, kept: np.ndarray) -> np.ndarray:
        """For a greedy pick under the grammar: the candidates at least as likely as the
        GRAMMAR_FIRST-th, with the grammar applied, when it accepts one of them (the likeliest
        token it accepts is then among them, ties included: the same pick as over the whole
        vocabulary, at a fraction of the cost); else the whole vocabulary under the grammar."""
        if len(kept) > GRAMMAR_FIRST:
            cut = np.partition(kept["logit"], -GRAMMAR_FIRST)[-GRAMMAR_FIRST]
            best: np.ndarray = kept[kept["logit"] >= cut]  # in vocabulary order, as the greedy pick scans them
            self._apply(grammar, best)
            if np.isfinite(best["logit"]).any():
                return best
        self._apply(grammar, kept)
        return kept

    def _sample_constrained(self, sampler: GrammarSampler, row: int) -> int:
        data = self._candidates(row)
        self._apply(sampler.pre, data)
        kept = data.copy()
        token = int(data[self._apply(sampler.post, data)]["id"])
        single = np.array([(token, 0.0, 0.0)], dtype=_TOKEN_DATA)
        self._apply(sampler.grammar, single)
        if not np.isfinite(single[0]["logit"]):  # the grammar rejects it: draw again under the grammar
            if sampler.greedy:
                kept = self._likeliest_first(sampler.grammar, kept)
            else:
                self._apply(sampler.grammar, kept)
            chosen = kept[self._apply(sampler.post, kept)]
            if not np.isfinite(chosen["logit"]):
                raise EngineFailure("no token satisfies the grammar")  # never accept one it rejects
            token = int(chosen["id"])
        for part in (sampler.pre, sampler.post, sampler.grammar):
            lc.llama_sampler_accept(part, token)
        return token

    # -- decoding -----------------------------------------------------------
    def run(self, items: list[BatchItem], samplers: list[Any]) -> list[list[int]]:
        """Decodes one batch; for each item that wants logits, the tokens sampled: one, or
        with a draft the drafted tokens sampled as drafted, then the first one that was not
        (or the one after the whole draft). Each is sampled, and accepted into its chain,
        as it would have been one step at a time."""
        total = sum(len(item.tokens) for item in items)
        if total > self.config.batch_tokens:  # checked before writing: the arrays hold batch_tokens
            raise EngineFailure(f"batch of {total} tokens exceeds the batch size")
        batch = self._batch
        n = 0
        logit_rows: dict[int, int] = {}  # item index -> the batch row of its first logits
        # With a KV buffer per sequence llama.cpp splits a batch into micro-batches of
        # consecutive sequence ids *in batch order*: written in slot order, one suffices.
        for k in sorted(range(len(items)), key=lambda k: items[k].seq_id):
            item = items[k]
            first_logits = len(item.tokens) - 1 - item.num_draft
            for i, token in enumerate(item.tokens):
                batch.token[n] = token
                batch.pos[n] = item.start_pos + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = item.seq_id
                batch.logits[n] = item.wants_logits and i >= first_logits
                n += 1
            if item.wants_logits:
                logit_rows[k] = n - 1 - item.num_draft
        batch.n_tokens = n
        rc = lc.llama_decode(self._ctx, batch)
        if rc != 0:
            raise EngineFailure(f"llama_decode failed with code {rc}")
        out = []
        for k, item in enumerate(items):
            if not item.wants_logits:
                continue
            draft = item.tokens[len(item.tokens) - item.num_draft:]
            sampled = [self._sample(samplers[k], logit_rows[k])]
            while len(sampled) <= len(draft) and sampled[-1] == draft[len(sampled) - 1]:
                sampled.append(self._sample(samplers[k], logit_rows[k] + len(sampled)))
            out.append(sampled)
        return out

    def _sample(self, sampler: ctypes.c_void_p | GrammarSampler | PenalizedChain | TemperatureDraw, row: int) -> int:
        if isinstance(sampler, TemperatureDraw):
            return sampler.sample(self._logits(row))
        if isinstance(sampler, GrammarSampler):
            return self._sample_constrained(sampler, row)
        if isinstance(sampler, PenalizedChain):  # bias and penalties on llama.cpp's row, in place
            sampler.penalties.apply(self._logits(row))
            token = int(lc.llama_sampler_sample(sampler.chain, self._ctx, row))
            sampler.penalties.accept(token)
            return token
        return int(lc.llama_sampler_sample(sampler, self._ctx, row))

    def step_cost(self) -> StepCost:
        """What a step of one sequence costs by how many tokens it decodes, in one-token
        steps: measured once, in slot 0 over a short prompt, at STEP_COST_TOKENS (those a
        step and a sequence have room for; the best of three each), then the slot is emptied.
        Near 1 whatever the tokens where a step's time is reading the weights (GPUs, large
        models); on a small model on a few CPU cores a second token costs most of a step and
        each one after it about a quarter."""
        lead = min(16, self.config.batch_tokens)  # the prompt the steps follow
        sizes = [n for n in STEP_COST_TOKENS if n <= min(self.config.batch_tokens, self.config.context_per_sequence - lead)]
        if self._step_cost is None and len(sizes) < 2:  # no room for a draft: none is made
            self._step_cost = StepCost.linear(float("inf"))
        if self._step_cost is None:
            sampler = self.create_sampler(SamplingParams(max_tokens=1, temperature=0.0))
            prompt = [max(0, self.special_token("bos"))] * 64
            self.run([BatchItem(0, prompt[:lead], 0, False)], [None])
            times = dict.fromkeys(sizes, float("inf"))
            for _ in range(3):  # the sizes alternated: a burst of other work slows all of them
                for n in sizes:
                    started = time.perf_counter()
                    self.run([BatchItem(0, prompt[:n], lead, True, n - 1)], [sampler])
                    times[n] = min(times[n], time.perf_counter() - started)
                    self.trim_sequence(0, lead)
            self.trim_sequence(0, 0)
            self.free_sampler(sampler)
            self._step_cost = StepCost(tuple((n, max(1.0, times[n] / times[1])) for n in sizes))
            log.info("a step of %s tokens costs %s one-token steps (%.1f ms): drafts are priced so",
                     "/".join(map(str, sizes)), "/".join(f"{c:.2f}" for _, c in self._step_cost.points),
                     times[1] * 1e3)
        return self._step_cost

    def copy_sequence(self, src: int, dst: int) -> None:
        """Gives `dst` a copy of `src`'s KV, at once. In a unified KV buffer that only labels
        the cells. Between per-sequence buffers llama_memory_seq_cp would copy the source's
        whole buffer (context_per_sequence cells: ~190 MB for 8,192 cells of SmolLM2,
        20-40 ms on the next decode); the sequence state API moves only the cells the source holds."""
        if self._kv_unified:
            lc.llama_memory_seq_cp(self._memory, src, dst, -1, -1)
            return
        size = lc.llama_state_seq_get_size(self._ctx, src)
        if len(self._state_buf) < size:
            self._state_buf = (ctypes.c_uint8 * size)()
        if lc.llama_state_seq_get_data(self._ctx, self._state_buf, size, src) != size:
            raise EngineFailure(f"could not read the KV of sequence {src}")
        if lc.llama_state_seq_set_data(self._ctx, self._state_buf, size, dst) != size:
            raise EngineFailure(f"could not copy the KV of sequence {src} into sequence {dst}")

    def trim_sequence(self, seq_id: int, keep: int) -> None:
        """Drops the sequence's KV from position `keep` on (keep=0: all of it)."""
        lc.llama_memory_seq_rm(self._memory, seq_id, keep, -1)

    def close(self) -> None:
        if self._ctx:
            lc.llama_batch_free(self._batch)
            lc.llama_free(self._ctx)
            lc.llama_model_free(self._model)
            self._ctx = None
