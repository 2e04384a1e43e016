"""Token counts for a model another engine runs, when that engine reports none: exact with
the model's own tokenizer (its GGUF file read vocabulary-only, its chat template), an
estimate without one (a token per three bytes: generous for the usual tokenizers, so that
admission books enough)."""

import json
from pathlib import Path
from typing import Any, Protocol

from alize.engine.chat_template import ChatTemplate
from alize.errors import AlizeError


class Tokenizer(Protocol):
    def tokenize(self, text: str, add_special: bool, parse_special: bool = True) -> list[int]: ...
    def metadata(self, key: str) -> str | None: ...
    def special_text(self, name: str) -> str: ...


def estimate(text: str) -> int:
    return len(text.encode("utf-8")) // 3 + 1


def estimate_chat(messages: list[dict[str, Any]]) -> int:
    """A conversation's prompt, estimated from its JSON (role markup included, roughly)."""
    return len(json.dumps(messages, ensure_ascii=False)) // 3 + 16


class TokenCounter:
    """Counts like the model (exact) when it has the model's tokenizer, or estimates."""

    def __init__(self, tokenizer: Tokenizer | None = None):
        self.tokenizer = tokenizer
        self.template = None if tokenizer is None else ChatTemplate(
            tokenizer.metadata("tokenizer.chat_template"), tokenizer.special_text("bos"), tokenizer.special_text("eos"))

    @classmethod
    def load(cls, path: Path | None) -> "TokenCounter":
        if path is None:
            return cls()
        from alize.engine.runner import Vocabulary  # here: fakes need no llama.cpp

        return cls(Vocabulary(path))

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def text(self, text: str) -> int:
        if self.tokenizer is None:
            return estimate(text)
        return len(self.tokenizer.tokenize(text, add_special=False, parse_special=False))

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
        """The prompt a chat request makes, as the model's template writes it."""
        if self.tokenizer is None or self.template is None:
            return estimate_chat(messages)
        try:
            prompt = self.template.render(messages, add_generation_prompt=True, tools=tools)
        except AlizeError:  # a template that refuses the conversation: the upstream's own may not
            return estimate_chat(messages)
        bos = self.template.bos_token
        return len(self.tokenizer.tokenize(prompt, add_special=not (bos and prompt.startswith(bos)),
                                           parse_special=True))

    def close(self) -> None:
        close = getattr(self.tokenizer, "close", None)
        if close is not None:
            close()
