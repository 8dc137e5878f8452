"""The tables of the embedded SQLite database and the row operations on them.

Below both the SQLite queue and the SQLite record store (and the data plane that joins them), so
that neither imports the other: each step here is a function of a connection, run inside a
transaction by :class:`cortex.sqlitedb.SqliteDatabase` (one per commit, or several sharing one).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from typing import Any

from cortex import recordfields as fields
from cortex.queue.base import Lease
from cortex.recordfields import columns, record_from
from cortex.requests import (
    TERMINAL,
    Duplicate,
    NewRequest,
    Outcome,
    RequestRecord,
    Status,
    sources_of,
    status_values,
)
from cortex.store.base import Swept

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY,
    api TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    visible_since REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue(api, lease_until, seq);
"""

STORE_SCHEMA = """
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

#: the database's versions, in order: ``PRAGMA user_version`` says how many were applied. The first
#: is the schema of the releases before versioning (``IF NOT EXISTS``: their files skip it). Never
#: edit one that shipped; add the next.
MIGRATIONS: tuple[str, ...] = (
    QUEUE_SCHEMA + STORE_SCHEMA,
    # 2: the sweep finds terminal records that still name a payload blob
    "CREATE INDEX IF NOT EXISTS requests_blobs ON requests(id) WHERE payload_ref IS NOT NULL;",
    # 3: X-Cortex-Priority, kept on the record and on the queue row, whose rows are taken highest
    # priority first, then in order (the new index serves that scan, and what queue_ready served)
    "ALTER TABLE requests ADD COLUMN priority INTEGER;"
    " ALTER TABLE queue ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    " CREATE INDEX queue_priority ON queue(api, lease_until, priority DESC, seq);"
    " DROP INDEX IF EXISTS queue_ready;",
    # 4: the progress the user server reports while a request runs (issue 19), and when it was stored
    "ALTER TABLE requests ADD COLUMN progress TEXT; ALTER TABLE requests ADD COLUMN progress_at REAL;",
    # 5: a deleted API's last entry, whose spec and webhook secret its requests' webhooks are still sent with
    "CREATE TABLE retired_apis (name TEXT PRIMARY KEY, spec TEXT NOT NULL, spec_id TEXT NOT NULL,"
    " created_at REAL NOT NULL, updated_at REAL NOT NULL, meta TEXT NOT NULL DEFAULT '{}');",
    # 6: the count of each API's records in each status, kept by triggers in the transaction that
    # changes one (every step, whoever runs it), so that a queue summary reads a few rows, not the table
    """CREATE TABLE request_counts (
        api TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (api, status)
    ) WITHOUT ROWID;
    INSERT INTO request_counts SELECT api, status, count(*) FROM requests WHERE true GROUP BY api, status;
    CREATE TRIGGER request_counts_insert AFTER INSERT ON requests BEGIN
        INSERT INTO request_counts VALUES (NEW.api, NEW.status, 1) ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER request_counts_update AFTER UPDATE OF status ON requests WHEN OLD.status IS NOT NEW.status
    BEGIN
        UPDATE request_counts SET n = n - 1 WHERE api = OLD.api AND status = OLD.status;
        INSERT INTO request_counts VALUES (NEW.api, NEW.status, 1) ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER request_counts_delete AFTER DELETE ON requests BEGIN
        UPDATE request_counts SET n = n - 1 WHERE api = OLD.api AND status = OLD.status;
    END;""",
)

LIGHT = columns(fields.LIGHT)
FULL = columns(fields.FULL)


# ---- the queue table


def insert_row(conn: sqlite3.Connection, api: str, request_id: str, priority: int = 0) -> None:
    """Queue ``request_id`` (a no-op if it is queued already); higher ``priority`` rows are taken first."""
    conn.execute(
        "INSERT OR IGNORE INTO queue(api, id, visible_since, priority) VALUES (?, ?, ?, ?)",
        (api, request_id, time.time(), priority),
    )


def delete_leased(conn: sqlite3.Connection, lease: Lease) -> bool:
    """Ack: remove the row ``lease`` holds; False if the lease is no longer held."""
    return conn.execute("DELETE FROM queue WHERE id = ? AND token = ?", (lease.id, lease.token)).rowcount == 1


def take_leases(conn: sqlite3.Connection, api: str, now: float, visibility: float, limit: int) -> list[Lease]:
    """Lease up to ``limit`` visible rows of ``api``: highest priority first, then the longest visible
    (a lapsed lease since it lapsed, another row since it was queued or released)."""
    # two index range scans (lapsed leases, few: at most those in flight; then never-leased rows in
    # the take's order) keep a lease O(log n) however deep the queue is, where one
    # "lease_until <= now ORDER BY ..." would sort it all; the two are merged in the same order
    lapsed = conn.execute(
        "SELECT priority, lease_until, seq FROM queue WHERE api = ? AND lease_until > 0 AND lease_until <= ?"
        " ORDER BY priority DESC, lease_until LIMIT ?",
        (api, now, limit),
    ).fetchall()
    fresh = conn.execute(
        "SELECT priority, visible_since, seq FROM queue WHERE api = ? AND lease_until = 0"
        " ORDER BY priority DESC, seq LIMIT ?",
        (api, limit),
    ).fetchall()
    seqs = [row[2] for row in sorted(lapsed + fresh, key=lambda row: (-row[0], row[1], row[2]))[:limit]]
    leases = []
    for seq in seqs:
        token = secrets.randbits(62) + 1
        row = conn.execute(
            "UPDATE queue SET lease_until = ?, attempts = attempts + 1, token = ? WHERE seq = ? RETURNING id, attempts",
            (now + visibility, token, seq),
        ).fetchone()
        leases.append(Lease(api=api, id=row[0], attempts=row[1], token=token))
    return leases


# ---- the requests table


def key_holder(conn: sqlite3.Connection, request: NewRequest) -> Duplicate | None:
    """The unexpired request holding ``request``'s idempotency key, if any (read only)."""
    if request.idempotency_key is None:
        return None
    held = conn.execute(
        "SELECT id, body_digest FROM requests WHERE api = ? AND idempotency_key = ? AND expires_at > ?",
        (request.api, request.idempotency_key, request.created_at),
    ).fetchone()
    return None if held is None else Duplicate(id=held[0], body_digest=held[1])


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
        " idempotency_key, body_digest, webhook_url, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            request.priority,
        ),
    )
    return None


