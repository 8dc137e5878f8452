"""The embedded record store and catalog: tables in the state directory's SQLite database.

The records and the queue share that database, so :class:`SqliteJoint` writes the steps that
touch both in one transaction each (DESIGN §8): a submission's record and queue row, a lease and
the start of the requests it takes, a result and its ack.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Any

from cortex.backends import Resources
from cortex.queue.base import Lease, Queue
from cortex.queue.sqlite import SqliteQueue, delete_leased, insert_row, take_leases
from cortex.requests import (
    Duplicate,
    NewRequest,
    Outcome,
    RequestError,
    RequestRecord,
    Status,
    sources_of,
    status_values,
)
from cortex.sqlitedb import SqliteDatabase, open_database
from cortex.store.base import ApiEntry, Catalog, RecordStore, Swept

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    api TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    result BLOB,
    error_kind TEXT,
    error_message TEXT,
    headers TEXT,
    payload BLOB,
    payload_ref TEXT,
    idempotency_key TEXT,
    body_digest TEXT,
    webhook_url TEXT,
    webhook TEXT
);
CREATE INDEX IF NOT EXISTS requests_expiry ON requests(expires_at);
CREATE UNIQUE INDEX IF NOT EXISTS requests_idempotency ON requests(api, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS apis (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    spec_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
"""

_LIGHT = (
    "id, api, status, created_at, expires_at, attempts, started_at, finished_at, result, error_kind, error_message,"
    " webhook_url, webhook"
)
_FULL = _LIGHT + ", headers, payload, payload_ref"
#: what :meth:`SqliteRecordStore.recent` lists: no result either
_LISTED = _LIGHT.replace(" result,", " NULL,")


