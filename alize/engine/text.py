"""Turning sampled tokens into text safely: whole UTF-8 characters only, stop strings cut."""

import codecs


class TextAssembler:
    """Accumulates token bytes and releases text that is final.

    A character split across tokens (accents, emoji, CJK) is held back until its
    last byte arrives; text that might be the start of a stop string is held
    back until it is known not to be one."""

    def __init__(self, stop: tuple[str, ...] = ()):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._max_stop = max((len(s) for s in self._stop), default=0)
        self.text = ""
        self.num_released = 0
        self.is_stopped = False

    def feed(self, piece: bytes) -> str:
        """Adds a token's bytes; returns the text now safe to send."""
        if self.is_stopped:
            return ""
        self.text += self._decoder.decode(piece)
        cut = self._find_stop()
        if cut is not None:
            self.is_stopped = True
            return self._release(cut)
        return self._release(len(self.text) - self._held_suffix())

    def finish(self) -> str:
        """Flushes the text held back for stop strings. The bytes of a character the answer
        ended inside (cut by max_tokens) are dropped: they are not text, and a U+FFFD at the
        end of an answer would look like the model's (finish_reason says it was cut)."""
        if self.is_stopped:
            return ""
        self._decoder.reset()
        cut = self._find_stop()
        if cut is not None:
            self.is_stopped = True
            return self._release(cut)
        return self._release(len(self.text))

    @property
    def released_text(self) -> str:
        return self.text[: self.num_released]

    def _release(self, end: int) -> str:
        out = self.text[self.num_released : end]
        self.num_released = max(self.num_released, end)
        return out

    def _find_stop(self) -> int | None:
        if not self._stop:
            return None
        # Released text never holds the start of a stop string, so search after it.
        hits = [i for i in (self.text.find(s, self.num_released) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _held_suffix(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        for n in range(min(self._max_stop - 1, len(self.text)), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self._stop):
                return n
        return 0
