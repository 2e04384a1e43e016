"""A chat request's prompt, written the way its model expects it.

The messages are checked (Mistral's order rules, with the API's error codes) and turned
into one conversation: role, content, and for assistant messages their tool_calls and for
tool messages the call they answer. Then, by the model's tool style (ChatModel.tool_style):
Mistral's own format (mistral-common) turns it into tokens; a chat template that knows tools
renders it with the tools offered; any other template gets the calls in the history, and the
tools, in Alizé's generic convention (services/tools.py)."""

import json
import re
from typing import Any

from alize.engine.chat_model import ChatModel
from alize.errors import FunctionCallError, InvalidRequest, MessageOrderError, Unsupported
from alize.protocol.chat import AssistantMessage, ChatCompletionRequest, SystemMessage, ToolMessage, UserMessage
from alize.services.tools import ToolPlan, new_call_id

# The system prompt Mistral's API prepends when safe_prompt is true.
SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. "
    "Avoid harmful, unethical, prejudiced, or negative content. "
    "Ensure replies promote fairness and positivity."
)
CALL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


def one_or_many(value: str | list[str], param: str, most: int, noun: str, empty: str) -> list[str]:
    """A request's text field that takes one string or a list: the list, refused (400,
    naming the field) when empty or longer than `most`."""
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise InvalidRequest(empty, param=param)
    if len(texts) > most:
        raise InvalidRequest(f"At most {most} {noun} per request", param=param)
    return texts


MAX_PROMPTS = 16  # per completion request


def prompts_of(request: Any) -> list[str]:
    """A completion request's prompts (one, or a list of at most MAX_PROMPTS)."""
    return one_or_many(request.prompt, "prompt", MAX_PROMPTS, "prompts", "prompt must not be an empty list")


Message = dict[str, Any]


# A chunk's "type" may be left out (each chunk schema defaults it): the field it requires tells which.
KIND_BY_FIELD = {"text": "text", "thinking": "thinking", "image_url": "image_url", "document_url": "document_url",
                 "reference_ids": "reference", "file_id": "file", "input_audio": "input_audio"}


def _untyped_kind(chunk: dict[str, Any]) -> str | None:
    return next((kind for field, kind in KIND_BY_FIELD.items() if field in chunk), None)


def content_text(content: str | list[dict[str, Any]] | None, where: str, in_thinking: bool = False,
                 param: str = "messages") -> str:
    """The text of a message's content; non-text chunks need a capability we lack."""
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for chunk in content:
        if not isinstance(chunk, dict):
            raise InvalidRequest(f"{where}: each content chunk must be an object with a 'type'", param=param)
        kind = chunk.get("type", _untyped_kind(chunk))
        if kind == "text" and isinstance(chunk.get("text"), str):
            parts.append(chunk["text"])
        elif kind == "thinking" and not in_thinking and isinstance(chunk.get("thinking"), list):
            parts.append(content_text(chunk["thinking"], where, in_thinking=True, param=param))
        elif kind == "thinking":
            raise InvalidRequest(f"{where}: a thinking chunk needs a list of text chunks in 'thinking'",
                                 param=param)
        elif kind == "text":
            raise InvalidRequest(f"{where}: a text chunk needs a string 'text'", param=param)
        elif kind is None:
            raise InvalidRequest(f"{where}: a content chunk needs a 'type' (or the field of its type, such as "
                                 "'text')", param=param)
        else:
            raise Unsupported(f"{where}: content chunks of type {kind!r} are not supported by "
                              "this model (text only)", param=param)
    return "".join(parts)