class SqliteRecordStore(RecordStore):
    """Request records in SQLite; small payloads live in the row, large ones in blobs."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @property
    def database(self) -> SqliteDatabase:
        """The SQLite database the records live in."""
        return self._db

    async def create(self, request: NewRequest) -> Duplicate | None:
        return await self._db.write(lambda c: insert_record(c, request))

    async def get(self, api: str, request_id: str, *, now: float) -> RequestRecord | None:
        row = await self._db.read(
            lambda c: c.execute(
                f"SELECT {_LIGHT} FROM requests WHERE id = ? AND api = ? AND expires_at > ?",
                (request_id, api, now),
            ).fetchone()
        )
        return None if row is None else _record(row)

    async def recent(self, api: str, *, limit: int, now: float) -> list[RequestRecord]:
        # the primary key's index walked backwards reads a few rows whatever the table's size;
        # "+expires_at" keeps the planner off the expiry index (every unexpired row, then a sort)
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT {_LISTED} FROM requests WHERE api = ? AND +expires_at > ? ORDER BY id DESC LIMIT ?",
                (api, now, limit),
            ).fetchall()
        )
        return [_record(row) for row in rows]

    async def start(self, api: str, request_id: str, *, attempts: int, now: float) -> RequestRecord | None:
        return await self._db.write(lambda c: start_record(c, api, request_id, attempts=attempts, now=now))

    async def finish(self, api: str, request_id: str, outcome: Outcome, *, now: float) -> bool:
        return await self._db.write(lambda c: finish_record(c, api, request_id, outcome, now=now))

    async def set_webhook(self, api: str, request_id: str, state: dict[str, Any]) -> bool:
        text = json.dumps(state, separators=(",", ":"))
        return await self._db.write(
            lambda c: (
                c.execute("UPDATE requests SET webhook = ? WHERE id = ? AND api = ?", (text, request_id, api)).rowcount
                == 1
            )
        )

    async def sweep(self, *, now: float, limit: int = 1000) -> Swept:
        rows = await self._db.write(
            lambda c: c.execute(
                "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE expires_at <= ? LIMIT ?)"
                " RETURNING payload_ref",
                (now, limit),
            ).fetchall()
        )
        return Swept(deleted=len(rows), blob_keys=[row[0] for row in rows if row[0] is not None])


def insert_record(conn: sqlite3.Connection, request: NewRequest) -> Duplicate | None:
    """Store a new ``in_queue`` record, unless an unexpired request holds its idempotency key."""
    if request.idempotency_key is not None:
        held = conn.execute(
            "SELECT id, body_digest, expires_at FROM requests WHERE api = ? AND idempotency_key = ?",
            (request.api, request.idempotency_key),
        ).fetchone()
        if held is not None:
            if held[2] > request.created_at:
                return Duplicate(id=held[0], body_digest=held[1])
            # expired but not swept yet: it no longer holds the key
            conn.execute("UPDATE requests SET idempotency_key = NULL WHERE id = ?", (held[0],))
    conn.execute(
        "INSERT INTO requests(id, api, status, created_at, expires_at, headers, payload, payload_ref,"
        " idempotency_key, body_digest, webhook_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            request.id,
            request.api,
            Status.IN_QUEUE.value,
            request.created_at,
            request.expires_at,
            json.dumps(request.headers, separators=(",", ":")),
            request.payload,
            request.payload_ref,
            request.idempotency_key,
            request.body_digest,
            request.webhook_url,
        ),
    )
    return None


_START_SOURCES = status_values(sources_of(Status.IN_PROGRESS))
_START = (
    "UPDATE requests SET status = ?, started_at = ?, attempts = ?"
    f" WHERE id = ? AND api = ? AND status IN ({','.join('?' * len(_START_SOURCES))}) RETURNING {_FULL}"
)


def start_record(
    conn: sqlite3.Connection, api: str, request_id: str, *, attempts: int, now: float
) -> RequestRecord | None:
    """Move a request to ``in_progress``; the record with its payload, or None if missing or terminal."""
    row = conn.execute(_START, (Status.IN_PROGRESS.value, now, attempts, request_id, api, *_START_SOURCES)).fetchone()
    return None if row is None else _record(row)


def finish_record(conn: sqlite3.Connection, api: str, request_id: str, outcome: Outcome, *, now: float) -> bool:
    """Record a terminal outcome and drop the payload; False if the record is missing or terminal."""
    sources = status_values(sources_of(outcome.status))
    marks = ",".join("?" * len(sources))
    error = outcome.error
    cursor = conn.execute(
        "UPDATE requests SET status = ?, finished_at = ?, result = ?, error_kind = ?, error_message = ?,"
        f" headers = NULL, payload = NULL WHERE id = ? AND api = ? AND status IN ({marks})",
        (
            outcome.status.value,
            now,
            outcome.result,
            None if error is None else error.kind,
            None if error is None else error.message,
            request_id,
            api,
            *sources,
        ),
    )
    return cursor.rowcount == 1


@dataclasses.dataclass(frozen=True, slots=True)
class StartedLease:
    """A lease taken together with the start of its request."""

    lease: Lease
    #: the request, now ``in_progress``, with its payload; None when it was missing or terminal,
    #: or when the lease is past ``max_attempts`` (not started: it is to be failed)
    record: RequestRecord | None


class SqliteJoint:
    """The records and the queue of one SQLite database: steps that touch both, one transaction each."""

    def __init__(self, records: SqliteRecordStore, queue: SqliteQueue) -> None:
        self._db = records.database
        self._queue = queue

    async def submit(self, request: NewRequest) -> Duplicate | None:
        """Store the record and queue it in one commit; wake the waiting workers.

        A :class:`Duplicate` (its idempotency key is taken) stores and queues nothing.
        """

        def both(conn: sqlite3.Connection) -> Duplicate | None:
            duplicate = insert_record(conn, request)
            if duplicate is None:
                insert_row(conn, request.api, request.id)
            return duplicate

        duplicate = await self._db.write(both)
        if duplicate is None:
            self._queue.wake(request.api)
        return duplicate

    async def wait_lease_started(
        self, api: str, *, visibility: float, limit: int, timeout: float, poll: float, max_attempts: int
    ) -> list[StartedLease]:
        """:meth:`Queue.wait_lease`, each request started in the lease's transaction."""

        def take(conn: sqlite3.Connection, now: float) -> list[StartedLease]:
            return [
                StartedLease(
                    lease,
                    None
                    if lease.attempts > max_attempts
                    else start_record(conn, api, lease.id, attempts=lease.attempts, now=now),
                )
                for lease in take_leases(conn, api, now, visibility, limit)
            ]

        return await self._queue.wait_take(api, take, timeout=timeout, poll=poll)

    async def finish_and_ack(self, lease: Lease, outcome: Outcome, *, now: float) -> bool:
        """Record the outcome and ack the lease in one commit; False if the record was already terminal."""

        def both(conn: sqlite3.Connection) -> bool:
            finished = finish_record(conn, lease.api, lease.id, outcome, now=now)
            delete_leased(conn, lease)
            return finished

        return await self._db.write(both)


