"""A loaded chat model: its tokenizer, its chat template and its engine."""

import os
from pathlib import Path

from alize.engine.chat_template import ChatTemplate
from alize.engine.client import AsyncEngine
from alize.engine.core import EngineCore
from alize.engine.runner import LlamaRunner, RunnerConfig
from alize.engine.scheduler import Scheduler


class ChatModel:
    def __init__(self, name: str, path: Path, context_length: int, threads: int | None = None,
                 max_sequences: int = 1, batch_size: int = 512):
        threads = threads or max(1, os.cpu_count() or 1)
        self.name = name
        self.runner = LlamaRunner(
            path, RunnerConfig(context_length, max_sequences, batch_size, threads)
        )
        self.context_length = context_length
        bos = self.runner.special_token("bos")
        eos = self.runner.special_token("eos")
        self.bos_text = self._text(bos)
        self.template = ChatTemplate(
            self.runner.metadata("tokenizer.chat_template"), self.bos_text, self._text(eos)
        )
        self.fim_tokens = tuple(self.runner.special_token(n) for n in ("fim_pre", "fim_suf", "fim_mid"))
        self.core = EngineCore(self.runner, Scheduler(max_sequences, batch_size), name)
        self.engine = AsyncEngine(self.core)
        self.core.start()

    def _text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.runner.token_bytes(token, special=True).decode("utf-8", errors="replace")

    @property
    def has_fim_tokens(self) -> bool:
        return all(t >= 0 for t in self.fim_tokens)

    def tokenize_prompt(self, text: str) -> list[int]:
        """Tokens of a rendered prompt; BOS is added unless the text already begins with it."""
        add_bos = self.runner.adds_bos and not (self.bos_text and text.startswith(self.bos_text))
        tokens = self.runner.tokenize(text, add_special=False, parse_special=True)
        bos = self.runner.special_token("bos")
        return [bos, *tokens] if add_bos and bos >= 0 else tokens

    def tokenize_text(self, text: str) -> list[int]:
        """Tokens of user text: special-token strings in it stay plain text."""
        return self.runner.tokenize(text, add_special=False, parse_special=False)

    def close(self) -> None:
        self.core.stop()
        self.runner.close()
