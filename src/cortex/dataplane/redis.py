"""The Redis data plane: each step one Lua script, loaded once (``EVALSHA`` after the first call).

The scripts join the record store's keys (:mod:`cortex.store.redis`) and the queue's
(:mod:`cortex.queue.redis`), so they name keys of two hash tags and derive record keys inside the
take script: like the sweep, they need one Redis primary, not a Redis Cluster.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from cortex.backends import Resources
from cortex.dataplane.base import DataPlane, Finished, Taken, check_batch
from cortex.dataplane.batching import TurnBatcher
from cortex.dataplane.watch import ChangeWatch
from cortex.queue.base import Lease
from cortex.queue.redis import NOW, TRIM_WAKE, RedisQueue
from cortex.redisdb import RedisServer, open_server, wrap_errors
from cortex.requests import Duplicate, NewRequest, Outcome, Status, now, sources_of, status_values
from cortex.store.base import RECENT_KEPT
from cortex.store.redis import CREATE_BODY, FULL, STATUS_MOVE, RedisRecordStore, duplicate_of, text_of, values_record


def _fields(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


#: the priority levels above 0, highest first: each has its own set of ids (``pri<level>``, below)
PRIORITY_LEVELS = tuple(range(9, 0, -1))

# KEYS: the record store's create keys (6), then the queue's due, attempts, wake, and the set of the
# request's priority level when above 0. ARGV: as the create's.
_SUBMIT = (
    CREATE_BODY
    + """
if redis.call('HSETNX', KEYS[8], ARGV[3], 0) == 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('ZADD', KEYS[7], now, ARGV[3])
  if KEYS[10] then redis.call('ZADD', KEYS[10], now, ARGV[3]) end
  redis.call('RPUSH', KEYS[9], 1)
end
return 1
"""
)

# A batch of submissions (``POST /<api>/batch``): per request, what :data:`_SUBMIT` does. Redis does not
# roll a script back, so every check comes before the first write: an id already stored or a held
# idempotency key stores nothing. Nor does memory run out half-way: Redis refuses a script's write
# for want of memory only before its first write, never in the middle. KEYS per request (10): the
# create keys (record, expiry, refs, idempotency key or the record's key again when none, recent,
# apis), then due, attempts, wake, and the set of its priority level (``due`` again at level 0).
# ARGV per request: N, then N arguments as the create's (ttl, expires_at, id, blob key, created_at,
# digest, field/value pairs, 'api' first).
# Returns 1 once all are stored, or per request {holder id, holder digest} or false when a key is held.
_SUBMIT_MANY = (
    STATUS_MOVE
    + """