def joint(records: RecordStore, queue: Queue) -> SqliteJoint | None:
    """The joint steps when ``records`` and ``queue`` share one SQLite database; None otherwise."""
    if isinstance(records, SqliteRecordStore) and isinstance(queue, SqliteQueue) and records.database is queue.database:
        return SqliteJoint(records, queue)
    return None


def _record(row: sqlite3.Row | tuple[Any, ...]) -> RequestRecord:
    error = None if row[9] is None else RequestError(kind=row[9], message=row[10] or "")
    full = len(row) > 13
    return RequestRecord(
        id=row[0],
        api=row[1],
        status=Status(row[2]),
        created_at=row[3],
        expires_at=row[4],
        attempts=row[5],
        started_at=row[6],
        finished_at=row[7],
        result=row[8],
        error=error,
        webhook_url=row[11],
        webhook=None if row[12] is None else json.loads(row[12]),
        headers=tuple((k, v) for k, v in json.loads(row[13] or "[]")) if full else (),
        payload=row[14] if full else None,
        payload_ref=row[15] if full else None,
    )


class SqliteCatalog(Catalog):
    """Deployed API specs in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def put_api(
        self, name: str, spec: dict[str, Any], spec_id: str, *, now: float, meta: dict[str, Any] | None = None
    ) -> ApiEntry:
        text = json.dumps(spec, sort_keys=True)
        meta_text = json.dumps(meta or {}, sort_keys=True)
        row = await self._db.write(
            lambda c: c.execute(
                "INSERT INTO apis(name, spec, spec_id, created_at, updated_at, meta) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, spec_id = excluded.spec_id,"
                f" updated_at = excluded.updated_at, meta = excluded.meta RETURNING {_API_COLUMNS}",
                (name, text, spec_id, now, now, meta_text),
            ).fetchone()
        )
        return _entry(row)

    async def get_api(self, name: str) -> ApiEntry | None:
        row = await self._db.read(
            lambda c: c.execute(f"SELECT {_API_COLUMNS} FROM apis WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else _entry(row)

    async def list_apis(self) -> list[ApiEntry]:
        rows = await self._db.read(lambda c: c.execute(f"SELECT {_API_COLUMNS} FROM apis ORDER BY name").fetchall())
        return [_entry(row) for row in rows]

    async def delete_api(self, name: str) -> bool:
        return await self._db.write(lambda c: c.execute("DELETE FROM apis WHERE name = ?", (name,)).rowcount == 1)


_API_COLUMNS = "name, spec, spec_id, created_at, updated_at, meta"


def _entry(row: tuple[Any, ...]) -> ApiEntry:
    return ApiEntry(
        name=row[0],
        spec=json.loads(row[1]),
        spec_id=row[2],
        created_at=row[3],
        updated_at=row[4],
        meta=json.loads(row[5]),
    )


async def open_store(url: str, resources: Resources) -> tuple[SqliteRecordStore, SqliteCatalog]:
    """The record store and catalog in the SQLite file of ``sqlite:///path``."""
    db = await open_database(url, resources)
    return SqliteRecordStore(db), SqliteCatalog(db)
