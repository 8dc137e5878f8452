"""The Redis queue: a sorted set of visibility times per API, every verb one Lua script.

Why not Streams with a consumer group and ``XAUTOCLAIM``: a consumer group hides an entry until
``XAUTOCLAIM`` takes it back, and that takes one ``min-idle-time`` for all entries, chosen by
the caller that claims. The contract needs the visibility of each lease: a lease taken for
0.05 s lapses then, even if the next caller asks for 30 s. It also needs ``release`` to uncount an
attempt and ``remove`` to drop a leased entry. With a stream, a sorted set of lease deadlines
would have to sit beside the pending-entries list and be kept in step with it. So the sorted
set alone is the queue:

- ``<prefix>:q:{<api>}:due``: sorted set, request id -> when it is visible (µs, the server's clock).
  Enqueue scores it "now"; a lease rescores it "now + visibility"; a lapsed lease simply becomes
  visible again; ``release(delay=...)`` rescores it "now + delay". Visible means ``score <= now``,
  so the oldest-visible request is taken first (a lapsed one by when it lapsed) and nothing starves;
  the lowest score is also when the oldest queued request became visible (its age, for ``depth``).
- ``...:attempts``: hash id -> leases taken (membership: enqueue is a no-op for a known id).
- ``...:tokens``: hash id -> token of the current lease; ack, renew and release check it, so a
  holder whose lease lapsed and was taken again can do nothing to the new lease.
- ``...:wake``: list of wake-up tokens, one pushed per request that becomes visible at once,
  kept no longer than the number of visible requests. :meth:`RedisQueue.wait_lease` blocks on
  it with ``BLPOP`` instead of polling, and otherwise sleeps only until the next lease lapses.

Every verb is one script, so each change is atomic among any number of processes, and time is
the Redis server's (``TIME``), so hosts with skewed clocks agree on lapses.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

from cortex.backends import Resources
from cortex.queue.base import Depth, Lease, Queue
from cortex.redisdb import RedisServer, open_server, parse_url, wrap_errors

T = TypeVar("T")
#: one look at the queue: what was taken, and the seconds until the next lease lapses (None if none is held)
Take = Callable[[], Awaitable[tuple[list[T], float | None]]]

#: longest blocking read while waiting: lapses of leases taken after the wait began show by then
_SAFETY_POLL_S = 1.0

#: the server's time in µs, as ``now`` (every script that needs a time starts with it)
NOW = _NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# ARGV: id. KEYS: due, attempts, wake
_ENQUEUE = (
    _NOW
    + """
if redis.call('HSETNX', KEYS[2], ARGV[1], 0) == 0 then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('RPUSH', KEYS[3], 1)
return 1
"""
)

# keep the wake-up tokens no more than the visible requests, so a waiter that wakes finds work
TRIM_WAKE = _TRIM_WAKE = """
local visible = redis.call('ZCOUNT', KEYS[1], '-inf', now)
if redis.call('LLEN', KEYS[4]) > visible then
  if visible == 0 then redis.call('DEL', KEYS[4]) else redis.call('LTRIM', KEYS[4], 0, visible - 1) end
end
"""

# ARGV: visibility (µs), limit, token per lease. KEYS: due, attempts, tokens, wake.
# Returns {µs until the next lease lapses or -1, id, attempts, token, id, attempts, token, ...}
_LEASE = (
    _NOW
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {-1}
local hidden_until = now + tonumber(ARGV[1])
for i, id in ipairs(ids) do
  local token = ARGV[2 + i]
  redis.call('ZADD', KEYS[1], hidden_until, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HINCRBY', KEYS[2], id, 1)
  out[#out + 1] = token
  redis.call('HSET', KEYS[3], id, token)
end
"""
    + _TRIM_WAKE
    + """
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], now + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if nxt[2] then out[1] = tonumber(nxt[2]) - now end
return out
"""
)

