"""Moderation by sentence embeddings, the built-in moderation model: one logistic
regression per category over the embedding model's unit vectors, fitted when the model is
first used on labelled sentences shipped with Alizé (alize/moderation_examples.toml; about
two hundred, fitted in a fraction of a second). Its scores are probabilities, so a
threshold means something (a guardrail's 0.5, or a custom one).

A text is scored in pieces (its sentences, short ones packed together up to PACK_CHARS, long
ones cut at PIECE_CHARS), and takes each category's highest score: a harmful sentence inside
a long document still counts. A conversation takes the highest over its
messages."""

import asyncio
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alize.engine.embedder import Embedder

EXAMPLES = Path(__file__).resolve().parent.parent / "moderation_examples.toml"
NONE = "none"  # the examples that are in no category
SHARPNESS = 5.0  # vectors are scaled so that a few hundredths of cosine move a score
L2 = 0.01
STEPS, RATE = 1000, 1.0
PIECE_CHARS = 600  # the longest piece: well under the embedding model's 256 tokens
PACK_CHARS = 200  # short sentences go together up to this, no further: one harmful sentence
                  # among many harmless ones would weigh too little in a longer piece


@dataclass(frozen=True)
class Classifier:
    categories: list[str]
    weights: np.ndarray  # (dimension, categories)
    bias: np.ndarray  # (categories,)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Each category's probability for each unit vector: (rows, categories)."""
        return _sigmoid(SHARPNESS * vectors @ self.weights + self.bias)


def fit(vectors: np.ndarray, labels: list[str], categories: list[str]) -> Classifier:
    """One-vs-rest logistic regressions, all at once by full-batch gradient descent from
    zero (the same examples give the same classifier). A category's examples weigh as much
    in all as the rest, so that 0.5 stands between them however few they are."""
    x = SHARPNESS * vectors
    y = np.array([[label == c for c in categories] for label in labels], dtype=np.float64)
    weight = np.where(y == 1, 0.5 / y.sum(axis=0), 0.5 / (1 - y).sum(axis=0))
    w, b = np.zeros((x.shape[1], len(categories))), np.zeros(len(categories))
    for _ in range(STEPS):
        gradient = weight * (_sigmoid(x @ w + b) - y)
        w -= RATE * (x.T @ gradient + L2 * w)
        b -= RATE * gradient.sum(axis=0)
    return Classifier(categories, w, b)


def examples(categories: list[str]) -> tuple[list[str], list[str]]:
    """(texts, labels) of the shipped examples, for these categories (and "none")."""
    data = tomllib.loads(EXAMPLES.read_text())
    texts, labels = [], []
    for label in [NONE, *categories]:
        texts += data[label]
        labels += [label] * len(data[label])
    return texts, labels


def pieces(text: str) -> list[str]:
    """The text as pieces of at most PIECE_CHARS characters, cut between paragraphs, then
    sentences, then words (one empty piece for an empty text)."""
    out: list[str] = []
    for part in re.split(r"(?<=[.!?])\s+|\n\s*\n", text.strip()):
        while len(part) > PIECE_CHARS:
            cut = part.rfind(" ", 0, PIECE_CHARS)
            cut = cut if cut > 0 else PIECE_CHARS
            out.append(part[:cut])
            part = part[cut:].lstrip()
        if out and len(out[-1]) + 1 + len(part) <= PACK_CHARS:
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out or [""]


class EmbeddingModerator:
    """Classifiers by embedding backend, each fitted at its first use."""

    def __init__(self, categories: list[str]):
        self.categories = categories
        self._fitted: dict[str, Classifier] = {}
        self._lock = asyncio.Lock()

    async def classifier(self, embedder: Embedder) -> Classifier:
        async with self._lock:
            if embedder.name not in self._fitted:
                texts, labels = examples(self.categories)
                vectors = await asyncio.to_thread(embedder.embed, texts)
                self._fitted[embedder.name] = await asyncio.to_thread(fit, vectors, labels, self.categories)
            return self._fitted[embedder.name]

    @staticmethod
    def tokens(embedder: Embedder, texts: list[list[str]]) -> list[list[list[int]]]:
        """Each input's pieces (of each of its texts) as the embedding model's tokens; an
        input of no text at all is one empty piece."""
        return [[tokens for t in one for p in pieces(t) for tokens in _fitting(embedder, p)]
                or [embedder.tokenize("")] for one in texts]

    async def scores(self, embedder: Embedder, tokens: list[list[list[int]]]) -> list[dict[str, float]]:
        """Each input's highest score per category over its pieces."""
        classifier = await self.classifier(embedder)
        flat = [piece for one in tokens for piece in one]
        vectors = await asyncio.wrap_future(embedder.submit(flat)) if flat else np.zeros((0, 1))
        out, start = [], 0
        for one in tokens:
            rows = classifier.scores(vectors[start:start + len(one)]).max(axis=0)
            start += len(one)
            out.append({c: round(float(s), 6) for c, s in zip(self.categories, rows, strict=True)})
        return out


def _fitting(embedder: Embedder, text: str) -> list[list[int]]:
    """The text's tokens, in halves (and so on) where it is more than the model reads at once
    (text dense in tokens: digits, symbols, scripts without spaces)."""
    tokens = embedder.tokenize(text)
    if len(tokens) <= embedder.max_tokens or len(text) < 2:
        return [tokens[:embedder.max_tokens]]
    middle = len(text) // 2
    return _fitting(embedder, text[:middle]) + _fitting(embedder, text[middle:])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
