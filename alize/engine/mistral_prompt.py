"""Mistral's own prompt format, from Mistral's own library (mistral-common), for
Mistral-family models: GGUF files often carry a chat template that writes tools, system
prompts or tool results differently from what the model was trained on.

mistral-common ships Mistral's tokenizers (SentencePiece v3/v7, Tekken). A model gets one
only when that tokenizer is the model's own: the same vocabulary size, the same control
tokens at the same ids, and the same tokens for a sample text. Anything else keeps its
chat template."""

import logging
from pathlib import Path
from typing import Any

from alize.engine.runner_protocol import Runner
from alize.errors import InvalidRequest

log = logging.getLogger(__name__)

# Newest first: a model is given the first whose vocabulary matches its own exactly.
TOKENIZER_FILES = {
    32768: ("mistral_instruct_tokenizer_241114.model.v7", "mistral_instruct_tokenizer_240323.model.v3"),
    131072: ("tekken_240911.json", "tekken_240718.json"),
}
CONTROL_TOKENS = ("[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[SYSTEM_PROMPT]")
SAMPLE = "Bonjour! Café 42 = x**2 \n\t{\"key\": [1, 2]} — fin."


def _data_dir() -> Path | None:
    try:
        import mistral_common
    except ImportError:
        return None
    return Path(mistral_common.__file__).parent / "data"


def _control_id(tokenizer: Any, text: str) -> int | None:
    """The id of a control token, or None when this tokenizer version has none (some
    versions raise, others answer the unknown token's id)."""
    try:
        token = int(tokenizer.get_special_token(text))
        return token if tokenizer.id_to_piece(token) == text else None
    except Exception:
        return None


def matches(tokenizer: Any, runner: Runner) -> bool:
    """Whether the mistral-common tokenizer is the model's own."""
    inner = tokenizer.instruct_tokenizer.tokenizer
    if inner.n_words != runner.n_vocab:
        return False
    for text in CONTROL_TOKENS:
        ours = runner.tokenize(text, add_special=False, parse_special=True)
        theirs = _control_id(inner, text)
        if (theirs is None) != (len(ours) != 1) or (theirs is not None and ours != [theirs]):
            return False
    theirs_sample: list[int] = inner.encode(SAMPLE, bos=False, eos=False)
    return theirs_sample == runner.tokenize(SAMPLE, add_special=False, parse_special=False)


class MistralPrompt:
    def __init__(self, tokenizer: Any, source: str):
        self.tokenizer = tokenizer
        self.source = source  # which tokenizer file (for logs and cards)

    @classmethod
    def detect(cls, runner: Runner) -> "MistralPrompt | None":
        names = TOKENIZER_FILES.get(runner.n_vocab, ())
        data = _data_dir() if names else None  # mistral-common is imported only for a candidate
        if data is None:
            return None
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

        for name in names:
            tokenizer = MistralTokenizer.from_file(str(data / name))
            if matches(tokenizer, runner):
                log.info("prompts in Mistral's format (mistral-common, %s)", name)
                return cls(tokenizer, name)
        return None

    def encode(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, prefix: str) -> list[int]:
        """The prompt tokens of a conversation, with the tools offered and an assistant
        prefix to continue (or "")."""
        from mistral_common.exceptions import MistralCommonException
        from mistral_common.protocol.instruct.request import ChatCompletionRequest

        converted = [_message(m) for m in messages]
        if prefix:
            from mistral_common.protocol.instruct.messages import AssistantMessage

            converted.append(AssistantMessage(content=prefix, prefix=True))
        try:
            request = ChatCompletionRequest(messages=converted, tools=[_tool(t) for t in tools or []] or None)
            return list(self.tokenizer.encode_chat_completion(request).tokens)
        except (MistralCommonException, ValueError) as exc:
            raise InvalidRequest(f"The conversation cannot be written in Mistral's format: {exc}",
                                 param="messages") from exc


def _message(message: dict[str, Any]) -> Any:
    from mistral_common.protocol.instruct.messages import (
        AssistantMessage,
        SystemMessage,
        ToolMessage,
        UserMessage,
    )
    from mistral_common.protocol.instruct.tool_calls import FunctionCall, ToolCall

    role, content = message["role"], message.get("content") or ""
    if role == "system":
        return SystemMessage(content=content)
    if role == "user":
        return UserMessage(content=content)
    if role == "tool":
        return ToolMessage(content=content, tool_call_id=message.get("tool_call_id"), name=message.get("name"))
    calls = [ToolCall(id=c["id"], function=FunctionCall(name=c["function"]["name"],
                                                         arguments=c["function"]["arguments"]))
             for c in message.get("tool_calls") or []]
    return AssistantMessage(content=content or None, tool_calls=calls or None)


def _tool(tool: dict[str, Any]) -> Any:
    from mistral_common.protocol.instruct.tool_calls import Function, Tool

    function = tool["function"]
    return Tool(function=Function(name=function["name"], description=function.get("description") or "",
                                  parameters=function.get("parameters") or {}))