local held, any_held, a = {}, false, 1
for b = 0, #KEYS - 1, 10 do
  if redis.call('EXISTS', KEYS[b + 1]) == 1 then
    return redis.error_reply('request id ' .. ARGV[a + 3] .. ' already exists')
  end
  local h = false
  if KEYS[b + 4] ~= KEYS[b + 1] then
    local v = redis.call('HMGET', KEYS[b + 4], 'id', 'body_digest', 'expires_at')
    if v[1] and tonumber(v[3]) > tonumber(ARGV[a + 5]) then h, any_held = {v[1], v[2]}, true end
  end
  held[#held + 1] = h
  a = a + 1 + tonumber(ARGV[a])
end
if any_held then return held end
local recent, counted = {}, {}
local t = redis.call('TIME')
-- one microsecond apart, the last at now: a take's order follows the batch's, not the ids'
local at = tonumber(t[1]) * 1000000 + tonumber(t[2]) - #KEYS / 10
a = 1
for b = 0, #KEYS - 1, 10 do
  at = at + 1
  local n = tonumber(ARGV[a])
  local record, idem, id = KEYS[b + 1], KEYS[b + 4], ARGV[a + 3]
  redis.call('HSET', record, unpack(ARGV, a + 7, a + n))
  redis.call('PEXPIRE', record, ARGV[a + 1])
  if idem ~= record then
    redis.call('DEL', idem)
    redis.call('HSET', idem, 'id', id, 'expires_at', ARGV[a + 2])
    if ARGV[a + 6] ~= '' then redis.call('HSET', idem, 'body_digest', ARGV[a + 6]) end
    redis.call('PEXPIRE', idem, ARGV[a + 1])
  end
  redis.call('ZADD', KEYS[b + 2], ARGV[a + 2], id)
  redis.call('HSET', KEYS[b + 6], id, ARGV[a + 8])
  if ARGV[a + 4] ~= '' then redis.call('HSET', KEYS[b + 3], id, ARGV[a + 4]) end
  redis.call('ZADD', KEYS[b + 5], 0, id)
  recent[KEYS[b + 5]] = true
  status_move(record, id, ARGV[a + 8], false, 'in_queue', ARGV[a + 2])
  counted[ARGV[a + 8]] = string.sub(record, 1, #record - #id - 2) .. 'status:apis'
  if redis.call('HSETNX', KEYS[b + 8], id, 0) == 1 then
    redis.call('ZADD', KEYS[b + 7], at, id)
    if KEYS[b + 10] ~= KEYS[b + 7] then redis.call('ZADD', KEYS[b + 10], at, id) end
    redis.call('RPUSH', KEYS[b + 9], 1)
  end
  a = a + 1 + n
end
for key in pairs(recent) do redis.call('ZREMRANGEBYRANK', key, 0, -(KEPT + 1)) end
for api, apis in pairs(counted) do redis.call('SADD', apis, api) end
return 1
"""
).replace("KEPT", str(RECENT_KEPT))

# Priorities: ``due`` holds every queued id scored by when it is visible, whatever its priority, so
# depth and the oldest queued age read it alone. Beside it, each level above 0 has a sorted set of its
# ids by enqueue time (``pri9`` .. ``pri1``); the take looks there first, highest level first, for ids
# visible in ``due``, and drops the ids ``due`` no longer holds (acked, removed, swept): no other step
# has to know about them. A lease hides its id in ``due`` at once, so the look at ``due`` that follows
# (for the rest of the limit) never sees it again.
# KEYS: due, attempts, tokens, wake, then the level sets from 9 down to 1. ARGV: visibility (µs), limit,
# max_attempts, record key prefix,
# api, started_at, S, S statuses a start may leave, then one token per lease, then the channel of status
# changes (each started id is published there).
# Returns {µs until the next lease lapses or -1, then per lease: id, attempts, token, kind, values}
# where kind is 1 (started: values of FULL), 2 (past max_attempts: values of FULL, not started) or 0 (missing
# or terminal: no values).
_TAKE = (
    (
        STATUS_MOVE
        + NOW
        + """
local limit = tonumber(ARGV[2])
local hidden_until = now + tonumber(ARGV[1])
local ids = {}
for k = 5, #KEYS do
  local from = 0
  while #ids < limit do
    local members = redis.call('ZRANGE', KEYS[k], from, from + 99)
    if #members == 0 then break end
    from = from + #members
    for _, id in ipairs(members) do
      local score = redis.call('ZSCORE', KEYS[1], id)
      if not score then
        redis.call('ZREM', KEYS[k], id)
        from = from - 1
      elseif #ids < limit and tonumber(score) <= now then
        ids[#ids + 1] = id
        redis.call('ZADD', KEYS[1], hidden_until, id)
      end
    end
  end
end
if #ids < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #ids)) do
    ids[#ids + 1] = id
  end
end
local out = {-1}
local max_attempts = tonumber(ARGV[3])
local s = tonumber(ARGV[7])
for i, id in ipairs(ids) do
  local token = ARGV[7 + s + i]
  redis.call('ZADD', KEYS[1], hidden_until, id)
  local attempts = redis.call('HINCRBY', KEYS[2], id, 1)
  redis.call('HSET', KEYS[3], id, token)
  out[#out + 1] = id
  out[#out + 1] = attempts
  out[#out + 1] = token
  local record = ARGV[4] .. id
  local current = redis.call('HMGET', record, 'api', 'status', 'expires_at')
  local kind = 0
  if current[1] == ARGV[5] then
    if attempts > max_attempts then
      kind = 2
    else
      for j = 8, 7 + s do
        if ARGV[j] == current[2] then kind = 1 end
      end
    end
  end
  out[#out + 1] = kind
  if kind == 1 then
    redis.call('HSET', record, 'status', 'STARTED', 'started_at', ARGV[6], 'attempts', attempts)
    status_move(record, id, ARGV[5], current[2], 'STARTED', current[3])
    redis.call('PUBLISH', ARGV[#ARGV], id)
    out[#out + 1] = redis.call('HMGET', record, FULL)
  elseif kind == 2 then
    out[#out + 1] = redis.call('HMGET', record, FULL)
  else
    out[#out + 1] = {}
  end
end
"""
        + TRIM_WAKE
        + """
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], now + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if nxt[2] then out[1] = tonumber(nxt[2]) - now end
return out
"""
    )
    .replace("STARTED", Status.IN_PROGRESS.value)
    .replace("FULL", _fields(FULL))
)

# Several finishes in one script (those of one turn of the event loop). KEYS: HAND_OVER's (blobs to
# delete, expiry, refs, record key prefix, API of each indexed record), then per finish: record,
# due, attempts, tokens. ARGV per finish: id, token, api, S, S statuses the outcome may leave, F, F
# field/value pairs to set, D, D fields to delete; last, the channel of status changes (each finished id
# is published there). Returns per finish 0 (lease lost: nothing
# written), 1 (finished and acked; its blob key handed over, :data:`HAND_OVER`) or 2 (the record
# was terminal or gone: only acked).
_FINISH = (
    STATUS_MOVE
    + """
local out = {}
local a = 1
for n = 0, (#KEYS - 5) / 4 - 1 do
  local record, due, attempts, tokens = KEYS[6 + 4 * n], KEYS[7 + 4 * n], KEYS[8 + 4 * n], KEYS[9 + 4 * n]
  local id, token, api = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local s = tonumber(ARGV[a + 3])
  local sources_at = a + 4
  local f = tonumber(ARGV[sources_at + s])
  local pairs_at = sources_at + s + 1
  local d = tonumber(ARGV[pairs_at + 2 * f])
  local drops_at = pairs_at + 2 * f + 1
  a = drops_at + d
  local code = 0
  if redis.call('HGET', tokens, id) == token then
    redis.call('ZREM', due, id)
    redis.call('HDEL', attempts, id)
    redis.call('HDEL', tokens, id)
    code = 2
    local current = redis.call('HMGET', record, 'api', 'status', 'expires_at')
    local allowed = false
    if current[1] == api then
      for i = sources_at, sources_at + s - 1 do
        if ARGV[i] == current[2] then allowed = true end
      end
    end
    if allowed then
      if f > 0 then redis.call('HSET', record, unpack(ARGV, pairs_at, pairs_at + 2 * f - 1)) end
      if d > 0 then redis.call('HDEL', record, unpack(ARGV, drops_at, drops_at + d - 1)) end
      -- the status the outcome sets comes first among its fields (:meth:`RedisDataPlane._finish_all`)
      local to = ARGV[pairs_at] == 'status' and ARGV[pairs_at + 1] or redis.call('HGET', record, 'status')
      status_move(record, id, api, current[2], to, current[3])
      local ref = redis.call('HGET', record, 'payload_ref')
      if ref then
        redis.call('HDEL', record, 'payload_ref')
        redis.call('RPUSH', KEYS[1], ref)
      end
      redis.call('ZREM', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[5], id)
      redis.call('PUBLISH', ARGV[#ARGV], id)
      code = 1
    end
  end
  out[#out + 1] = code
end
return out
"""
)

# The progress of a running request. KEYS: record, tokens. ARGV: id, token, api, progress, progress_at,
# the channel of status changes. Returns 1 (written and published) or 0 (the lease is not held, or the
# record is not in_progress: nothing written).
_PROGRESS = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local current = redis.call('HMGET', KEYS[1], 'api', 'status')
if current[1] ~= ARGV[3] or current[2] ~= 'STARTED' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[4], 'progress_at', ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return 1
""".replace("STARTED", Status.IN_PROGRESS.value)

_FINISHED = {0: Finished.LEASE_LOST, 1: Finished.FINISHED, 2: Finished.ALREADY_TERMINAL}
_START_SOURCES = status_values(sources_of(Status.IN_PROGRESS))


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


class RedisDataPlane(DataPlane):
    """Submit, take and finish on the record hashes and the queue's sorted sets of one Redis server."""

    def __init__(self, server: RedisServer) -> None:
        self._server = server
        self._queue = RedisQueue(server)
        self._records = RedisRecordStore(server)
        register = server.client.register_script
        self._submit, self._take, self._finish = register(_SUBMIT), register(_TAKE), register(_FINISH)
        self._submit_many = register(_SUBMIT_MANY)
        self._progress = register(_PROGRESS)
        self._finishes: TurnBatcher[tuple[Lease, Outcome, float], Finished] = TurnBatcher(self._finish_all)
        #: where the scripts publish the ids they start or finish (:mod:`cortex.dataplane.watch`)
        self._channel = server.key("changes")

    async def submit(self, request: NewRequest) -> Duplicate | None:
        keys, args = self._records.create_arguments(request)
        keys += self._queue.keys(request.api, "due", "attempts", "wake")
        if request.priority:
            keys += self._queue.keys(request.api, f"pri{request.priority}")
        with wrap_errors("submit", self._server.url):
            return duplicate_of(await self._submit(keys=keys, args=args))

    async def submit_many(self, requests: Sequence[NewRequest]) -> list[Duplicate | None] | None:
        """One script for the whole batch (:data:`_SUBMIT_MANY`)."""
        check_batch(requests)
        keys: list[str] = []
        args: list[Any] = []
        for request in requests:
            create_keys, create_args = self._records.create_arguments(request)
            due, attempts, wake = self._queue.keys(request.api, "due", "attempts", "wake")
            level = self._queue.keys(request.api, f"pri{request.priority}")[0] if request.priority else due
            keys += [*create_keys, due, attempts, wake, level]
            args += [len(create_args), *create_args]
        with wrap_errors("submit", self._server.url):
            reply = await self._submit_many(keys=keys, args=args)
        if not isinstance(reply, list):
            return None
        return [duplicate_of(held) if held else None for held in reply]

    async def take(
        self, api: str, *, visibility: float, limit: int, max_attempts: int, timeout: float, poll: float = 0.05
    ) -> list[Taken]:
        keys = self._queue.keys(api, "due", "attempts", "tokens", "wake", *(f"pri{level}" for level in PRIORITY_LEVELS))

        async def once() -> tuple[list[Taken], float | None]:
            tokens = [secrets.randbits(62) + 1 for _ in range(limit)]
            args: list[Any] = [_us(visibility), limit, max_attempts, self._records.record_key(""), api]
            args += [text_of(now()), len(_START_SOURCES), *_START_SOURCES, *tokens, self._channel]
            with wrap_errors("take", self._server.url):
                reply = await self._take(keys=keys, args=args)
            taken = []
            for i in range(1, len(reply), 5):
                request_id = reply[i].decode()
                lease = Lease(api=api, id=request_id, attempts=int(reply[i + 1]), token=int(reply[i + 2]))
                kind, values = int(reply[i + 3]), reply[i + 4]
                record = values_record(request_id, values) if kind else None
                taken.append(Taken(lease, record, started=kind == 1))
            return taken, None if reply[0] < 0 else reply[0] / 1_000_000

        return await self._queue.wait_take(api, once, timeout=timeout)

    async def finish(self, lease: Lease, outcome: Outcome, *, now: float) -> Finished:
        """One script, shared by the finishes of one turn of the event loop."""
        return await self._finishes((lease, outcome, now))

    async def _finish_all(self, items: list[tuple[Lease, Outcome, float]]) -> list[Finished]:
        keys = self._records.hand_over_keys()
        args: list[Any] = []
        for lease, outcome, finished_at in items:
            changes: list[str | bytes] = ["status", outcome.status.value, "finished_at", text_of(finished_at)]
            if outcome.result is not None:
                changes += ["result", outcome.result]
            if outcome.error is not None:
                changes += ["error_kind", outcome.error.kind, "error_message", outcome.error.message]
            sources = status_values(sources_of(outcome.status))
            args += [lease.id, lease.token, lease.api, len(sources), *sources, len(changes) // 2, *changes]
            args += [2, "headers", "payload"]
            keys += [self._records.record_key(lease.id), *self._queue.keys(lease.api, "due", "attempts", "tokens")]
        args.append(self._channel)
        with wrap_errors("finish", self._server.url):
            codes = await self._finish(keys=keys, args=args)
        return [_FINISHED[int(code)] for code in codes]

    async def report_progress(self, lease: Lease, progress: str, *, now: float) -> bool:
        keys = [self._records.record_key(lease.id), *self._queue.keys(lease.api, "tokens")]
        args: list[Any] = [lease.id, lease.token, lease.api, progress, text_of(now), self._channel]
        with wrap_errors("progress", self._server.url):
            return int(await self._progress(keys=keys, args=args)) == 1

    async def announce(self, ids: list[str]) -> None:
        if not ids:
            return
        pipeline = self._server.client.pipeline(transaction=False)
        for request_id in ids:
            pipeline.publish(self._channel, request_id)
        with wrap_errors("announce", self._server.url):
            await pipeline.execute()

    #: redis-py can lose a cancel of a pub/sub read: the loop looks at ``watch.closed`` instead
    _listen_stops_itself = True

    async def _listen_changes(self, watch: ChangeWatch) -> None:
        pubsub = self._server.client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            watch.subscribed()
            while not watch.closed:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is not None and message["type"] == "message":
                    watch.changed(message["data"].decode())
        finally:
            await pubsub.aclose()

    async def aclose(self) -> None:
        await super().aclose()
        await self._finishes.aclose()


async def open_plane(url: str, resources: Resources) -> RedisDataPlane:
    """The data plane on the Redis server of ``redis://host:port/db?prefix=cortex``."""
    return RedisDataPlane(await open_server(url, resources))
