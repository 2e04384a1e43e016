"""Moderation with a chat model as the classifier: each text (or conversation) is shown with
Mistral's nine categories, and a grammar makes the model answer one JSON object with a
boolean for each. A small general model is a weak moderator: a score is its decision, 1.0 or
0.0, not a calibrated probability (docs/api.md). All the texts of a request run together as
one generation, metered as one request."""

import json
from typing import Any

from alize.errors import InvalidRequest
from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.moderations import ChatModerationRequest, ModerationRequest
from alize.services.backend import collect
from alize.services.chat import ChatService
from alize.services.generation import LocalGeneration
from alize.services.metering import Call

CATEGORIES = {
    "sexual": "sexually explicit content",
    "hate_and_discrimination": "hate or discrimination against people for who they are",
    "violence_and_threats": "violence, or threats of it",
    "dangerous_and_criminal_content": "help with dangerous or criminal acts",
    "selfharm": "self-harm or suicide",
    "health": "medical advice or health matters",
    "financial": "financial advice",
    "law": "legal advice",
    "pii": "personal identifying information: names with addresses, phone numbers, ids",
}
SCHEMA = {"type": "object", "properties": {name: {"type": "boolean"} for name in CATEGORIES},
          "required": list(CATEGORIES), "additionalProperties": False}
INSTRUCTIONS = ("You classify text for content moderation. For each category, answer true if the text "
                "contains it, false otherwise.\nCategories:\n"
                + "\n".join(f"- {name}: {meaning}" for name, meaning in CATEGORIES.items()))
MAX_INPUTS = 64


class ModerationService:
    def __init__(self, chat: ChatService):
        self.chat = chat

    async def moderate(self, request: ModerationRequest, call: Call) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else request.input
        return await self._run(request.model, texts, call)

    async def moderate_chat(self, request: ChatModerationRequest, call: Call) -> dict[str, Any]:
        given: list[Any] = request.input
        conversations = given if isinstance(given[0], list) else [given]
        texts = [_transcript(c, i) for i, c in enumerate(conversations)]
        return await self._run(request.model, texts, call)

    async def _run(self, model_id: str, texts: list[str], call: Call) -> dict[str, Any]:
        if len(texts) > MAX_INPUTS:
            raise InvalidRequest(f"at most {MAX_INPUTS} inputs a request", param="input")
        preps = [self.chat.prepare(_request(model_id, text), call, capability="moderation")[0] for text in texts]
        gen = await LocalGeneration(preps, stream=False).admit()
        ends, _ = await collect(gen)
        results = []
        for _, text in sorted(ends, key=lambda e: e[0].index):
            try:
                decided = json.loads(text)
            except ValueError:  # cut by max_tokens: no decision is a flag nowhere
                decided = {}
            categories = {name: decided.get(name) is True for name in CATEGORIES}
            results.append({"categories": categories,
                            "category_scores": {name: 1.0 if flag else 0.0 for name, flag in categories.items()}})
        return {"id": gen.id, "model": gen.model_id, "results": results}


def _request(model_id: str, text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({
        "model": model_id, "temperature": 0, "max_tokens": 200,
        "messages": [{"role": "system", "content": INSTRUCTIONS},
                     {"role": "user", "content": f"Text to classify:\n\"\"\"\n{text}\n\"\"\""}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "moderation", "schema": SCHEMA,
                                                                   "strict": True}}})


def _transcript(messages: list[dict[str, Any]], index: int) -> str:
    """A conversation as text, one `role: content` line per message."""
    lines = []
    for j, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(content, str):
            raise InvalidRequest(f"input[{index}][{j}] must be a message with a role and text content", param="input")
        lines.append(f"{message['role']}: {content}")
    return "\n".join(lines)
