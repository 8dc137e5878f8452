"""The PostgreSQL queue: one table, leases taken with ``FOR UPDATE SKIP LOCKED``, waits woken by NOTIFY.

Each row has ``visible_at``: when it may be leased. Enqueue sets it to now; a lease to now +
visibility; ``release(delay=...)`` to now + delay. Visible means ``visible_at <= now()``, so the
request that has been visible longest is leased first (a lapsed lease by when it lapsed: nothing
starves), and one index on ``(api, visible_at, seq)`` serves leases and depth (whose oldest
queued request is the least ``visible_at`` not in the future). Time is the server's clock, so
hosts with skewed clocks agree on lapses.

A lease is one statement: it selects the visible rows ``FOR UPDATE SKIP LOCKED`` and updates
them, so concurrent leasers in any number of processes skip each other's rows instead of
waiting for them, and never share a request. A fresh token (from a sequence) marks each lease;
ack, renew and release name it, so a holder whose lease lapsed and was taken again can do
nothing to the new lease. Token 0 means "not leased". Under contention a lease can come back
empty while other leasers are taking the last rows it could see (it skips the rows they hold);
the caller's next look, or :meth:`PostgresQueue.wait_lease`, finds whatever is left.

Enqueue and an immediate release ``NOTIFY`` the channel ``cortex_queue_<schema>`` with the API's
name; :meth:`PostgresQueue.wait_lease` listens on one connection per process and wakes at once.
Lapsed leases notify nobody: a waiter sleeps at most until the next lease it can see lapses, and
at most 1 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from cortex.backends import Resources
from cortex.postgresdb import DRIVER_ERRORS, PostgresServer, open_server, wrap_errors
from cortex.queue.base import Depth, Lease, Queue

log = logging.getLogger(__name__)

T = TypeVar("T")

#: longest sleep of a waiter: lapses of leases taken after it looked show by then
_SAFETY_POLL_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS {s}.queue (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    api TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    visible_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INTEGER NOT NULL DEFAULT 0,
    token BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_visible ON {s}.queue (api, visible_at, seq);
CREATE SEQUENCE IF NOT EXISTS {s}.queue_token;
"""

#: the queue table's versions after :data:`SCHEMA` (``{s}.queue_version`` says how many were applied).
#: Never edit one that shipped; add the next.
MIGRATIONS: tuple[str, ...] = (
    # 1: X-Cortex-Priority: a lease takes the highest priority first, then the longest visible; the
    # index serves that order (queue_visible still serves depth's oldest visible row)
    "ALTER TABLE {s}.queue ADD COLUMN IF NOT EXISTS priority SMALLINT NOT NULL DEFAULT 0;"
    " CREATE INDEX IF NOT EXISTS queue_priority ON {s}.queue (api, priority DESC, visible_at, seq)",
)

_ENQUEUE = """
WITH added AS (INSERT INTO {s}.queue (api, id) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING api)
SELECT pg_notify($3, api) FROM added
"""
_LEASE = """
WITH picked AS (
    SELECT seq, visible_at FROM {s}.queue WHERE api = $1 AND visible_at <= now()
    ORDER BY priority DESC, visible_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE {s}.queue AS q
SET visible_at = now() + make_interval(secs => $3), attempts = q.attempts + 1, token = nextval('{s}.queue_token')
FROM picked WHERE q.seq = picked.seq
RETURNING q.id, q.attempts, q.token, picked.visible_at, picked.seq, q.priority
"""
_NEXT_LAPSE = """
SELECT EXTRACT(EPOCH FROM min(visible_at) - now())::float8 FROM {s}.queue WHERE api = $1 AND visible_at > now()
"""
_RENEW = "UPDATE {s}.queue SET visible_at = now() + make_interval(secs => $3) WHERE id = $1 AND token = $2"
_ACK = "DELETE FROM {s}.queue WHERE id = $1 AND token = $2"
_RELEASE = """
WITH released AS (
    UPDATE {s}.queue SET visible_at = now() + make_interval(secs => $3), attempts = attempts - $4, token = 0
    WHERE id = $1 AND token = $2 RETURNING api
)
SELECT CASE WHEN $3 <= 0 THEN pg_notify($5, api) END FROM released
"""
_REMOVE = "DELETE FROM {s}.queue WHERE api = $1 AND id = $2"
_DEPTH = """
SELECT count(*) FILTER (WHERE visible_at <= now()), count(*) FILTER (WHERE visible_at > now()),
    COALESCE(EXTRACT(EPOCH FROM now() - min(visible_at) FILTER (WHERE visible_at <= now())), 0)::float8
FROM {s}.queue WHERE api = $1
"""


