"""Counters behind the rate limits, in process (one server) or in Redis (several replicas).

Both backends do the same thing atomically: check every limit of a request, and only if
all of them have room, add the request's amounts to every counter. A minute counter is a
sliding window of one-second buckets (the current second and the 60 before it, so that
no 60-second span ever holds more than the limit); a month counter is a plain total,
seeded from the usage table the first time it is needed."""

import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

WINDOW_S = 60
Window = Literal["minute", "month"]


@dataclass(frozen=True)
class Check:
    name: str  # counter name; month counters carry the month in it
    window: Window
    amount: int
    limit: int


@dataclass
class Verdict:
    ok: bool
    stamp: int = 0  # the second the amounts were booked under (to settle them later)
    used: list[int] = field(default_factory=list)  # per check, before this request
    denied: int | None = None  # index of the check that had no room
    retry_after: int = 0
    unseeded: list[int] = field(default_factory=list)  # month counters to seed first


@dataclass(frozen=True)
class Adjustment:
    name: str
    window: Window
    stamp: int
    delta: int


class Counters(Protocol):
    async def reserve(self, checks: list[Check]) -> Verdict: ...
    async def seed(self, name: str, value: int) -> None: ...
    async def adjust(self, adjustments: list[Adjustment]) -> None: ...
    async def close(self) -> None: ...


def _retry_after(buckets: list[tuple[int, int]], need: int, now: int) -> int:
    """Seconds until enough old buckets leave the window to free `need`."""
    freed = 0
    for stamp, value in sorted(buckets):
        freed += value
        if freed >= need:
            return max(1, stamp + WINDOW_S + 1 - now)
    return WINDOW_S


class MemoryCounters:
    """One process. Methods run on the event loop without awaiting, so each is atomic."""

    def __init__(self) -> None:
        self._minute: dict[str, dict[int, int]] = {}
        self._month: dict[str, int] = {}

    def _window(self, name: str, now: int) -> dict[int, int]:
        buckets = self._minute.setdefault(name, {})
        for stamp in [s for s in buckets if s < now - WINDOW_S]:
            del buckets[stamp]
        return buckets

    async def reserve(self, checks: list[Check]) -> Verdict:
        now = int(time.time())
        unseeded = [i for i, c in enumerate(checks) if c.window == "month" and c.name not in self._month]
        if unseeded:
            return Verdict(False, unseeded=unseeded)
        used = []
        for i, check in enumerate(checks):
            if check.window == "month":
                current = self._month[check.name]
            else:
                buckets = self._window(check.name, now)
                current = sum(buckets.values())
            used.append(current)
            if current + check.amount > check.limit:
                retry = 0
                if check.window == "minute":
                    need = current + check.amount - check.limit
                    retry = _retry_after(list(buckets.items()), need, now) if check.amount <= check.limit else WINDOW_S
                return Verdict(False, now, used, denied=i, retry_after=retry)
        for check in checks:
            if check.window == "month":
                self._month[check.name] += check.amount
            else:
                buckets = self._minute[check.name]
                buckets[now] = buckets.get(now, 0) + check.amount
        return Verdict(True, now, used)

    async def seed(self, name: str, value: int) -> None:
        self._month.setdefault(name, value)

    async def adjust(self, adjustments: list[Adjustment]) -> None:
        for a in adjustments:
            if a.window == "month":
                if a.name in self._month:
                    self._month[a.name] += a.delta
            elif a.stamp in self._minute.get(a.name, {}):
                self._minute[a.name][a.stamp] += a.delta

    async def close(self) -> None:
        pass


