"""Renders chat messages into a prompt with the model's own Jinja chat template.

GGUF files carry the template their authors trained with (tokenizer.chat_template);
it is rendered in a sandbox, as Hugging Face's tokenizers do."""

import json
import logging
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from alize.errors import InvalidRequest

log = logging.getLogger(__name__)

# Used when a GGUF file carries no template: ChatML, the most common format.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Hugging Face's tojson: keys in their order (Jinja's own sorts them), no escaping."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise InvalidRequest(f"The model's chat template rejected the messages: {message}")


# How a template that knows tools has the model write its calls, told by what it writes
# for a call in the history: Hermes/Qwen (<tool_call>{...}</tool_call>) or Mistral
# ([TOOL_CALLS][{...}]). A template with another convention is not given the tools.
TOOL_STYLES = {"<tool_call>": "hermes", "[TOOL_CALLS]": "mistral"}


class ChatTemplate:
    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = ""):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        env.filters["tojson"] = _tojson
        self.source = source or CHATML_TEMPLATE
        try:
            parsed = env.parse(self.source)  # parsed once: compiled, and read for the variables it uses
        except jinja2.TemplateSyntaxError as exc:
            log.warning("the chat template does not parse (%s); using ChatML", exc)
            parsed = env.parse(CHATML_TEMPLATE)
        self._template = env.from_string(parsed)
        variables = meta.find_undeclared_variables(parsed)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.tool_style = self._tool_style(variables)

    def _tool_style(self, variables: set[str]) -> str | None:
        """The tool-call style of a template that presents tools itself; None: it does not."""
        if "tools" not in variables:
            return None
        return next((style for marker, style in TOOL_STYLES.items() if marker in self.source), None)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                tools=tools,
            )
        except jinja2.TemplateError as exc:
            raise InvalidRequest(f"Could not render the chat template: {exc}") from exc
