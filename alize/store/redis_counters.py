"""The limit counters in Redis, shared by every replica that names the same Redis.
Each operation is one Lua script, so each is atomic across replicas.

Reservations on month counters are also written to a ledger of their holder (one per
process: `held:<holder>`, counter -> amount still reserved), guarded by a lease
(`lease:<holder>`, renewed every few seconds). When a replica dies its lease lapses and
any replica gives its reservations back: a crash leaves no phantom spend. A settlement
whose reservation was already given back adds only what was used."""

import uuid

from alize.store.counters import WINDOW_S, Adjustment, Check, Verdict, _retry_after

LEASE_MS = 30_000  # a holder that has not renewed for this long is presumed dead
MONTH_TTL_S = 40 * 24 * 3600

# KEYS: one counter per check, then the holder's lease and ledger.
# ARGV: window ('m' minute, 'M' month), amount, limit per check.
_RESERVE = """
local n = #KEYS - 2
local lease, held = KEYS[n + 1], KEYS[n + 2]
if redis.call('EXISTS', lease) == 0 then return {'lease'} end
local now = tonumber(redis.call('TIME')[1])
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
  if window == 'M' then
    redis.call('INCRBY', KEYS[i], amount)
    redis.call('HINCRBY', held, KEYS[i], amount)
  else redis.call('HINCRBY', KEYS[i], now, amount); redis.call('EXPIRE', KEYS[i], 180) end
end
local flat = {}
for k = 1, n do flat[k] = used[k] end
return {'ok', now, flat}
"""

# KEYS: counters, then the ledger of the holder that reserved. ARGV: window, stamp, delta,
# reserved per counter. Only existing counters change.
_ADJUST = """
local n = #KEYS - 1
local held = KEYS[n + 1]
for i = 1, n do
  local window, stamp = ARGV[(i - 1) * 4 + 1], ARGV[(i - 1) * 4 + 2]
  local delta, reserved = tonumber(ARGV[(i - 1) * 4 + 3]), tonumber(ARGV[(i - 1) * 4 + 4])
  if window == 'M' then
    if reserved > 0 then
      local mine = tonumber(redis.call('HGET', held, KEYS[i]) or '0')
      if mine >= reserved then redis.call('HINCRBY', held, KEYS[i], string.format('%.0f', -reserved))
      else delta = delta + reserved end  -- given back already (reclaimed): add only what was used
    end
    if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('INCRBY', KEYS[i], string.format('%.0f', delta))
    end
  elseif redis.call('HEXISTS', KEYS[i], stamp) == 1 then
    redis.call('HINCRBY', KEYS[i], stamp, string.format('%.0f', delta))
  end
end
return 1
"""

# KEYS: the set of holders. ARGV: key prefix, and one holder to give back ('' : every
# holder whose lease has lapsed). Returns how many holders were given back.
_RECLAIM = """
local prefix, only = ARGV[1], ARGV[2]
local count = 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local lease = prefix .. 'lease:' .. h
  if (only ~= '' and h == only) or (only == '' and redis.call('EXISTS', lease) == 0) then
    local held = prefix .. 'held:' .. h
    local kv = redis.call('HGETALL', held)
    for j = 1, #kv, 2 do
      if redis.call('EXISTS', kv[j]) == 1 then redis.call('DECRBY', kv[j], kv[j + 1]) end
    end
    redis.call('DEL', held, lease)
    redis.call('SREM', KEYS[1], h)
    count = count + 1
  end
end
return count
"""

# KEYS: a month counter, the set of holders. ARGV: key prefix, the usage table's total.
# The counter becomes that total plus what live holders still reserve on it.
_RECONCILE = """
local total = tonumber(ARGV[2])
for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[1] .. 'lease:' .. h) == 1 then
    total = total + tonumber(redis.call('HGET', ARGV[1] .. 'held:' .. h, KEYS[1]) or '0')
  end
end
redis.call('SET', KEYS[1], string.format('%.0f', total), 'EX', ARGV[3])
return string.format('%.0f', total)
"""


class RedisCounters:
    """Shared by every replica that names the same Redis."""

    def __init__(self, url: str, prefix: str = "alize:"):
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._holder: str | None = None  # taken at the first reservation, and again if it lapses
        self._reserve = self._redis.register_script(_RESERVE)
        self._adjust = self._redis.register_script(_ADJUST)
        self._reclaim = self._redis.register_script(_RECLAIM)
        self._reconcile = self._redis.register_script(_RECONCILE)

    def _key(self, name: str) -> str:
        return self._prefix + name

    @property
    def _holders(self) -> str:
        return self._prefix + "holders"

    async def _take_lease(self) -> str:
        holder = uuid.uuid4().hex
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.set(self._key(f"lease:{holder}"), 1, px=LEASE_MS).sadd(self._holders, holder).execute()
        self._holder = holder
        return holder

    async def reserve(self, checks: list[Check]) -> Verdict:
        args: list[str | int] = []
        for c in checks:
            args += ["M" if c.window == "month" else "m", c.amount, c.limit]
        for _ in range(2):
            holder = self._holder or await self._take_lease()
            keys = [self._key(c.name) for c in checks] + [self._key(f"lease:{holder}"), self._key(f"held:{holder}")]
            reply = await self._reserve(keys=keys, args=args)
            if reply[0].decode() != "lease":
                break
            self._holder = None  # the lease lapsed (and may have been reclaimed): take a new one
        outcome, now = reply[0].decode(), int(reply[1])
        if outcome == "seed":
            return Verdict(False, now, unseeded=[int(i) for i in reply[2]])
        used = [int(u) for u in reply[2]]
        if outcome == "ok":
            return Verdict(True, now, used, holder=holder)
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

    async def adjust(self, adjustments: list[Adjustment], holder: str | None = None) -> None:
        if not adjustments:
            return
        args: list[str | int] = []
        for a in adjustments:
            args += ["M" if a.window == "month" else "m", a.stamp, a.delta, a.reserved if holder else 0]
        held = self._key(f"held:{holder or 'none'}")
        await self._adjust(keys=[self._key(a.name) for a in adjustments] + [held], args=args)

    async def renew(self) -> int:
        if self._holder is not None:
            renewed = await self._redis.set(self._key(f"lease:{self._holder}"), 1, px=LEASE_MS, xx=True)
            if not renewed:
                self._holder = None  # lapsed: its reservations go back; new ones take a new lease
        return int(await self._reclaim(keys=[self._holders], args=[self._prefix, ""]))

    async def reconcile(self, name: str, settled: int) -> None:
        await self._reconcile(keys=[self._key(name), self._holders], args=[self._prefix, settled, MONTH_TTL_S])

    async def month_counters(self, month: str) -> list[str]:
        """The names of this month's counters (for reconciling them)."""
        names = []
        async for key in self._redis.scan_iter(match=f"{self._prefix}*:{month}", count=500):
            names.append(key.decode().removeprefix(self._prefix))
        return names

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        if self._holder is not None:  # a clean shutdown gives back whatever is still reserved
            await self._reclaim(keys=[self._holders], args=[self._prefix, self._holder])
            self._holder = None
        await self._redis.aclose()
