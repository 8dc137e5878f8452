"""The embedded queue: a table in the state directory's SQLite database.

Visible rows have ``lease_until = 0``, or a lease that has lapsed. Taking a lease is one
``UPDATE … RETURNING``, so two workers (or processes) can never take the same row. A visible row
has been visible since ``lease_until`` when that is set (a lapsed lease or a delayed release), else
since ``visible_since`` (its enqueue or its immediate release): what :meth:`SqliteQueue.depth`
reports the age of the oldest queued request from.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from cortex.backends import Resources
from cortex.queue.base import Depth, Lease, Queue
from cortex.queue.wake import WakeListener, wake
from cortex.sqlitedb import SqliteDatabase, open_database
from cortex.sqlitetables import delete_leased, insert_row, take_leases

log = logging.getLogger(__name__)

T = TypeVar("T")
#: what a lease does in its transaction: (connection, now) -> what was taken
Take = Callable[[sqlite3.Connection, float], list[T]]


class SqliteQueue(Queue):
    """The default queue: one table, shared safely by every process on the state directory.

    An enqueue wakes the processes waiting in :meth:`wait_lease` through Unix datagram sockets
    in a ``wake`` folder beside the database (:mod:`cortex.queue.wake`), so an idle worker takes a
    new request within a millisecond or so instead of at its next poll.
    """

    #: how often a waiter looks at the queue without a wake-up (lapsed leases, lost wake-ups)
    FALLBACK_POLL = 1.0

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._wake_dir = db.path.parent / "wake"
        self._listeners: dict[str, WakeListener | None] = {}
        self._woken: set[str] = set()

    @property
    def database(self) -> SqliteDatabase:
        """The SQLite database the queue table lives in."""
        return self._db

    async def enqueue(self, api: str, request_id: str) -> None:
        await self._db.write(lambda c: insert_row(c, api, request_id))
        self.wake(api)

    def wake(self, api: str) -> None:
        """Wake the processes waiting for ``api`` (call once the new rows are committed).

        At the next turn of the event loop, once for all the enqueues of this turn (all committed
        before it began), and after what this turn does next: a gateway's answer to its client
        leaves before the workers wake up and take the CPU.
        """
        if api in self._woken:
            return
        self._woken.add(api)
        asyncio.get_running_loop().call_soon(self._wake_now, api)

    def _wake_now(self, api: str) -> None:
        self._woken.discard(api)
        wake(self._wake_dir, api)

    async def wait_lease(
        self, api: str, *, visibility: float, limit: int = 1, timeout: float, poll: float = 0.05
    ) -> list[Lease]:
        return await self.wait_take(
            api, lambda c, now: take_leases(c, api, now, visibility, limit), timeout=timeout, poll=poll
        )

    async def wait_take(self, api: str, take: Take[T], *, timeout: float, poll: float = 0.05) -> list[T]:
        """:meth:`wait_lease` with ``take`` run in the lease's transaction (it leases, and may do more).

        After a wake-up the lease is tried at once; otherwise a reader looks first, so that an
        idle worker never takes the write lock.
        """
        listener = self._listener(api)
        deadline = time.monotonic() + timeout
        woken = False
        delay = 0.005
        while True:
            taken = await self._take(api, take, look_first=not woken)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            if listener is None:  # no socket here (path too long, odd filesystem): poll, backing off
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, poll)
            else:
                woken = await listener.wait(min(remaining, self.FALLBACK_POLL))

    async def wait_work(self, api: str, *, timeout: float, poll: float = 0.25) -> bool:
        """Woken by the enqueue's datagram, on a socket of its own (a worker's wake-ups are not taken)."""
        try:
            listener = WakeListener(self._wake_dir, api)
        except OSError:  # no socket here: look every ``poll`` seconds instead
            return await super().wait_work(api, timeout=timeout, poll=poll)
        try:
            deadline = time.monotonic() + timeout
            while True:
                # bound before this look: an enqueue committed after it sends this socket a datagram
                if (await self.depth(api)).total:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                await listener.wait(min(remaining, self.FALLBACK_POLL))
        finally:
            listener.close()

    async def _take(self, api: str, take: Take[T], *, look_first: bool) -> list[T]:
        if look_first:
            now = time.time()
            if not await self._db.read(lambda c: _has_visible(c, api, now)):
                return []
        return await self._db.write(lambda c: take(c, time.time()))

    def _listener(self, api: str) -> WakeListener | None:
        if api not in self._listeners:
            try:
                self._listeners[api] = WakeListener(self._wake_dir, api)
            except OSError as exc:
                log.info("no wake-up socket for %s (%s); polling the queue instead", api, exc)
                self._listeners[api] = None
        return self._listeners[api]

    async def aclose(self) -> None:
        for listener in self._listeners.values():
            if listener is not None:
                listener.close()
        self._listeners.clear()

    async def lease(self, api: str, *, visibility: float, limit: int = 1) -> list[Lease]:
        # an idle worker polls: look with a reader first, so polling never takes the write lock
        return await self._take(api, lambda c, now: take_leases(c, api, now, visibility, limit), look_first=True)

    async def renew(self, lease: Lease, *, visibility: float) -> bool:
        until = time.time() + visibility
        return await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE queue SET lease_until = ? WHERE id = ? AND token = ?", (until, lease.id, lease.token)
                ).rowcount
                == 1
            )
        )

    async def ack(self, lease: Lease) -> bool:
        return await self._db.write(lambda c: delete_leased(c, lease))

    async def release(self, lease: Lease, *, delay: float = 0.0, attempted: bool = False) -> bool:
        # a lapsed-lease row is visible once lease_until <= now, so a delay is a lease_until in the future
        now = time.time()
        until = now + delay if delay > 0 else 0.0
        uncount = 0 if attempted else 1
        released = await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE queue SET lease_until = ?, visible_since = ?, attempts = attempts - ?, token = 0"
                    " WHERE id = ? AND token = ?",
                    (until, now, uncount, lease.id, lease.token),
                ).rowcount
                == 1
            )
        )
        if released and delay <= 0:
            self.wake(lease.api)
        return released

    async def remove(self, api: str, request_id: str) -> bool:
        return await self._db.write(
            lambda c: c.execute("DELETE FROM queue WHERE api = ? AND id = ?", (api, request_id)).rowcount == 1
        )

    async def depth(self, api: str) -> Depth:
        return await self._db.read(lambda c: _depth(c, api, time.time()))


def _has_visible(conn: sqlite3.Connection, api: str, now: float) -> bool:
    row = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM queue WHERE api = ? AND lease_until = 0)"
        " OR EXISTS(SELECT 1 FROM queue WHERE api = ? AND lease_until > 0 AND lease_until <= ?)",
        (api, api, now),
    ).fetchone()
    return bool(row[0])


def _depth(conn: sqlite3.Connection, api: str, now: float) -> Depth:
    # one pass over the API's rows, which counting them takes anyway
    queued, in_flight, oldest = conn.execute(
        "SELECT COALESCE(SUM(lease_until <= ?), 0), COALESCE(SUM(lease_until > ?), 0),"
        " MIN(CASE WHEN lease_until = 0 THEN visible_since WHEN lease_until <= ? THEN lease_until END)"
        " FROM queue WHERE api = ?",
        (now, now, now, api),
    ).fetchone()
    age = 0.0 if oldest is None else max(0.0, now - oldest)
    return Depth(queued=int(queued), in_flight=int(in_flight), oldest_queued_age=age)


def _add_visible_since(conn: sqlite3.Connection) -> None:
    """Bring a queue table of an earlier version up to date (its rows count as visible from now)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(queue)")}
    if "visible_since" not in columns:
        conn.execute("ALTER TABLE queue ADD COLUMN visible_since REAL NOT NULL DEFAULT 0")
        conn.execute("UPDATE queue SET visible_since = ?", (time.time(),))


async def open_queue(url: str, resources: Resources) -> SqliteQueue:
    """The queue in the SQLite file of ``sqlite:///path``."""
    db = await open_database(url, resources)
    if not await db.read(lambda c: any(row[1] == "visible_since" for row in c.execute("PRAGMA table_info(queue)"))):
        await db.write(_add_visible_since)
    return SqliteQueue(db)
