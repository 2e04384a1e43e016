"""A loaded chat model: its tokenizer, its chat template and its engine."""

from pathlib import Path

from alize.engine.chat_template import ChatTemplate
from alize.engine.client import AsyncEngine
from alize.engine.core import EngineCore
from alize.engine.mistral_prompt import MistralPrompt
from alize.engine.params import EngineConfig
from alize.engine.runner_protocol import Runner
from alize.engine.scheduler import Scheduler
from alize.errors import ConfigError


class ChatModel:
    """Everything services need of a chat model: its prompt formats, its tokenizer, its
    engine, and the few facts about its vocabulary that requests are checked against."""

    def __init__(self, name: str, runner: Runner, config: EngineConfig, template: str | None = None,
                 prompt_format: str = "auto"):
        """`template` replaces the file's chat template; `prompt_format` "auto" writes
        prompts in Mistral's format when mistral-common has the model's own tokenizer,
        "template" always uses the chat template, "mistral-common" requires Mistral's."""
        self.name = name
        self.config = config
        self.runner = runner
        # the longest a sequence may be: the model's context, or the KV pool if smaller
        self.context_length = min(config.context_per_sequence, runner.kv_pool_cells or config.context_per_sequence)
        bos = self.runner.special_token("bos")
        eos = self.runner.special_token("eos")
        self.bos_text = self._text(bos)
        self.template = ChatTemplate(
            template or self.runner.metadata("tokenizer.chat_template"), self.bos_text, self._text(eos)
        )
        self.mistral = MistralPrompt.detect(self.runner) if prompt_format != "template" else None
        if prompt_format == "mistral-common" and self.mistral is None:
            self.runner.close()
            raise ConfigError(f"{name}: mistral-common has no tokenizer matching this model's vocabulary")
        self.fim_tokens = tuple(self.runner.special_token(n) for n in ("fim_pre", "fim_suf", "fim_mid"))
        scheduler = Scheduler(config.max_sequences, config.batch_tokens, config.queue_timeout_s,
                              kv_pool=runner.kv_pool_cells)
        self.core = EngineCore(self.runner, scheduler, name, prompt_lookup=config.prompt_lookup)
        self.engine = AsyncEngine(self.core, capacity=config.max_sequences + config.queue_size)
        self.core.start()

    @classmethod
    def load(cls, name: str, path: Path, config: EngineConfig, template: str | None = None,
             prompt_format: str = "auto") -> "ChatModel":
        """The model in a GGUF file, run by llama.cpp."""
        from alize.engine.runner import LlamaRunner  # here: fakes need no llama.cpp

        return cls(name, LlamaRunner(path, config), config, template, prompt_format)

    @property
    def n_vocab(self) -> int:
        return self.runner.n_vocab

    @property
    def adds_bos(self) -> bool:
        return self.runner.adds_bos

    def special_token(self, name: str) -> int:
        """A special token's id ("bos", "fim_pre"...), or -1."""
        return self.runner.special_token(name)

    def check_grammar(self, grammar: str) -> bool:
        """Whether llama.cpp accepts the grammar."""
        return self.runner.check_grammar(grammar)

    def _text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.runner.token_bytes(token, special=True).decode("utf-8", errors="replace")

    @property
    def tool_style(self) -> str:
        """How the model is shown tools and writes calls (engine.grammar.CALL_STYLES)."""
        if self.mistral is not None:
            return "mistral"
        return self.template.tool_style or "generic"

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

    def kv_usage(self) -> float:
        """The share of the KV cache in use, 0 to 1."""
        cells = self.runner.kv_pool_cells or self.config.max_sequences * self.config.context_per_sequence
        return self.core.kv_tokens() / cells

    def close(self) -> None:
        self.core.stop()
        self.runner.close()
