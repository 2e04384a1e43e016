"""Moderation and classification. The built-in moderation model is a classifier over
sentence embeddings (registry `moderation_format = "embeddings"`, services/
embedding_moderation.py): its scores are probabilities. Any chat model can classify too: each
text (or conversation) is shown with the categories to decide, and a grammar makes the model
answer one JSON object: for moderation a boolean for each of Mistral's nine categories, for
an operator's classifier (a registry entry with `classes`) one label of each target; a score
is then its decision, 1.0 or 0.0, and a small general model is a weak classifier (docs/api.md).
A Llama Guard model (registry `moderation_format = "llama-guard"`) gets the conversation as it
is and answers in its own format (services/llama_guard.py). All the texts of a request run
together as one generation (or one batch of embeddings), metered as one request."""

import asyncio
import json
from typing import Any

from alize.errors import ContextOverflow, InvalidRequest
from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.moderations import (
    ChatClassificationRequest,
    ChatModerationRequest,
    ClassificationRequest,
    ModerationRequest,
)
from alize.services import llama_guard
from alize.services.backend import collect
from alize.services.chat import ChatService
from alize.services.embedding_moderation import EmbeddingModerator
from alize.services.generation import LocalGeneration
from alize.services.metering import Call
from alize.services.prompts import content_text

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
MAX_EMBEDDED_TOKENS = 8192  # an input's tokens, in all its pieces, for the embedding classifier (as Mistral's 8k)