# ARGV: id, token, visibility (µs). KEYS: due, tokens
_RENEW = (
    _NOW
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

# ARGV: id, token. KEYS: due, attempts, tokens
_ACK = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# ARGV: id, token, delay (µs), attempted (0|1). KEYS: due, attempts, tokens, wake
_RELEASE = (
    _NOW
    + """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[4] == '0' then redis.call('HINCRBY', KEYS[2], ARGV[1], -1) end
local delay = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + delay, ARGV[1])
if delay <= 0 then redis.call('RPUSH', KEYS[4], 1) end
return 1
"""
)

# ARGV: id. KEYS: due, attempts, tokens, wake
_REMOVE = (
    _NOW
    + """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
"""
    + _TRIM_WAKE
    + """
return 1
"""
)

# KEYS: due. Returns {queued, in flight, µs since the oldest visible request became visible (0 if none)}
_DEPTH = (
    _NOW
    + """
local queued = redis.call('ZCOUNT', KEYS[1], '-inf', now)
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
local age = 0
if oldest[2] then age = now - tonumber(oldest[2]) end
return {queued, redis.call('ZCARD', KEYS[1]) - queued, age}
"""
)


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


#: connections of the client :meth:`RedisQueue.wait_work` blocks on: one per API watched at once
WATCH_CONNECTIONS = 1024


class RedisQueue(Queue):
    """The queue in Redis, shared safely by every process that opens the same URL.

    Given its ``url``, :meth:`wait_work` blocks on a client of its own, so that the autoscaler's
    watches (one blocked connection per sleeping API) never take the shared pool's connections.
    """

    def __init__(self, server: RedisServer, *, url: str | None = None) -> None:
        self._server = server
        self._url = url
        self._watcher: aioredis.Redis | None = None
        register = server.client.register_script
        self._enqueue, self._lease, self._renew = register(_ENQUEUE), register(_LEASE), register(_RENEW)
        self._ack, self._release, self._remove = register(_ACK), register(_RELEASE), register(_REMOVE)
        self._depth = register(_DEPTH)

    def _keys(self, api: str, *names: str) -> list[str]:
        return [self._server.key("q", "{" + api + "}", name) for name in names]

    async def enqueue(self, api: str, request_id: str) -> None:
        with wrap_errors("enqueue", self._server.url):
            await self._enqueue(keys=self._keys(api, "due", "attempts", "wake"), args=[request_id])

    async def lease(self, api: str, *, visibility: float, limit: int = 1) -> list[Lease]:
        leases, _ = await self._take(api, visibility, limit)
        return leases

    async def _take(self, api: str, visibility: float, limit: int) -> tuple[list[Lease], float | None]:
        """The leases taken, and the seconds until the next lease lapses (None if none is held)."""
        tokens = [secrets.randbits(62) + 1 for _ in range(limit)]
        with wrap_errors("lease", self._server.url):
            reply = await self._lease(
                keys=self._keys(api, "due", "attempts", "tokens", "wake"), args=[_us(visibility), limit, *tokens]
            )
        leases = [
            Lease(api=api, id=reply[i].decode(), attempts=int(reply[i + 1]), token=int(reply[i + 2]))
            for i in range(1, len(reply), 3)
        ]
        next_lapse = None if reply[0] < 0 else reply[0] / 1_000_000
        return leases, next_lapse

    async def renew(self, lease: Lease, *, visibility: float) -> bool:
        with wrap_errors("renew", self._server.url):
            renewed = await self._renew(
                keys=self._keys(lease.api, "due", "tokens"), args=[lease.id, lease.token, _us(visibility)]
            )
        return bool(renewed)

    async def ack(self, lease: Lease) -> bool:
        with wrap_errors("ack", self._server.url):
            acked = await self._ack(
                keys=self._keys(lease.api, "due", "attempts", "tokens"), args=[lease.id, lease.token]
            )
        return bool(acked)

    async def release(self, lease: Lease, *, delay: float = 0.0, attempted: bool = False) -> bool:
        with wrap_errors("release", self._server.url):
            released = await self._release(
                keys=self._keys(lease.api, "due", "attempts", "tokens", "wake"),
                args=[lease.id, lease.token, _us(delay), int(attempted)],
            )
        return bool(released)

    async def remove(self, api: str, request_id: str) -> bool:
        with wrap_errors("remove", self._server.url):
            removed = await self._remove(keys=self._keys(api, "due", "attempts", "tokens", "wake"), args=[request_id])
        return bool(removed)

    async def depth(self, api: str) -> Depth:
        with wrap_errors("depth", self._server.url):
            queued, in_flight, age_us = await self._depth(keys=self._keys(api, "due"))
        return Depth(queued=int(queued), in_flight=int(in_flight), oldest_queued_age=int(age_us) / 1_000_000)

    async def wait_lease(
        self, api: str, *, visibility: float, limit: int = 1, timeout: float, poll: float = 0.05
    ) -> list[Lease]:
        """Like :meth:`lease`, but blocks (``BLPOP`` on the API's wake-up list) up to ``timeout`` seconds.

        An enqueue or an immediate release wakes one waiter at once. A lease that lapses wakes
        nobody: a waiter sleeps at most until the earliest lapse it knew of, and at most 1 s
        (``poll`` is not used: nothing here polls an empty queue).
        """
        return await self.wait_take(api, lambda: self._take(api, visibility, limit), timeout=timeout)

    async def wait_take(self, api: str, take: Take[T], *, timeout: float) -> list[T]:
        """:meth:`wait_lease` with ``take`` doing the lease (it leases, and may do more in its script).

        ``take`` returns what it took and the seconds until the next lease of ``api`` lapses
        (None if none is held), as the lease script reports them.
        """
        deadline = time.monotonic() + timeout
        (wake,) = self._keys(api, "wake")
        while True:
            taken, next_lapse = await take()
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            pause = min(remaining, _SAFETY_POLL_S, next_lapse if next_lapse is not None else remaining)
            # the server must answer within the socket's deadline, or the wait would fail as an outage
            pause = min(pause, self._server.timeout / 2)
            with wrap_errors("BLPOP", self._server.url):
                # a zero timeout would block forever
                await self._server.client.blpop([wake], timeout=max(pause, 0.001))

    async def wait_work(self, api: str, *, timeout: float, poll: float = 0.25) -> bool:
        """Woken by the enqueue's wake-up token, which ``BLMOVE`` from the list to itself leaves in place.

        A worker's ``BLPOP`` consumes the token; this rotation only looks, so a worker blocked
        behind it is served next. Should a worker take the token first, the request is then in
        flight, which the next look (within a second) counts as work. Tokens left over with no
        work (a lease that raced the trim) end the block at once: this then pauses ``poll``
        seconds before it looks again, so it never spins.
        """
        deadline = time.monotonic() + timeout
        (wake,) = self._keys(api, "wake")
        while True:
            if (await self.depth(api)).total:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # the server must answer within the socket's deadline, or the wait would fail as an outage
            pause = min(remaining, _SAFETY_POLL_S, self._server.timeout / 2)
            with wrap_errors("BLMOVE", self._server.url):
                # typed for whole seconds, but the server (6.0 and later) takes fractions
                timeout = max(pause, 0.001)
                token = await self._watch_client().blmove(wake, wake, timeout, "RIGHT", "LEFT")  # type: ignore[arg-type]
            if token is not None and not (await self.depth(api)).total:
                await asyncio.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    def _watch_client(self) -> aioredis.Redis:
        if self._url is None:
            return self._server.client
        if self._watcher is None:
            client_url, _, timeout = parse_url(self._url)
            pool = aioredis.BlockingConnectionPool.from_url(
                client_url, max_connections=WATCH_CONNECTIONS, timeout=timeout
            )
            self._watcher = aioredis.Redis.from_pool(pool)
        return self._watcher

    async def aclose(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.aclose()

    def keys(self, api: str, *names: str) -> list[str]:
        """The keys of ``api``'s queue (``due``, ``attempts``, ``tokens``, ``wake``), for scripts that join it."""
        return self._keys(api, *names)


async def open_queue(url: str, resources: Resources) -> RedisQueue:
    """The queue on the Redis server of ``redis://host:port/db?prefix=cortex``."""
    return RedisQueue(await open_server(url, resources), url=url)