# KEYS: one counter per check. ARGV: window ('m' minute, 'M' month), amount, limit per check.
_RESERVE = """
local now = tonumber(redis.call('TIME')[1])
local n = #KEYS
local used, buckets, unseeded = {}, {}, {}
for i = 1, n do
  local window = ARGV[(i - 1) * 3 + 1]
  if window == 'M' then
    local v = redis.call('GET', KEYS[i])
    if not v then table.insert(unseeded, i - 1) else used[i] = tonumber(v) end
  else
    local h = redis.call('HGETALL', KEYS[i])
    local sum, old, live = 0, {}, {}
    for j = 1, #h, 2 do
      local s = tonumber(h[j])
      if s < now - 60 then table.insert(old, h[j])
      else sum = sum + tonumber(h[j + 1]); table.insert(live, s); table.insert(live, tonumber(h[j + 1])) end
    end
    if #old > 0 then redis.call('HDEL', KEYS[i], unpack(old)) end
    used[i], buckets[i] = sum, live
  end
end
if #unseeded > 0 then return {'seed', now, unseeded} end
for i = 1, n do
  local window = ARGV[(i - 1) * 3 + 1]
  local amount, limit = tonumber(ARGV[(i - 1) * 3 + 2]), tonumber(ARGV[(i - 1) * 3 + 3])
  if used[i] + amount > limit then
    local flat = {}
    for k = 1, n do flat[k] = used[k] or 0 end
    return {'deny', now, flat, i - 1, buckets[i] or {}}
  end
end
for i = 1, n do
  -- amounts go back as the strings they came in: Lua would print a large number as 1e+15
  local window, amount = ARGV[(i - 1) * 3 + 1], ARGV[(i - 1) * 3 + 2]
  if window == 'M' then redis.call('INCRBY', KEYS[i], amount)
  else redis.call('HINCRBY', KEYS[i], now, amount); redis.call('EXPIRE', KEYS[i], 180) end
end
local flat = {}
for k = 1, n do flat[k] = used[k] end
return {'ok', now, flat}
"""

# KEYS: counters. ARGV: window, stamp, delta per counter. Only existing counters change.
_ADJUST = """
for i = 1, #KEYS do
  local window, stamp, delta = ARGV[(i - 1) * 3 + 1], ARGV[(i - 1) * 3 + 2], ARGV[(i - 1) * 3 + 3]
  if window == 'M' then
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], delta) end
  elseif redis.call('HEXISTS', KEYS[i], stamp) == 1 then
    redis.call('HINCRBY', KEYS[i], stamp, delta)
  end
end
return 1
"""

MONTH_TTL_S = 40 * 24 * 3600


class RedisCounters:
    """Shared by every replica that names the same Redis; each operation is one Lua script."""

    def __init__(self, url: str, prefix: str = "alize:"):
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._adjust = self._redis.register_script(_ADJUST)

    def _key(self, name: str) -> str:
        return self._prefix + name

    async def reserve(self, checks: list[Check]) -> Verdict:
        args: list[str | int] = []
        for c in checks:
            args += ["M" if c.window == "month" else "m", c.amount, c.limit]
        reply = await self._reserve(keys=[self._key(c.name) for c in checks], args=args)
        outcome, now = reply[0].decode(), int(reply[1])
        if outcome == "seed":
            return Verdict(False, now, unseeded=[int(i) for i in reply[2]])
        used = [int(u) for u in reply[2]]
        if outcome == "ok":
            return Verdict(True, now, used)
        denied, flat = int(reply[3]), [int(v) for v in reply[4]]
        check = checks[denied]
        retry = 0
        if check.window == "minute":
            buckets = list(zip(flat[::2], flat[1::2], strict=True))
            need = used[denied] + check.amount - check.limit
            retry = _retry_after(buckets, need, now) if check.amount <= check.limit else WINDOW_S
        return Verdict(False, now, used, denied=denied, retry_after=retry)

    async def seed(self, name: str, value: int) -> None:
        await self._redis.set(self._key(name), value, nx=True, ex=MONTH_TTL_S)

    async def adjust(self, adjustments: list[Adjustment]) -> None:
        if not adjustments:
            return
        args: list[str | int] = []
        for a in adjustments:
            args += ["M" if a.window == "month" else "m", a.stamp, a.delta]
        await self._adjust(keys=[self._key(a.name) for a in adjustments], args=args)

    async def close(self) -> None:
        await self._redis.aclose()