class _Wakeups:
    """One LISTEN connection; resolves the futures of an API's waiters when its channel names it."""

    def __init__(self, server: PostgresServer, channel: str) -> None:
        self._server = server
        self._channel = channel
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._lock = asyncio.Lock()

    async def listening(self) -> bool:
        """Whether notifications arrive (connecting first if needed); False if the server refuses."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return True
            server = self._server
            try:
                conn = await asyncpg.connect(
                    server.dsn, timeout=server.connect_timeout, command_timeout=server.command_timeout
                )
            except DRIVER_ERRORS as exc:
                log.warning("cannot LISTEN on %s (polling instead): %s", server.url, exc)
                return False
            try:
                await conn.add_listener(self._channel, self._notified)
            except DRIVER_ERRORS as exc:
                log.warning("cannot LISTEN on %s (polling instead): %s", server.url, exc)
                conn.terminate()
                return False
            self._conn = conn
            return True

    def _notified(self, conn: object, pid: int, channel: str, api: object) -> None:
        for future in self._waiters.pop(str(api), ()):
            if not future.done():
                future.set_result(None)

    def waiter(self, api: str) -> asyncio.Future[None]:
        """A future resolved by the next notification for ``api``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(api, set()).add(future)
        return future

    def forget(self, api: str, future: asyncio.Future[None]) -> None:
        """Stop waking ``future``."""
        waiters = self._waiters.get(api)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[api]

    async def aclose(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close(timeout=5)
            except DRIVER_ERRORS:
                self._conn.terminate()
            self._conn = None


class PostgresQueue(Queue):
    """The queue in PostgreSQL, shared safely by every process that opens the same URL."""

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self._pool = server.pool
        self._channel = f"cortex_queue_{server.schema}"
        self._wakeups = _Wakeups(server, self._channel)
        sql = server.sql
        self._sql = {name: sql(text) for name, text in _STATEMENTS.items()}

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        with wrap_errors(name, self._server.url):
            return await self._pool.fetch(self._sql[name], *args)

    async def _execute(self, name: str, *args: Any) -> int:
        """Run statement ``name``; the number of rows it changed."""
        with wrap_errors(name, self._server.url):
            status = await self._pool.execute(self._sql[name], *args)
        return int(status.rsplit(" ", 1)[-1])

    async def enqueue(self, api: str, request_id: str) -> None:
        await self._fetch("enqueue", api, request_id, self._channel)

    async def lease(self, api: str, *, visibility: float, limit: int = 1) -> list[Lease]:
        rows = await self._fetch("lease", api, limit, float(visibility))
        # RETURNING keeps no order: put the highest priority, then the longest-visible, first again
        rows.sort(key=lambda row: (-row[5], row[3], row[4]))
        return [Lease(api=api, id=row[0], attempts=row[1], token=row[2]) for row in rows]

    async def renew(self, lease: Lease, *, visibility: float) -> bool:
        return await self._execute("renew", lease.id, lease.token, float(visibility)) == 1

    async def ack(self, lease: Lease) -> bool:
        return await self._execute("ack", lease.id, lease.token) == 1

    async def release(self, lease: Lease, *, delay: float = 0.0, attempted: bool = False) -> bool:
        rows = await self._fetch(
            "release", lease.id, lease.token, float(max(delay, 0.0)), 0 if attempted else 1, self._channel
        )
        return len(rows) == 1

    async def remove(self, api: str, request_id: str) -> bool:
        return await self._execute("remove", api, request_id) == 1

    async def depth(self, api: str) -> Depth:
        (row,) = await self._fetch("depth", api)
        return Depth(queued=int(row[0]), in_flight=int(row[1]), oldest_queued_age=max(0.0, float(row[2])))

    async def wait_lease(
        self, api: str, *, visibility: float, limit: int = 1, timeout: float, poll: float = 0.05
    ) -> list[Lease]:
        """Like :meth:`lease`, but waits up to ``timeout`` seconds, woken by NOTIFY when work arrives.

        ``poll`` is used only when the LISTEN connection cannot be opened (the wait then polls).
        """
        return await self.wait_take(
            api, lambda: self.lease(api, visibility=visibility, limit=limit), timeout=timeout, poll=poll
        )

    async def wait_take(
        self, api: str, take: Callable[[], Awaitable[list[T]]], *, timeout: float, poll: float
    ) -> list[T]:
        """:meth:`wait_lease` with ``take`` doing the lease (it leases, and may do more in its statement)."""
        deadline = time.monotonic() + timeout
        listening = await self._wakeups.listening()
        while True:
            # wait for notifications sent after this point: a commit before it shows in the lease below
            woken = self._wakeups.waiter(api)
            try:
                taken = await take()
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken
                pause = min(remaining, _SAFETY_POLL_S if listening else poll)
                (row,) = await self._fetch("next_lapse", api)
                if row[0] is not None:
                    pause = min(pause, max(row[0], 0.0))
                await asyncio.wait({woken}, timeout=pause)
            finally:
                self._wakeups.forget(api, woken)
                woken.cancel()

    async def wait_work(self, api: str, *, timeout: float, poll: float = 0.25) -> bool:
        """Woken by the NOTIFY of an enqueue (every waiter of the API is woken; nothing is consumed)."""
        deadline = time.monotonic() + timeout
        listening = await self._wakeups.listening()
        while True:
            woken = self._wakeups.waiter(api)  # before the look: a commit after it notifies this waiter
            try:
                if (await self.depth(api)).total:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                await asyncio.wait({woken}, timeout=min(remaining, _SAFETY_POLL_S if listening else poll))
            finally:
                self._wakeups.forget(api, woken)
                woken.cancel()

    @property
    def channel(self) -> str:
        """The NOTIFY channel that wakes the waiters of this queue (the payload is the API's name)."""
        return self._channel

    async def aclose(self) -> None:
        await self._wakeups.aclose()


_STATEMENTS = {
    "enqueue": _ENQUEUE,
    "lease": _LEASE,
    "next_lapse": _NEXT_LAPSE,
    "renew": _RENEW,
    "ack": _ACK,
    "release": _RELEASE,
    "remove": _REMOVE,
    "depth": _DEPTH,
}


async def open_queue(url: str, resources: Resources) -> PostgresQueue:
    """The queue in the PostgreSQL database of ``postgresql://user@host:port/db?schema=cortex``."""
    return PostgresQueue(await open_server(url, resources, SCHEMA, migrations=MIGRATIONS, versions="queue_version"))
