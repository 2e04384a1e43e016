"""Guardrails: before a chat completion (or an agent's, or a conversation's turn) reaches its
model, each guardrail whose action is `block` has the registry's moderation model screen
the conversation (services/moderations.py, metered as a `chat.moderations` request of the
caller's key), and a category scoring over its threshold blocks the request with a 403 that
names it. As on La Plateforme, guardrails look at the input only and only block.

Thresholds: a category's `custom_category_thresholds` value, or 0.5 (the built-in moderation
model's scores are probabilities; a chat model's are its decisions, 1.0 or 0.0, where 0.5 means
"flagged"); with `ignore_other_categories`
only the categories given are looked at. moderation_llm_v2's categories are read off the
nine the moderation model scores (`dangerous` and `criminal` both from
dangerous_and_criminal_content); `jailbreaking` has no counterpart, so a threshold for it is
refused by name. A moderation model that fails blocks the request when `block_on_error` is
set, and is logged and let through otherwise."""

import logging
from typing import Any

from pydantic import ValidationError

from alize.errors import AlizeError, Forbidden, InvalidRequest
from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.guardrails import GuardrailConfig, ModerationGuard
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.moderations import CATEGORIES, ModerationService
from alize.services.prompts import content_text

log = logging.getLogger(__name__)

ENDPOINT = "chat.moderations"
DEFAULT_MODEL = "mistral-moderation-latest"
DEFAULT_THRESHOLD = 0.5
# each version's categories, as the one of the moderation model's nine it is read from
SCORED = {
    "moderation_llm_v1": {name: name for name in CATEGORIES},
    "moderation_llm_v2": {**{name: name for name in CATEGORIES if name != "dangerous_and_criminal_content"},
                          "dangerous": "dangerous_and_criminal_content",
                          "criminal": "dangerous_and_criminal_content", "jailbreaking": None},
}


def parse_guardrails(given: list[Any] | None, hub: ModelHub) -> list[GuardrailConfig]:
    """Guardrails as sent (an agent's or a conversation's, stored as JSON), checked: a 400
    (or the moderation model's 404) that names what this server cannot honour."""
    out = []
    for i, raw in enumerate(given or []):
        try:
            config = raw if isinstance(raw, GuardrailConfig) else GuardrailConfig.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(f"guardrails[{i}].{where}: {first['msg']}", param="guardrails") from exc
        for version, guard in _guards(config):
            _check(f"guardrails[{i}].{version}", version, guard, hub)
        out.append(config)
    return out


def _guards(config: GuardrailConfig) -> list[tuple[str, ModerationGuard]]:
    return [(version, guard) for version, guard in (("moderation_llm_v1", config.moderation_llm_v1),
                                                    ("moderation_llm_v2", config.moderation_llm_v2))
            if guard is not None]


def _check(where: str, version: str, guard: ModerationGuard, hub: ModelHub) -> None:
    known = SCORED[version]
    for name, threshold in (guard.custom_category_thresholds or {}).items():
        if name not in known:
            raise InvalidRequest(f"{where}.custom_category_thresholds: no category {name!r} (one of "
                                 f"{', '.join(known)})", param="guardrails")
        if threshold is not None and known[name] is None:
            raise InvalidRequest(f"{where}.custom_category_thresholds: this server's moderation model does not "
                                 f"score {name}", param="guardrails")
        if threshold is not None and not 0 <= threshold <= 1:
            raise InvalidRequest(f"{where}.custom_category_thresholds.{name} must be between 0 and 1",
                                 param="guardrails")
    hub.capable(guard.model_name or DEFAULT_MODEL, "moderation")


def thresholds(version: str, guard: ModerationGuard) -> list[tuple[str, str, float]]:
    """The categories a guard looks at: each one's name, the moderation model's category it
    is read from, and the score over which it blocks."""
    custom = {k: v for k, v in (guard.custom_category_thresholds or {}).items() if v is not None}
    names = list(custom) if guard.ignore_other_categories else list(SCORED[version])
    return [(name, source, custom.get(name, DEFAULT_THRESHOLD)) for name in names
            if (source := SCORED[version][name]) is not None]


def screened_text(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as the moderation model reads it: each message's role and text."""
    out = []
    for i, message in enumerate(request.messages):
        content = getattr(message, "content", None)
        if content:
            out.append({"role": message.role, "content": content_text(content, f"messages[{i}]")})
    return out


class GuardrailService:
    def __init__(self, hub: ModelHub, moderations: ModerationService):
        self.hub = hub
        self.moderations = moderations

    async def check(self, request: ChatCompletionRequest, call: Call) -> None:
        """Lets the request through, or raises the 403 of the first guardrail it crosses. The
        conversation is screened once per moderation model, however many guards read it."""
        screened: dict[str, dict[str, float] | AlizeError] = {}
        for i, config in enumerate(parse_guardrails(request.guardrails, self.hub)):
            for version, guard in _guards(config):
                if guard.action != "block":
                    continue  # guardrails only block: a check without that action changes nothing
                model = guard.model_name or DEFAULT_MODEL
                if model not in screened:
                    screened[model] = await self._screen(model, request, call)
                scores = _scores(screened[model], config.block_on_error, f"guardrails[{i}]")
                if scores is None:
                    continue
                crossed = [name for name, source, limit in thresholds(version, guard) if scores[source] > limit]
                if crossed:
                    raise Forbidden(f"The request was blocked by guardrails[{i}].{version}: its input scores over "
                                    f"the threshold for {', '.join(crossed)}", param="guardrails")

    async def _screen(self, model: str, request: ChatCompletionRequest,
                      call: Call) -> dict[str, float] | AlizeError:
        """The moderation model's scores of the request's conversation (a call of its own),
        or the server-side error it failed with (each guard decides what that does)."""
        # the caller's prefix cache: the moderation's instructions are computed once per key
        screen = call.meter.open(ENDPOINT, call.key, call.cache_scope, call.request_id) if call.meter and call.key \
            else Call(None, ENDPOINT, cache_scope=call.cache_scope)
        try:
            scores = await self.moderations.screen(model, screened_text(request), screen)
        except AlizeError as exc:
            await screen.finish(exc.status_code)
            if exc.status_code < 500:
                raise  # the caller's own limits, or its input: told as they are
            return exc
        except BaseException:
            await screen.finish(500)
            raise
        await screen.succeed()
        return scores


def _scores(screened: dict[str, float] | AlizeError, block_on_error: bool, where: str) -> dict[str, float] | None:
    """A guard's scores to read; None where the moderation failed and the guard lets the
    request through then (a 403 with block_on_error)."""
    if not isinstance(screened, AlizeError):
        return screened
    if block_on_error:
        raise Forbidden(f"The request was blocked: {where}'s moderation failed ({screened.message}) and "
                        "block_on_error is set", param="guardrails") from screened
    log.warning("%s: moderation failed (%s); the request goes on (block_on_error is not set)", where,
                screened.message)
    return None
