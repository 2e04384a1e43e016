"""The draw from the full distribution at a temperature (Mistral's sampling: no top-k, no
top-p), in numpy: llama.cpp's chain copies the 49,152 logits into candidates and takes
their softmax with scalar expf, about 0.4 ms a sequence and step with the built-in model;
vectorised, it costs half that. Only for requests without a seed: a seeded request keeps
llama.cpp's dist sampler, whose draws the same seed repeats (and llama-server's too)."""

import numpy as np

from alize.engine.penalties import Penalties


class TemperatureDraw:
    def __init__(self, temperature: float, penalties: Penalties):
        self.scale = np.float32(1 / temperature)
        self.penalties = penalties
        self.rng = np.random.default_rng()

    def sample(self, logits: np.ndarray) -> int:
        """A token drawn from softmax(logits / temperature), after bias and penalties (the
        row is changed in place); the draw is accepted into the penalties."""
        if self.penalties.is_needed:
            self.penalties.apply(logits)
        weights = logits * self.scale
        weights -= weights.max()
        np.exp(weights, out=weights)
        cumulative = np.cumsum(weights, dtype=np.float64)
        token = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        token = min(token, len(cumulative) - 1)
        self.penalties.accept(token)
        return token
