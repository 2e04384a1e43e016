"""Metering: every model request becomes one usage record, whatever way it ends.

The HTTP edge opens a Call per request; the use case admits it (model permission and
limits, against its worst case), reports progress as tokens arrive, and records it as a
success before the client sees the end of the answer. Whatever has not been recorded
when the request ends (an error, a client gone mid-stream) is recorded by the edge with
its status and the tokens generated so far. Records are keyed by the response id, so
nothing is counted twice."""

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from alize.engine.params import INTERACTIVE
from alize.errors import Forbidden
from alize.registry import ModelEntry
from alize.services.limits import Limiter, Reservation
from alize.services.models import may_use
from alize.services.telemetry import Telemetry
from alize.services.tracing import Tracing
from alize.store import inflight
from alize.store import usage as usage_store
from alize.store.accounts import KeyInfo
from alize.store.db import Database

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # the answer was cut before its end: the client went away, or its server died


def is_billed(status: int) -> bool:
    """A success, or an answer cut short, is billed; a failed request costs nothing."""
    return status < 400 or status == CLIENT_CLOSED
LEASE_S = 30  # a stream's progress not renewed for this long belongs to a dead server
PROGRESS_S = 1  # how often streams' progress is written (a crash loses at most this much)
RECLAIM_EVERY = 5  # progress writes between two looks for dead servers
GAPS_AT_ONCE = 32  # inter-token gaps a stream notes before it puts them in the histogram
# The metered paths and the endpoint name their usage records carry (batch lines too).
ENDPOINT_NAMES = {
    "/v1/chat/completions": "chat.completions",
    "/v1/fim/completions": "fim.completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/agents/completions": "agents.completions",
    "/v1/moderations": "moderations",
    "/v1/chat/moderations": "chat.moderations",
    "/v1/classifications": "classifications",
    "/v1/chat/classifications": "chat.classifications",
}
# Metered paths with an id in them: a conversation's start, append and restart.
ENDPOINT_PATTERNS = ((re.compile(r"^/v1/conversations(?:/[^/]+(?:/restart)?)?$"), "conversations"),)


def endpoint_of(path: str) -> str | None:
    """The endpoint name of a metered path (a route's template matches too); None: not metered."""
    if path in ENDPOINT_NAMES:
        return ENDPOINT_NAMES[path]
    return next((name for pattern, name in ENDPOINT_PATTERNS if pattern.match(path)), None)


def nano_per_token(eur_per_1k_tokens: float) -> int:
    """Euros per 1,000 tokens as exact nano-euros per token (0.15 -> 150000)."""
    return int(Decimal(str(eur_per_1k_tokens)) * 1_000_000)


def cost_nano(entry: ModelEntry, prompt_tokens: int, completion_tokens: int, price_factor: Decimal = Decimal(1)) -> int:
    """Exact nano-euros; `price_factor` scales the list price (0.5: a batch line at half price)."""
    full = (prompt_tokens * nano_per_token(entry.input_eur_per_1k_tokens)
            + completion_tokens * nano_per_token(entry.output_eur_per_1k_tokens))
    return full if price_factor == 1 else int(full * price_factor)


