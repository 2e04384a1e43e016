"""Logit bias and the repetition, frequency and presence penalties, applied to one row of
logits in numpy exactly as llama.cpp's logit_bias and penalties samplers apply them (the
same float32 operations, in the same order), touching only the tokens concerned.
llama.cpp's penalties sampler looks each of the 49,152 candidates up in a hash map every
step: ~0.3 ms a sequence, a tenth of a 16-sequence decode step with the built-in model."""

import numpy as np

FEW = 8  # biases up to this many are added one at a time


class Penalties:
    def __init__(self, bias: list[tuple[int, float]], repeat: float, frequency: float, presence: float):
        self._bias_ids = np.array([t for t, _ in bias], dtype=np.int64)
        self._bias = np.array([b for _, b in bias], dtype=np.float32)
        self._bias_once = 0 < len(self._bias_ids) == len(set(self._bias_ids.tolist()))  # none listed twice
        # a few biases (end-of-sequence bans) go one by one: right after a decode, with cold
        # caches, that costs half what a fancy-indexed add does (20 against 40 µs, measured)
        self._bias_few = [(t, np.float32(b)) for t, b in bias] if len(bias) <= FEW else None
        self._repeat = np.float32(repeat)
        self._frequency = np.float32(frequency)
        self._presence = np.float32(presence)
        self._penalizes = repeat != 1.0 or frequency != 0.0 or presence != 0.0
        self._counts: dict[int, int] = {}  # generated tokens (those accepted), as llama.cpp counts them
        self._ids = np.empty(0, dtype=np.int64)
        self._seen = np.empty(0, dtype=np.float32)

    @property
    def is_needed(self) -> bool:
        return bool(len(self._bias_ids)) or self._penalizes

    def apply(self, logits: np.ndarray) -> None:
        """Biases, then penalizes, a row of logits in place."""
        if self._bias_few is not None:
            for token, bias in self._bias_few:  # in turn: a token listed twice gets both
                logits[token] += bias
        elif self._bias_once:
            logits[self._bias_ids] += self._bias
        elif len(self._bias_ids):
            np.add.at(logits, self._bias_ids, self._bias)  # a token listed twice gets both, in turn
        if self._penalizes and len(self._ids):
            row = logits[self._ids]
            row = np.where(row <= 0, row * self._repeat, row / self._repeat)
            row -= self._seen * self._frequency + np.float32(1) * self._presence
            logits[self._ids] = row

    def accept(self, token: int) -> None:
        if self._penalizes:
            self._counts[token] = self._counts.get(token, 0) + 1
            self._ids = np.fromiter(self._counts.keys(), dtype=np.int64, count=len(self._counts))
            self._seen = np.fromiter(self._counts.values(), dtype=np.float32, count=len(self._counts))