def check_order(request: ChatCompletionRequest) -> None:
    for before, after in zip(request.messages, request.messages[1:], strict=False):
        if isinstance(before, ToolMessage) and isinstance(after, UserMessage):
            raise MessageOrderError("Unexpected role 'user' after role 'tool'", param="messages")
    for i, message in enumerate(request.messages):
        calls = message.tool_calls or [] if isinstance(message, AssistantMessage) else []
        ids = [c.id for c in calls] + ([message.tool_call_id] if isinstance(message, ToolMessage) else [])
        for call_id in ids:
            if call_id is not None and call_id != "null" and not CALL_ID.match(call_id):
                raise FunctionCallError(f"messages[{i}]: tool call id {call_id!r} is not 9 letters or digits",
                                        param="messages")
    last = request.messages[-1]
    if isinstance(last, UserMessage | ToolMessage):
        return
    if isinstance(last, AssistantMessage) and last.prefix:
        return
    raise MessageOrderError(
        f"Expected last role User or Tool (or Assistant with prefix True) for serving but got {last.role}",
        param="messages")


def _arguments(call: Any) -> Any:
    arguments = call.function.arguments
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            raise InvalidRequest(f"tool call {call.function.name!r}: arguments are not valid JSON",
                                 param="messages") from None
    return arguments


def conversation(request: ChatCompletionRequest) -> tuple[list[Message], str]:
    """The checked messages, and the assistant prefix the model must continue (or '').
    Calls without a usable id (the SDK sends "null") get one, and the tool messages that
    answer them without naming them are matched to them in order."""
    check_order(request)
    messages: list[Message] = []
    prefix = ""
    unanswered: list[str] = []
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        if isinstance(message, SystemMessage | UserMessage):
            messages.append({"role": message.role, "content": content_text(message.content, where)})
        elif isinstance(message, ToolMessage):
            call_id = message.tool_call_id if message.tool_call_id and CALL_ID.match(message.tool_call_id) else None
            call_id = call_id or (unanswered[0] if unanswered else new_call_id())
            if call_id in unanswered:
                unanswered.remove(call_id)
            messages.append({"role": "tool", "content": content_text(message.content, where),
                             "tool_call_id": call_id, "name": message.name})
        elif message.prefix:
            prefix = content_text(message.content, where)
        else:
            calls = [{"id": c.id if c.id and CALL_ID.match(c.id) else new_call_id(), "type": "function",
                      "function": {"name": c.function.name, "arguments": _arguments(c)}}
                     for c in message.tool_calls or []]
            unanswered = [c["id"] for c in calls]
            entry: Message = {"role": "assistant", "content": content_text(message.content, where)}
            if calls:
                entry["tool_calls"] = calls
            messages.append(entry)
    if request.safe_prompt:
        add_system(messages, SAFE_PROMPT, first=True)
    return messages, prefix


def add_system(messages: list[Message], text: str, first: bool = False) -> None:
    """Adds an instruction to the system message (one is created if there is none), after
    what it says, or before it with `first`."""
    if messages and messages[0]["role"] == "system":
        parts = (text, messages[0]["content"]) if first else (messages[0]["content"], text)
        messages[0]["content"] = "\n\n".join(p for p in parts if p).strip()
    else:
        messages.insert(0, {"role": "system", "content": text})


def _generic(messages: list[Message]) -> list[Message]:
    """The conversation for a template that knows no tools: calls written into the
    assistant's text in the generic convention, tool results as plain tool messages."""
    out = []
    for message in messages:
        if message["role"] == "assistant" and message.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                     for c in message["tool_calls"]]
            text = json.dumps(calls, ensure_ascii=False)
            message = {"role": "assistant", "content": f"{message['content']}\n{text}" if message["content"] else text}
        elif message["role"] == "tool":
            message = {"role": "tool", "content": message["content"]}
        out.append(message)
    return out


def prompt_tokens(model: ChatModel, messages: list[Message], plan: ToolPlan | None, prefix: str) -> list[int]:
    tools = list(plan.tools) if plan is not None and plan.style != "generic" else None
    if model.mistral is not None:
        return model.mistral.encode(messages, tools, prefix)
    if model.tool_style == "generic":
        messages = _generic(messages)
    return model.tokenize_prompt(model.template.render(messages, add_generation_prompt=True, tools=tools) + prefix)
