"""Drafts for speculative verification, taken from a reference the output is expected to
follow: the client's predicted output (Mistral's and OpenAI's `prediction`) or, with
prompt-lookup decoding, the prompt itself.

The engine decodes a sequence's pending token together with the draft and samples every
position in order, keeping drafted tokens while they are the ones sampled (engine/core.py,
runner.run): the output is what it would have been without a draft, token for token,
seeded draws included, since each kept token is sampled exactly as it would have been.

Where the output is in the reference is followed token by token; after a mismatch (the
edit the client did not predict) it is found again by matching the output's last tokens
against the reference, as prompt-lookup decoding does. Pure Python."""

from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise

NGRAMS = (4, 3, 2)  # the output's last n tokens looked up in the reference, longest first
# Drafted tokens per step, at most: with the pending token 49 query rows, under the 64 at
# which llama.cpp's attention takes its tiled path, which sums in another order.
MAX_DRAFT = 48
MARGIN = 1.05  # a draft is made when it is expected to give at least 5% more tokens per second


@dataclass(frozen=True)
class StepCost:
    """What a step costs by how many tokens it decodes, in one-token steps: measured points
    (tokens, cost), joined by straight lines and continued past the last by the last slope.
    On a few CPU cores a second token costs most of a step and later ones far less (the
    weights' product gets cheaper per token); on a GPU nearly nothing."""

    points: tuple[tuple[int, float], ...] = ((1, 1.0), (2, 1.0))

    @classmethod
    def linear(cls, per_token: float) -> "StepCost":
        """Each token past the first costs `per_token` of a step (inf: drafts never pay)."""
        return cls(((1, 1.0), (2, 1.0 + per_token)))

    @cache  # noqa: B019 (a few instances, each alive as long as the engine): asked every step
    def __call__(self, tokens: int) -> float:
        points = self.points
        if tokens <= points[0][0]:
            return points[0][1]
        for (t0, c0), (t1, c1) in pairwise(points):
            if tokens <= t1:
                return c0 + (c1 - c0) * (tokens - t0) / (t1 - t0)
        (t0, c0), (t1, c1) = points[-2], points[-1]
        return c1 + (c1 - c0) / (t1 - t0) * (tokens - t1)


FREE = StepCost()  # a step costs the same whatever its tokens (nearly so on a GPU; the fake runner)


def draft_length(keep: float, cost: StepCost, most: int, others: int = 0) -> int:
    """How many tokens to draft: the length with the most expected tokens per unit of step
    time for the whole step (the sequence and `others` decoding one token each, `cost` what
    a step of so many tokens costs), each drafted token kept with probability `keep` if the
    one before it was; 0 when no length gains MARGIN."""
    best, best_gain, expected = 0, MARGIN, 1.0
    without = cost(others + 1)
    if cost(others + 2) == float("inf"):
        return 0
    for k in range(1, min(most, MAX_DRAFT) + 1):
        expected += keep ** k  # the pending token's successor, then the draft's tokens kept
        gain = (others + expected) / (others + 1) * without / cost(others + 1 + k)
        if gain > best_gain:
            best, best_gain = k, gain
    return best


@dataclass(eq=False)
class Drafter:
    source: list[int]
    cursor: int | None = 0  # where in the source the output is; None: lost, to be found again
    # what the output so far says of the source: tokens it foresaw, and departures from it
    # (a prior of `prior_kept` foreseen tokens for one departure: how far it is trusted)
    kept: int = 0
    misses: int = 0
    prior_kept: float = 8.0
    accepted: int = 0  # drafted tokens the output kept
    rejected: int = 0  # drafted tokens the output did not keep
    _index: dict[tuple[int, ...], list[int]] | None = field(default=None, repr=False)
    _last: int = 0  # the source position of the last match: later matches are preferred

    @classmethod
    def following(cls, prediction: list[int]) -> "Drafter":
        """For a predicted output: the output starts where it starts."""
        return cls(list(prediction), cursor=0)

    @classmethod
    def looking_up(cls, prompt: list[int]) -> "Drafter":
        """For prompt-lookup decoding: the output is somewhere in the prompt, if anywhere."""
        return cls(list(prompt), cursor=None, prior_kept=4.0)

    @property
    def keep(self) -> float:
        """The chance that a drafted token is kept, the one before it having been."""
        return (self.kept + self.prior_kept) / (self.kept + self.misses + self.prior_kept + 1)

    def propose(self, output: list[int], most: int, cost: StepCost = FREE, others: int = 0) -> list[int]:
        """The draft for the tokens after `output`: at most `most` tokens, maybe none, as
        many as pay for what they cost (draft_length: `cost` of a step by its tokens,
        `others` sequences decoding in the same step)."""
        if most <= 0:
            return []
        if self.cursor is None:
            self.cursor = self._find(output)
            if self.cursor is None:
                return []
        length = draft_length(self.keep, cost, min(most, len(self.source) - self.cursor), others)
        return self.source[self.cursor:self.cursor + length]

    def update(self, drafted: int, kept: int, written: list[int]) -> None:
        """After a step: `kept` of the `drafted` tokens were kept, and `written` are the new
        output tokens (the kept drafts, then the token sampled after them). Every written
        token the source foresaw counts for it, drafted or not (so that a source not trusted
        enough to draft from earns it back), and every departure from it against it."""
        self.accepted += kept
        self.rejected += drafted - kept
        for token in written:
            if self.cursor is None:
                continue
            if self.cursor < len(self.source) and self.source[self.cursor] == token:
                self.cursor += 1
                self.kept += 1
            else:
                self.misses += 1
                self._last, self.cursor = self.cursor, None

    def _find(self, output: list[int]) -> int | None:
        """The source position after the latest occurrence of the output's last tokens,
        the first one after the last match preferred (the output moves forward)."""
        index = self._ngrams()
        for n in NGRAMS:
            if len(output) < n:
                continue
            places = [p for p in index.get(tuple(output[-n:]), ()) if p < len(self.source)]
            if places:
                return next((p for p in places if p >= self._last), places[0])
        return None

    def _ngrams(self) -> dict[tuple[int, ...], list[int]]:
        """Every n-gram of the source (for each n of NGRAMS) -> the positions just after it."""
        if self._index is None:
            self._index = {}
            for n in NGRAMS:
                for end in range(n, len(self.source) + 1):
                    self._index.setdefault(tuple(self.source[end - n:end]), []).append(end)
        return self._index