class ModerationService:
    def __init__(self, chat: ChatService):
        self.chat = chat
        self.embedded = EmbeddingModerator(list(CATEGORIES))

    async def moderate(self, request: ModerationRequest, call: Call) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else request.input
        return await self._moderation(request.model, [[{"role": "user", "content": t}] for t in texts], call)

    async def moderate_chat(self, request: ChatModerationRequest, call: Call) -> dict[str, Any]:
        given: list[Any] = request.input
        conversations = given if isinstance(given[0], list) else [given]
        return await self._moderation(request.model, [_conversation(c, i) for i, c in enumerate(conversations)],
                                      call)

    async def screen(self, model_id: str, messages: list[dict[str, str]], call: Call) -> dict[str, float]:
        """One conversation's category scores: a guardrail's check (services/guardrails.py)."""
        scores: dict[str, float] = (await self._moderation(model_id, [messages], call))["results"][0]["category_scores"]
        return scores

    async def classify(self, request: ClassificationRequest, call: Call) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else request.input
        return await self._classification(request.model, texts, call)

    async def classify_chat(self, request: ChatClassificationRequest, call: Call) -> dict[str, Any]:
        given = request.input if isinstance(request.input, list) else [request.input]
        texts = [_transcript(_conversation(c.messages, i)) for i, c in enumerate(given)]
        return await self._classification(request.model, texts, call)

    async def _moderation(self, model_id: str, conversations: list[list[dict[str, str]]],
                          call: Call) -> dict[str, Any]:
        """Each conversation's flags: from a Llama Guard model's answer, or from a chat
        model's JSON decision on the conversation as a transcript."""
        form = self.chat.hub.capable(model_id, "moderation").moderation_format
        if form == "embeddings":
            return await self._by_embeddings(model_id, conversations, call)
        if form == "llama-guard":
            requests = [_plain(model_id, [m for m in c if m["role"] in ("user", "assistant")]) for c in conversations]
            gen_id, model, answers = await self._generate(requests, call, "moderation", llama_guard.GRAMMAR)
            flagged = [llama_guard.read(a) for a in answers]
        else:
            requests = [_request(model_id, _transcript(c), INSTRUCTIONS, SCHEMA) for c in conversations]
            gen_id, model, answers = await self._generate(requests, call, "moderation")
            flagged = [{name for name in CATEGORIES if _decision(a).get(name) is True} for a in answers]
        results = [{"categories": {name: name in flags for name in CATEGORIES},
                    "category_scores": {name: 1.0 if name in flags else 0.0 for name in CATEGORIES}}
                   for flags in flagged]
        return {"id": gen_id, "model": model, "results": results}

    async def _by_embeddings(self, model_id: str, conversations: list[list[dict[str, str]]],
                             call: Call) -> dict[str, Any]:
        """Each conversation's scores from the embedding classifier: the highest over its
        messages (services/embedding_moderation.py), metered as the tokens embedded."""
        if len(conversations) > MAX_INPUTS:
            raise InvalidRequest(f"at most {MAX_INPUTS} inputs a request", param="input")
        entry, embedder = self.chat.hub.embedder(model_id)
        texts = [[m["content"] for m in c] for c in conversations]
        tokens = await asyncio.to_thread(self.embedded.tokens, embedder, texts)
        for i, one in enumerate(tokens):
            if (count := sum(map(len, one))) > MAX_EMBEDDED_TOKENS:
                raise ContextOverflow(f"Input {i} has {count} tokens, more than the {MAX_EMBEDDED_TOKENS} that "
                                      f"{entry.id} reads (its context)", param="input")
        await call.admit(entry, sum(len(piece) for one in tokens for piece in one), 0)
        scores = await self.embedded.scores(embedder, tokens)
        results = [{"categories": {name: s[name] > 0.5 for name in CATEGORIES}, "category_scores": s}
                   for s in scores]
        return {"id": call.id, "model": entry.id, "results": results}

    async def _classification(self, model_id: str, texts: list[str], call: Call) -> dict[str, Any]:
        """One label of each of the classifier's targets per text, as scores by label."""
        classes = self.chat.hub.capable(model_id, "classification").classes
        schema = {"type": "object", "properties": {t: {"enum": labels} for t, labels in classes.items()},
                  "required": list(classes), "additionalProperties": False}
        instructions = ("You classify text. For each target, answer the one label that fits the text best.\n"
                        "Targets and their labels:\n"
                        + "\n".join(f"- {t}: {', '.join(labels)}" for t, labels in classes.items()))
        requests = [_request(model_id, text, instructions, schema) for text in texts]
        gen_id, model, answers = await self._generate(requests, call, "classification")
        results = [{t: {"scores": {label: 1.0 if _decision(a).get(t) == label else 0.0 for label in labels}}
                    for t, labels in classes.items()} for a in answers]
        return {"id": gen_id, "model": model, "results": results}

    async def _generate(self, requests: list[ChatCompletionRequest], call: Call, capability: str,
                        grammar: str | None = None) -> tuple[str, str, list[str]]:
        """The model's answer to each request, in order, all run as one generation."""
        if len(requests) > MAX_INPUTS:
            raise InvalidRequest(f"at most {MAX_INPUTS} inputs a request", param="input")
        preps = [self.chat.prepare(r, call, capability=capability, grammar=grammar)[0] for r in requests]
        gen = await LocalGeneration(preps, stream=False).admit()
        ends, _ = await collect(gen)
        return gen.id, gen.model_id, [text for _, text in sorted(ends, key=lambda e: e[0].index)]


def _decision(answer: str) -> dict[str, Any]:
    """A JSON answer as an object; empty when it was cut short by max_tokens (no decision)."""
    try:
        decided = json.loads(answer)
    except ValueError:
        return {}
    return decided if isinstance(decided, dict) else {}


def _plain(model_id: str, messages: list[dict[str, str]]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": model_id, "temperature": 0,
                                                 "max_tokens": llama_guard.MAX_TOKENS,
                                                 "messages": messages or [{"role": "user", "content": ""}]})


def _request(model_id: str, text: str, instructions: str, schema: dict[str, Any]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({
        "model": model_id, "temperature": 0, "max_tokens": 200,
        "messages": [{"role": "system", "content": instructions},
                     {"role": "user", "content": f"Text to classify:\n\"\"\"\n{text}\n\"\"\""}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "decision", "schema": schema,
                                                                   "strict": True}}})


def _conversation(messages: list[Any], index: int) -> list[dict[str, str]]:
    """A conversation's messages as role and text, each checked."""
    out = []
    for j, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(
                content, str | list):
            raise InvalidRequest(f"input[{index}][{j}] must be a message with a role and text content", param="input")
        out.append({"role": message["role"], "content": content_text(content, f"input[{index}][{j}]", param="input")})
    return out


def _transcript(messages: list[dict[str, str]]) -> str:
    """A conversation as text, one `role: content` line per message."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