_START_SOURCES = status_values(sources_of(Status.IN_PROGRESS))
_START = (
    "UPDATE requests SET status = ?, started_at = ?, attempts = ?"
    f" WHERE id = ? AND api = ? AND status IN ({','.join('?' * len(_START_SOURCES))}) RETURNING {FULL}"
)


def start_record(
    conn: sqlite3.Connection, api: str, request_id: str, *, attempts: int, now: float
) -> RequestRecord | None:
    """Move a request to ``in_progress``; the record with its payload, or None if missing or terminal."""
    row = conn.execute(_START, (Status.IN_PROGRESS.value, now, attempts, request_id, api, *_START_SOURCES)).fetchone()
    return None if row is None else row_record(row)


def read_record(
    conn: sqlite3.Connection, api: str, request_id: str, *, now: float, full: bool = False
) -> RequestRecord | None:
    """The record, with its payload and headers if ``full``; None if missing or expired at ``now``."""
    row = conn.execute(
        f"SELECT {FULL if full else LIGHT} FROM requests WHERE id = ? AND api = ? AND expires_at > ?",
        (request_id, api, now),
    ).fetchone()
    return None if row is None else row_record(row)


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


def record_progress(conn: sqlite3.Connection, lease: Lease, progress: str, *, now: float) -> bool:
    """Store ``progress`` (JSON text) on the running request ``lease`` holds; False if the lease is not held
    (or the record is not ``in_progress``): nothing written."""
    held = conn.execute("SELECT 1 FROM queue WHERE id = ? AND token = ?", (lease.id, lease.token)).fetchone()
    if held is None:
        return False
    cursor = conn.execute(
        "UPDATE requests SET progress = ?, progress_at = ? WHERE id = ? AND api = ? AND status = ?",
        (progress, now, lease.id, lease.api, Status.IN_PROGRESS.value),
    )
    return cursor.rowcount == 1


def row_record(row: sqlite3.Row | tuple[Any, ...]) -> RequestRecord:
    """A record from a row of :data:`LIGHT` (or :data:`FULL`) columns."""
    names = fields.FULL if len(row) == len(fields.FULL) else fields.LIGHT
    return record_from(dict(zip(names, row, strict=True)))


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the :data:`MIGRATIONS` the database lacks, in the caller's transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, ddl in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in _statements(ddl):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")


def up_to_date(conn: sqlite3.Connection) -> bool:
    """Whether the database has every one of :data:`MIGRATIONS` (one read, no lock taken).

    A database at a later version (a newer cortex wrote it) counts as up to date too: :func:`migrate`
    would apply nothing to it either.
    """
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version >= len(MIGRATIONS)


def _statements(ddl: str) -> list[str]:
    """The statements of ``ddl``, one each: a trigger's body holds ';' of its own, so pieces are joined
    until SQLite calls them complete."""
    statements, pending = [], ""
    for piece in ddl.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    return statements


def status_counts(conn: sqlite3.Connection, api: str) -> dict[Status, int]:
    """How many of ``api``'s records are in each status (every status a key), from the trigger-kept counts."""
    counts = dict.fromkeys(Status, 0)
    for status, n in conn.execute("SELECT status, n FROM request_counts WHERE api = ?", (api,)):
        counts[Status(status)] = n
    return counts


_TERMINAL = status_values(sorted(TERMINAL))


def sweep_records(conn: sqlite3.Connection, *, now: float, limit: int) -> Swept:
    """Delete up to ``limit`` records expired at ``now`` with their queue rows, and hand over their blob keys
    and those of up to ``limit`` terminal records (whose payload is no longer needed)."""
    expired = conn.execute(
        "SELECT id, payload_ref FROM requests WHERE expires_at <= ? LIMIT ?", (now, limit)
    ).fetchall()
    ids = [row[0] for row in expired]
    marks = ",".join("?" * len(ids))
    if ids:
        conn.execute(f"DELETE FROM requests WHERE id IN ({marks})", ids)
        conn.execute(f"DELETE FROM queue WHERE id IN ({marks})", ids)
    keys = [row[1] for row in expired if row[1] is not None]
    done = conn.execute(
        f"SELECT id, payload_ref FROM requests WHERE payload_ref IS NOT NULL"
        f" AND status IN ({','.join('?' * len(_TERMINAL))}) LIMIT ?",
        (*_TERMINAL, limit),
    ).fetchall()
    if done:
        conn.execute(
            f"UPDATE requests SET payload_ref = NULL WHERE id IN ({','.join('?' * len(done))})",
            [row[0] for row in done],
        )
    return Swept(deleted=len(ids), blob_keys=keys + [row[1] for row in done])
