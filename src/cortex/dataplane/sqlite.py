"""The embedded data plane: each step one transaction of the SQLite database, in its group commit."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from cortex.backends import Resources
from cortex.dataplane.base import DataPlane, Finished, Taken, check_batch
from cortex.dataplane.watch import ChangeWatch
from cortex.queue.base import Lease
from cortex.queue.sqlite import SqliteQueue
from cortex.queue.wake import WakeListener, send
from cortex.requests import Duplicate, NewRequest, Outcome
from cortex.sqlitedb import SqliteDatabase, open_database
from cortex.sqlitetables import (
    delete_leased,
    finish_record,
    insert_record,
    insert_row,
    key_holder,
    read_record,
    start_record,
    take_leases,
)


class SqliteDataPlane(DataPlane):
    """Submit, take and finish on the queue and requests tables of one SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        #: the waits and wake-ups of the queue (Unix sockets beside the database)
        self._queue = SqliteQueue(db)
        #: where the processes watching status changes bind their socket (:mod:`cortex.dataplane.watch`)
        self._changes_dir = db.path.parent / "changes"

    async def submit(self, request: NewRequest) -> Duplicate | None:
        def both(conn: sqlite3.Connection) -> Duplicate | None:
            duplicate = insert_record(conn, request)
            if duplicate is None:
                insert_row(conn, request.api, request.id, request.priority or 0)
            return duplicate

        duplicate = await self._db.write(both)
        if duplicate is None:
            self._queue.wake(request.api)
        return duplicate

    async def submit_many(self, requests: Sequence[NewRequest]) -> list[Duplicate | None] | None:
        """One write of the group commit: the keys are looked at before anything is written, and a
        failing insert (an id already stored) rolls the whole write back (:meth:`SqliteDatabase.write`)."""
        check_batch(requests)

        def all_of(conn: sqlite3.Connection) -> list[Duplicate | None] | None:
            held = [key_holder(conn, request) for request in requests]
            if any(holder is not None for holder in held):
                return held
            for request in requests:
                insert_record(conn, request)  # frees the keys of expired holders
                insert_row(conn, request.api, request.id, request.priority or 0)
            return None

        held = await self._db.write(all_of)
        if held is None:
            for api in dict.fromkeys(request.api for request in requests):
                self._queue.wake(api)
        return held

    async def take(
        self, api: str, *, visibility: float, limit: int, max_attempts: int, timeout: float, poll: float = 0.05
    ) -> list[Taken]:
        def take(conn: sqlite3.Connection, now: float) -> list[Taken]:
            taken = []
            for lease in take_leases(conn, api, now, visibility, limit):
                if lease.attempts > max_attempts:
                    taken.append(Taken(lease, read_record(conn, api, lease.id, now=now, full=True), started=False))
                    continue
                record = start_record(conn, api, lease.id, attempts=lease.attempts, now=now)
                taken.append(Taken(lease, record, started=record is not None))
            return taken

        taken = await self._queue.wait_take(api, take, timeout=timeout, poll=poll)
        self._announce([t.lease.id for t in taken if t.started])
        return taken

    async def finish(self, lease: Lease, outcome: Outcome, *, now: float) -> Finished:
        def both(conn: sqlite3.Connection) -> Finished:
            held = conn.execute("SELECT 1 FROM queue WHERE id = ? AND token = ?", (lease.id, lease.token)).fetchone()
            if held is None:
                return Finished.LEASE_LOST
            finished = finish_record(conn, lease.api, lease.id, outcome, now=now)
            delete_leased(conn, lease)
            return Finished.FINISHED if finished else Finished.ALREADY_TERMINAL

        finished = await self._db.write(both)
        if finished is Finished.FINISHED:
            self._announce([lease.id])
        return finished

    def _announce(self, ids: list[str]) -> None:
        """Tell the watching processes that ``ids`` changed status (once committed)."""
        if ids:
            send(self._changes_dir, _CHANGES, "\n".join(ids).encode())

    async def _listen_changes(self, watch: ChangeWatch) -> None:
        listener = WakeListener(self._changes_dir, _CHANGES)
        try:
            watch.subscribed()
            while True:
                for request_id in (await listener.receive()).decode().split("\n"):
                    watch.changed(request_id)
        finally:
            listener.close()

    async def aclose(self) -> None:
        await super().aclose()
        await self._queue.aclose()


#: the name of a watching process's socket in the ``changes`` folder
_CHANGES = "changes"


async def open_plane(url: str, resources: Resources) -> SqliteDataPlane:
    """The data plane of the SQLite file of ``sqlite:///path``."""
    return SqliteDataPlane(await open_database(url, resources))
