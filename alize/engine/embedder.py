"""Sentence embeddings run by llama.cpp (a BERT-family GGUF), on the CPU, with no PyTorch.

A sentence-transformers folder is converted to GGUF once (engine/bert_gguf.py); a GGUF
file is loaded as it is. One thread per model encodes: the inputs of every request waiting
are packed several to a llama.cpp batch, each its own sequence; the model pools each one
(mean or CLS, as the model says) and the vectors come back unit-length, as Mistral's are."""

import ctypes
import queue
import re
import threading
import unicodedata
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as lc
import numpy as np

from alize.engine.bert_gguf import MAX_SEQ_KEY, converted, is_sentence_transformers
from alize.engine.runner import init_backend, read_metadata, tokenize_text
from alize.errors import ConfigError, EngineFailure

BATCH_TOKENS = 512  # tokens encoded in one llama.cpp call (at least the longest input)
MAX_SEQUENCES = 16  # inputs encoded in one call (attention spans the whole call: small calls waste less)
WORDPIECE_MAX_CHARS = 100  # BERT's tokenizer reads a longer word as one [UNK]; llama.cpp's splits it
_WORD = re.compile(r"[^\s\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def cpu_has_bf16() -> bool:
    """Whether llama.cpp was built for bfloat16 dot products (AVX512_BF16; the build's
    flags follow the CPU, scripts/llama_build_flags.sh)."""
    return b"AVX512_BF16 = 1" in lc.llama_print_system_info()


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    return 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126 or (
        unicodedata.category(char).startswith("P"))


def unknown_long_words(text: str) -> str:
    """BERT's rule for words over 100 characters (after its split on spaces, punctuation
    and CJK characters, and without accents): the word becomes [UNK]."""
    def word(match: re.Match[str]) -> str:
        pieces = [""]
        for char in match.group(0):
            if _is_punctuation(char):
                pieces += [char, ""]
            else:
                pieces[-1] += char
        return "".join(" [UNK] " if len(_plain(p)) > WORDPIECE_MAX_CHARS else p for p in pieces)
    return _WORD.sub(word, text) if len(text) > WORDPIECE_MAX_CHARS else text


def _plain(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


@dataclass
class _Job:
    tokens: list[list[int]]
    future: Future[np.ndarray]


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = (rows / np.where(norms == 0, 1, norms)).astype(np.float32)
    return unit


class Embedder:
    def __init__(self, name: str, path: Path, threads: int | None = None, cache_dir: Path | None = None):
        init_backend()
        if is_sentence_transformers(path):
            path = converted(path, cache_dir or path.parent / ".alize-gguf", bf16=cpu_has_bf16())
        self.name = name
        self._model = lc.llama_model_load_from_file(str(path).encode(), lc.llama_model_default_params())
        if not self._model:
            raise ConfigError(f"llama.cpp could not load the embedding model {path}")
        self._vocab = lc.llama_model_get_vocab(self._model)
        trained = lc.llama_model_n_ctx_train(self._model)
        given = read_metadata(self._model, MAX_SEQ_KEY)
        self.max_tokens = min(int(given), trained) if given else trained
        self.dimension = lc.llama_model_n_embd(self._model)
        self._batch_tokens = max(BATCH_TOKENS, self.max_tokens)
        params = lc.llama_context_default_params()
        params.embeddings = True
        params.n_ctx = params.n_batch = params.n_ubatch = self._batch_tokens
        params.n_seq_max = MAX_SEQUENCES
        params.pooling_type = lc.LLAMA_POOLING_TYPE_UNSPECIFIED  # the model's own (mean for MiniLM)
        if threads:
            params.n_threads = params.n_threads_batch = threads
        self._ctx = lc.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise ConfigError(f"llama.cpp could not create an embedding context for {path}")
        if lc.llama_pooling_type(self._ctx) == lc.LLAMA_POOLING_TYPE_NONE:
            raise ConfigError(f"{path} has no pooling: it gives token vectors, not sentence embeddings")
        self._batch = lc.llama_batch_init(self._batch_tokens, 0, 1)
        self._wordpiece = read_metadata(self._model, "tokenizer.ggml.model") == "bert"
        self._lock = threading.Lock()  # held by the embedding thread while it encodes
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.encode_calls = 0
        self._thread = threading.Thread(target=self._loop, name=f"alize-embed-{name}", daemon=True)
        self._thread.start()

    def tokenize(self, text: str) -> list[int]:
        """The model's tokens, as sentence-transformers makes them: special tokens written in
        the text ("[SEP]") read as such, too-long words as [UNK]."""
        if self._wordpiece:
            text = unknown_long_words(text)
        return tokenize_text(self._vocab, text, add_special=True, parse_special=True)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self.tokenize(t)) for t in texts]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one per text (cut at max_tokens: the API refuses longer inputs first)."""
        return self.submit([self.tokenize(t)[: self.max_tokens] for t in texts]).result()

    def submit(self, tokens: list[list[int]]) -> Future[np.ndarray]:
        """Queues tokenized inputs (each at most max_tokens) for the embedding thread, which
        encodes them together with whatever other requests wait (200 texts sent one per call
        took twice as long as in one call)."""
        job = _Job(tokens, Future())
        self._jobs.put(job)
        return job.future

    def _loop(self) -> None:
        """The embedding thread: takes the waiting requests, encodes their texts together,
        16 to a llama.cpp call, and hands each request its vectors."""
        while (job := self._jobs.get()) is not None:
            with self._lock:
                jobs = [job]
                more: _Job | None = job
                while not self._jobs.empty() and (more := self._jobs.get()) is not None:
                    jobs.append(more)
                try:
                    self._run(jobs)
                except Exception as exc:  # never let one bad batch kill the thread
                    for j in jobs:
                        if not j.future.done():
                            j.future.set_exception(exc)
            if more is None:
                return

    def _run(self, jobs: list[_Job]) -> None:
        tokenized = [tokens for j in jobs for tokens in j.tokens]
        out = np.zeros((len(tokenized), self.dimension), dtype=np.float32)
        start = 0
        while start < len(tokenized):
            end, used = start, 0
            while end < len(tokenized) and end - start < MAX_SEQUENCES and (
                    used + len(tokenized[end]) <= self._batch_tokens):
                used += len(tokenized[end])
                end += 1
            self._encode(tokenized[start:end], out[start:end])
            self.encode_calls += 1
            start = end
        out = unit_rows(out)
        at = 0
        for j in jobs:
            j.future.set_result(out[at:at + len(j.tokens)])
            at += len(j.tokens)

    def _encode(self, group: list[list[int]], out: np.ndarray) -> None:
        batch = self._batch
        n = 0
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        if lc.llama_encode(self._ctx, batch) != 0:
            raise EngineFailure(f"llama.cpp could not embed a batch of {len(group)} inputs")
        for seq in range(len(group)):
            vector = lc.llama_get_embeddings_seq(self._ctx, seq)
            if not vector:
                raise EngineFailure("llama.cpp gave no pooled embedding")
            out[seq] = np.ctypeslib.as_array(ctypes.cast(vector, ctypes.POINTER(ctypes.c_float)),
                                             shape=(self.dimension,))

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)
        if self._ctx:
            lc.llama_batch_free(self._batch)
            lc.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lc.llama_model_free(self._model)
            self._model = None
