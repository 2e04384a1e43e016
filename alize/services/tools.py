"""Function calling: tools offered in the prompt, calls forced or allowed by a grammar,
and the model's JSON turned into tool_calls.

A model is shown tools the way it was trained to see them, when Alizé knows that way:
Mistral's own format (mistral-common) for Mistral-family models, or a chat template that
presents tools itself and writes calls as Hermes/Qwen's <tool_call> blocks or Mistral's
[TOOL_CALLS]. Other models (the built-in SmolLM2) get one generic convention: the system
prompt lists the functions (name, description, parameters) and a call is a JSON array
[{"name": ..., "arguments": {...}}]. In every style the grammar guarantees that a call
names a function offered and that its arguments follow that function's parameters."""

import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from alize.engine.grammar import CALL_STYLES, tool_calls_gbnf
from alize.errors import InvalidRequest
from alize.protocol.chat import ChatCompletionRequest
from alize.services.structured import Check, check_json_schema, grammar_errors, validator_of

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    """Mistral's tool-call ids: 9 alphanumeric characters."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(9))


@dataclass(frozen=True)
class ToolPlan:
    grammar: str
    instruction: str  # for the system prompt (generic style); "" when the prompt format shows tools
    names: tuple[str, ...]
    style: str = "generic"  # engine.grammar.CALL_STYLES
    tools: tuple[dict[str, Any], ...] = ()  # the offered tools, as the prompt format takes them
    checks: tuple[tuple[str, Check], ...] = ()  # each function's arguments validator

    @property
    def opener(self) -> str:
        """How an answer that is calls begins (an answer otherwise streams as text)."""
        return CALL_STYLES[self.style][3]

    def starts_calls(self, text: str) -> bool:
        """Whether an answer is (the beginning of) tool calls rather than text."""
        return text.lstrip().startswith(self.opener)

    def arguments_valid(self, calls: list[dict[str, Any]]) -> bool:
        """Whether every call's arguments follow its function's parameters (the grammar
        enforces all but what no grammar can: multipleOf, uniqueItems...)."""
        checks = dict(self.checks)
        return all(checks[c["function"]["name"]](json.loads(c["function"]["arguments"])) for c in calls)


def functions_of(tools: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any], bool]]:
    """Each function tool's name, description, parameters and strictness, checked: a 400
    that names the tool for anything else, a bad name, a name twice or a bad schema."""
    out, seen = [], set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise InvalidRequest(f"{where}: only tools of type 'function' are supported", param="tools")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise InvalidRequest(f"{where}.function is required", param="tools")
        name = function.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidRequest(f"{where}.function.name must be 1 to 64 letters, digits, _ or -", param="tools")
        if name in seen:
            raise InvalidRequest(f"{where}: the function {name!r} is defined twice", param="tools")
        seen.add(name)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise InvalidRequest(f"{where}.function.parameters must be a JSON Schema object", param="tools")
        check_json_schema(parameters, f"{where}.function.parameters", "tools")
        description = function.get("description") or ""
        out.append((name, description if isinstance(description, str) else "", parameters,
                    function.get("strict") is True))
    return out


def _chosen(choice: str | dict[str, Any] | None, names: list[str]) -> tuple[list[str], bool] | None:
    """(functions that may be called, whether a call is forced); None: no tools."""
    if choice is None or choice == "auto":
        return names, False
    if choice == "none":
        return None
    if choice in ("any", "required"):
        return names, True
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if name not in names:
            raise InvalidRequest(f"tool_choice names the function {name!r}, which is not among the tools",
                                 param="tool_choice")
        return [name], True
    raise InvalidRequest("tool_choice must be auto, none, any, required or {type: function, function: {name}}",
                         param="tool_choice")


def plan_tools(request: ChatCompletionRequest, style: str = "generic",
               answer: tuple[dict[str, Any], bool] | None = None) -> ToolPlan | None:
    """The tools offered and the grammar of calls to them (None: no tools); `answer`: the
    response_format's schema, which an answer that is not calls must follow."""
    if not request.tools:
        if isinstance(request.tool_choice, dict) or request.tool_choice in ("any", "required"):
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        return None
    functions = functions_of(request.tools)
    chosen = _chosen(request.tool_choice, [f[0] for f in functions])
    if chosen is None:
        return None
    names, forced = chosen
    offered = [f for f in functions if f[0] in names]
    parallel = request.parallel_tool_calls is not False
    with grammar_errors("tools"):
        grammar = tool_calls_gbnf([(name, params, strict) for name, _, params, strict in offered], parallel,
                                  allow_text=not forced, style=style, answer=answer)
    tools = tuple({"type": "function", "function": {"name": n, "description": d, "parameters": p}}
                  for n, d, p, _ in offered)
    checks = tuple((n, validator_of(p)) for n, _, p, _ in offered)
    if style != "generic":
        return ToolPlan(grammar, "", tuple(names), style, tools, checks)
    listing = json.dumps([{"name": n, "description": d, "parameters": p} for n, d, p, _ in offered],
                         ensure_ascii=False)
    how = ('To call functions, answer with only a JSON array of calls, like '
           '[{"name": "function_name", "arguments": {"argument": "value"}}].')
    rule = "You must call a function." if forced else "If no function is needed, answer normally."
    return ToolPlan(grammar, f"You can call these functions:\n{listing}\n{how} {rule}", tuple(names), style, tools,
                    checks)


HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_calls(text: str, plan: ToolPlan) -> list[dict[str, Any]] | None:
    """The tool calls in a model's answer, or None when it answered with text."""
    stripped = text.strip().removeprefix("[TOOL_CALLS]").strip()
    try:
        if plan.style == "hermes":
            if not stripped.startswith("<tool_call>"):
                return None
            calls = [json.loads(body) for body in HERMES_CALL.findall(stripped)]
        elif stripped.startswith("["):
            calls = json.loads(stripped)
        else:
            return None
    except json.JSONDecodeError:
        return None  # cut short (max_tokens): left as text, with its finish reason
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or call.get("name") not in plan.names:
            return None
        out.append({"id": new_call_id(), "type": "function", "index": i,
                    "function": {"name": call["name"],
                                 "arguments": json.dumps(call.get("arguments", {}), ensure_ascii=False)}})
    return out