@dataclass
class Call:
    meter: "Meter | None"
    endpoint: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    key: KeyInfo | None = None
    cache_scope: str | None = None  # whose prefix cache the request may reuse
    request_id: str | None = None  # the client's x-request-id, or the one Alizé gave the request
    priority: int = INTERACTIVE  # batch lines run behind interactive requests
    price_factor: Decimal = Decimal(1)  # batch lines are billed at a discount
    entry: ModelEntry | None = None
    prompt_tokens: int = 0
    _cached: dict[str, int] = field(default_factory=dict)  # per prompt: its first choice's reused tokens
    headers: dict[str, str] = field(default_factory=dict)
    recorded: bool = False
    delivering: bool = False  # its answer is streaming out: what it delivered is billed even if cut
    held: bool = False  # recorded by its owner (record_with), not by finish()
    _started: float = field(default_factory=time.monotonic)
    _created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _progress: dict[str, int] = field(default_factory=dict)
    _last_piece: dict[str, float] = field(default_factory=dict)  # by part: when its last piece came
    _gaps: Any = None  # the inter-token histogram of its model
    _unobserved: list[float] = field(default_factory=list)  # gaps not yet in it (observe_gaps)
    span: Any = None  # its trace span, when tracing (services/tracing.py)
    marks: dict[str, float] = field(default_factory=dict)  # when it passed each stage (monotonic), for its trace
    upstream_replica: str | None = None
    _reservation: Reservation | None = None

    @property
    def completion_tokens(self) -> int:
        return sum(self._progress.values())

    @property
    def cached_tokens(self) -> int:
        return sum(self._cached.values())

    async def admit(self, entry: ModelEntry, prompt_tokens: int, max_completion_tokens: int) -> None:
        """Checks that the key may use the model and books the worst case against its limits."""
        self.entry = entry
        self.marks["admitted_from"] = time.monotonic()
        if self.meter is None or self.key is None:
            self.prompt_tokens = prompt_tokens
            return
        allowed = self.key.models
        if not may_use(entry, allowed):
            raise Forbidden(f"This API key may not use the model {entry.id!r} (allowed: {', '.join(allowed)})",
                            param="model")
        worst = cost_nano(entry, prompt_tokens, max_completion_tokens, self.price_factor)
        self._reservation = await self.meter.limiter.reserve(self.key, prompt_tokens + max_completion_tokens, worst)
        self.headers.update(self._reservation.headers)
        self.prompt_tokens = prompt_tokens  # admitted: from here on the prompt is billed
        self.meter.live[self.id] = self
        self.marks["admitted"] = time.monotonic()

    def progress(self, part: str, completion_tokens: int, cached_tokens: int | None = None) -> None:
        """The tokens generated so far by one part (choice) of the request."""
        if completion_tokens > self._progress.get(part, 0) and (self.span is not None or (
                self.meter is not None and self.meter.telemetry is not None)):
            self._timed(part)
        self._progress[part] = completion_tokens
        if cached_tokens is not None:
            self._cached[part] = cached_tokens

    def _timed(self, part: str) -> None:
        """Time to first token (the request's first), and the gaps between a part's pieces."""
        telemetry = self.meter.telemetry if self.meter is not None else None
        now = time.monotonic()
        last = self._last_piece.get(part)
        if not self._last_piece:
            self.marks["first_piece"] = now
            if telemetry is not None:
                telemetry.ttft.labels(self.model_label).observe(now - self._started)
                self._gaps = telemetry.itl.labels(self.model_label)  # looked up once, not per token
        elif last is not None and self._gaps is not None:
            self._unobserved.append(now - last)
            if len(self._unobserved) >= GAPS_AT_ONCE:
                self.observe_gaps()
        self._last_piece[part] = self.marks["last_piece"] = now

    def observe_gaps(self) -> None:
        """Puts the gaps noted since the last time in the histogram. A stream observes them
        a few dozen at a time, and the rest when it is recorded: observed one by one, each
        token ran the histogram's code anew, evicted from the caches by the decode step
        before it (about 20 µs a token at one stream, against 7 ms for the token)."""
        if self._gaps is not None:
            for gap in self._unobserved:
                self._gaps.observe(gap)
        self._unobserved.clear()

    def queued(self, seconds: float) -> None:
        """How long the engine kept a part waiting for a slot."""
        if self.meter is not None and self.meter.telemetry is not None:
            self.meter.telemetry.queue.labels(self.model_label).observe(seconds)
        if "queued_until" not in self.marks and "admitted" in self.marks:
            self.marks["queued_until"] = self.marks["admitted"] + seconds

    def upstream(self, replica: str | None = None) -> None:
        """An upstream call began (with the replica that answers, once known) or ended."""
        if replica is None:
            self.marks["upstream_until"] = time.monotonic()
        else:
            self.upstream_replica = replica

    @property
    def model_label(self) -> str:
        """The model as metrics name it: its canonical id (aliases may be patterns clients fill)."""
        return self.entry.canonical_id if self.entry is not None else "none"

    def trace_headers(self) -> dict[str, str]:
        """The request's id (and trace) for a call it makes to another server (an upstream
        engine), whose logs, usage records (another Alizé) and traces then show it."""
        self.marks.setdefault("upstream_from", time.monotonic())
        headers = {"x-request-id": self.request_id} if self.request_id else {}
        if self.span is not None and self.meter is not None and self.meter.tracing is not None:
            headers |= self.meter.tracing.headers(self.span)
        return headers

    def settle_usage(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> None:
        """The request's figures as another engine counted them (an upstream's usage), in
        place of what was counted so far."""
        self.prompt_tokens = prompt_tokens
        self._progress = {"all": completion_tokens}
        self._cached = {"all": cached_tokens}

    async def succeed(self) -> None:
        await self.finish(200)

    async def finish(self, status: int) -> None:
        """Records the call once (later calls do nothing) and settles its reservation.
        A held call is left to its owner, who records it with what it produced."""
        if self.recorded or self.held or self.meter is None or self.key is None:
            return
        self.recorded = True
        await self.meter.record(self, status)

    async def record_with(self, status: int, write: Callable[[usage_store.Usage], bool]) -> bool:
        """Records the call through `write`, which stores the usage row together with what
        belongs with it (one transaction) and says whether it stored it; then settles."""
        assert self.meter is not None and self.key is not None
        self.recorded = True
        return await self.meter.record(self, status, write)

    async def abandon(self) -> None:
        """Records nothing and releases the reservation: the work was thrown away."""
        self.recorded = True
        self.observe_gaps()
        if self._reservation is not None and self.meter is not None:
            self.meter.live.pop(self.id, None)
            await self.meter.limiter.settle(self._reservation, 0, 0)

    def usage(self, status: int) -> usage_store.Usage:
        assert self.key is not None
        entry = self.entry
        billed = is_billed(status)
        prompt = self.prompt_tokens if billed else 0
        completion = self.completion_tokens if billed else 0
        return usage_store.Usage(
            id=self.id, created_at=self._created_at, workspace_id=self.key.workspace.id, key_id=self.key.id,
            model=entry.id if entry else None, endpoint=self.endpoint, status=status,
            prompt_tokens=prompt, completion_tokens=completion, cached_tokens=self.cached_tokens if billed else 0,
            cost_nano=cost_nano(entry, prompt, completion, self.price_factor) if entry else 0,
            latency_ms=int((time.monotonic() - self._started) * 1000), request_id=self.request_id,
            backend=self.upstream_replica or (entry.backend.name if entry and not entry.is_upstream else None))


class Meter:
    def __init__(self, db: Database, limiter: Limiter, holder: str | None = None, telemetry: Telemetry | None = None,
                 tracing: Tracing | None = None):
        self.db = db
        self.limiter = limiter
        self.telemetry = telemetry
        self.tracing = tracing
        self.holder = holder or uuid.uuid4().hex  # this server's lease on its streams' progress
        self.live: dict[str, Call] = {}  # admitted and not yet recorded

    def open(self, endpoint: str, key: KeyInfo, cache_scope: str | None, request_id: str | None = None,
             traceparent: str | None = None) -> Call:
        call = Call(self, endpoint, key=key, cache_scope=cache_scope, request_id=request_id)
        if self.tracing is not None:
            call.span = self.tracing.start(endpoint, traceparent)
        return call

    async def tick(self, reclaim: bool = True) -> int:
        """Every second: this server's streams' progress, under its lease. With reclaim
        (every few seconds, and at start-up): the streams of servers whose lease lapsed
        (killed) billed for what they delivered, and added to the limit counters; the
        counters' lapsed reservations given back. Returns how many streams were billed so."""
        now = datetime.now(UTC)
        progress = [c.usage(CLIENT_CLOSED) for c in self.live.values() if c.delivering and not c.recorded]
        await asyncio.to_thread(inflight.hold, self.db, self.holder, now + timedelta(seconds=LEASE_S), progress)
        if not reclaim:
            return 0
        billed = await asyncio.to_thread(inflight.reclaim, self.db, now, CLIENT_CLOSED)
        for usage in billed:
            log.warning("billed %d tokens delivered by stream %s before its server stopped",
                        usage.completion_tokens, usage.id)
            await self.limiter.add(usage.key_id, usage.workspace_id, usage.created_at,
                                   usage.prompt_tokens + usage.completion_tokens, usage.cost_nano)
        await self.limiter.counters.renew()
        return len(billed)

    async def record(self, call: Call, status: int,
                     write: Callable[[usage_store.Usage], bool] | None = None) -> bool:
        self.live.pop(call.id, None)
        call.observe_gaps()
        row = call.usage(status)
        written = False
        try:
            written = await asyncio.to_thread(write or partial(usage_store.record, self.db), row)
        finally:
            if call._reservation is not None:
                used = (row.prompt_tokens + row.completion_tokens, row.cost_nano) if written else (0, 0)
                await self.limiter.settle(call._reservation, *used)
        if written and self.telemetry is not None and call.key is not None:
            self.telemetry.request(call.model_label, row.endpoint, status, row.latency_ms / 1000, is_billed(status),
                                   row.prompt_tokens, row.completion_tokens, row.cost_nano / 1e9,
                                   call.key.workspace.name)
        if call.span is not None and self.tracing is not None:
            self.tracing.finish(call.span, call.marks, {
                "gen_ai.request.model": call.entry.id if call.entry else None,
                "gen_ai.response.model": call.entry.canonical_id if call.entry else None,
                "gen_ai.response.id": call.id, "gen_ai.usage.input_tokens": row.prompt_tokens,
                "gen_ai.usage.output_tokens": row.completion_tokens, "http.response.status_code": status,
                "alize.request_id": call.request_id, "alize.workspace": call.key.workspace.name if call.key else None,
                "alize.cost_eur": row.cost_nano / 1e9, "alize.upstream.replica": call.upstream_replica,
            }, failed=status >= 500)
            call.span = None
        return written
