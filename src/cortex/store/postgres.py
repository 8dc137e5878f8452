"""The PostgreSQL record store and catalog: the SQLite tables, in a schema of a shared database.

Status changes are one guarded ``UPDATE ... WHERE status = ANY(<sources>)`` (the sources from
:func:`cortex.requests.sources_of`), so a terminal status never changes, whatever races.
Retention is :meth:`PostgresRecordStore.sweep`: ``DELETE ... RETURNING`` the payload blob keys of
records expired at ``now``, in batches whose rows concurrent sweepers skip (``SKIP LOCKED``).

Idempotency keys are unique per API through a partial unique index; :meth:`PostgresRecordStore.create`
inserts with ``ON CONFLICT DO NOTHING`` on it, and on a conflict reads the holder in the same
transaction: an unexpired holder is the :class:`~cortex.requests.Duplicate`, an expired one gives
up its key and the insert is tried again.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from cortex import recordfields as fields
from cortex.backends import Resources
from cortex.errors import BackendError
from cortex.postgresdb import PostgresServer, open_server, wrap_errors
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
from cortex.store.base import ApiEntry, Catalog, RecordStore, Swept

SCHEMA = """
CREATE TABLE IF NOT EXISTS {s}.requests (
    id TEXT PRIMARY KEY,
    api TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    result BYTEA,
    error_kind TEXT,
    error_message TEXT,
    headers TEXT,
    payload BYTEA,
    payload_ref TEXT,
    idempotency_key TEXT,
    body_digest TEXT,
    webhook_url TEXT,
    webhook TEXT
);
-- tables of an earlier version; checked first, since ALTER TABLE locks the table even when it changes nothing
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = '{s}.requests'::regclass AND attname = 'webhook' AND NOT attisdropped) THEN
        ALTER TABLE {s}.requests ADD COLUMN IF NOT EXISTS idempotency_key TEXT,
            ADD COLUMN IF NOT EXISTS body_digest TEXT,
            ADD COLUMN IF NOT EXISTS webhook_url TEXT,
            ADD COLUMN IF NOT EXISTS webhook TEXT;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS requests_expiry ON {s}.requests (expires_at);
CREATE UNIQUE INDEX IF NOT EXISTS requests_idempotency ON {s}.requests (api, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.apis (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    spec_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
"""

#: the schema's versions, in order (``{s}.store_version`` says how many were applied). The first is
#: the schema of the releases before versioning (``IF NOT EXISTS``: their schemas skip it). Never
#: edit one that shipped; add the next.
MIGRATIONS: tuple[str, ...] = (
    SCHEMA,
    # 2: the sweep finds terminal records that still name a payload blob
    "CREATE INDEX IF NOT EXISTS requests_blobs ON {s}.requests (id) WHERE payload_ref IS NOT NULL",
    # 3: X-Cortex-Priority, as the client sent it (the queue keeps its own copy, for the take's order)
    "ALTER TABLE {s}.requests ADD COLUMN IF NOT EXISTS priority INTEGER",
    # 4: the progress the user server reports while a request runs (issue 19), and when it was stored
    "ALTER TABLE {s}.requests ADD COLUMN IF NOT EXISTS progress TEXT,"
    " ADD COLUMN IF NOT EXISTS progress_at DOUBLE PRECISION",
    # 5: a deleted API's last entry, whose spec and webhook secret its requests' webhooks are still sent with
    "CREATE TABLE IF NOT EXISTS {s}.retired_apis (name TEXT PRIMARY KEY, spec TEXT NOT NULL, spec_id TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, meta TEXT NOT NULL DEFAULT '{}')",
    # 6: the count of each API's records in each status (:meth:`PostgresRecordStore.counts`). Triggers
    # append the changes (+n, -n per API and status) each statement makes, in its transaction: one row
    # per statement (a batch of submissions is one), and no shared counter row on a step's path, so
    # concurrent steps never wait on one another for it. Reading folds them in. The triggers come
    # before the first count, in this transaction, so no step slips between the two; the table of
    # changes stays small (folded by every read and every sweep), so it is vacuumed early. The update
    # trigger fires on any update (PostgreSQL refuses transition tables with a column list); one that
    # changes no status (a webhook state, say) appends nothing.
    """
CREATE TABLE {s}.request_counts (api TEXT NOT NULL, status TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (api, status));
CREATE TABLE {s}.request_count_changes (api TEXT NOT NULL, status TEXT NOT NULL, change BIGINT NOT NULL)
    WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
CREATE FUNCTION {s}.count_added_requests() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.request_count_changes SELECT api, status, count(*) FROM added GROUP BY api, status;
    RETURN NULL;
END $$;
CREATE FUNCTION {s}.count_removed_requests() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.request_count_changes SELECT api, status, -count(*) FROM removed GROUP BY api, status;
    RETURN NULL;
END $$;
CREATE FUNCTION {s}.count_changed_requests() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.request_count_changes
    SELECT api, status, sum(change) FROM (
        SELECT b.api, b.status, -1 AS change FROM before b JOIN after a USING (id) WHERE a.status <> b.status
        UNION ALL
        SELECT a.api, a.status, 1 FROM before b JOIN after a USING (id) WHERE a.status <> b.status
    ) AS moved GROUP BY api, status;
    RETURN NULL;
END $$;
CREATE TRIGGER request_counts_insert AFTER INSERT ON {s}.requests REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_added_requests();
CREATE TRIGGER request_counts_delete AFTER DELETE ON {s}.requests REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_removed_requests();
CREATE TRIGGER request_counts_update AFTER UPDATE ON {s}.requests REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_changed_requests();
INSERT INTO {s}.request_counts SELECT api, status, count(*) FROM {s}.requests GROUP BY api, status;
""",
)

_LIGHT = columns(fields.LIGHT)
_FULL = columns(fields.FULL)
LIGHT, FULL = _LIGHT, _FULL

_CREATE = """
INSERT INTO {s}.requests (id, api, status, created_at, expires_at, headers, payload, payload_ref,
    idempotency_key, body_digest, webhook_url, priority)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (api, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
"""
_HOLDER = """
SELECT id, body_digest, expires_at FROM {s}.requests WHERE api = $1 AND idempotency_key = $2 FOR UPDATE
"""
_FREE_KEY = "UPDATE {s}.requests SET idempotency_key = NULL WHERE id = $1"
#: inserts tried by one create; each retry follows a holder that expired or vanished meanwhile
_CREATE_TRIES = 5
_SET_WEBHOOK = "UPDATE {s}.requests SET webhook = $3 WHERE id = $1 AND api = $2"
_GET = f"SELECT {_LIGHT} FROM {{s}}.requests WHERE id = $1 AND api = $2 AND expires_at > $3"
# the primary key's index, walked backwards, with no result column (what a listing leaves out)
_RECENT = f"""
SELECT {_LIGHT.replace(" result,", " NULL::bytea,")} FROM {{s}}.requests
WHERE api = $1 AND expires_at > $2 ORDER BY id DESC LIMIT $3
"""
_START = f"""
UPDATE {{s}}.requests SET status = $3, started_at = $4, attempts = $5
WHERE id = $1 AND api = $2 AND status = ANY($6::text[]) RETURNING {_FULL}
"""
_FINISH = """
UPDATE {s}.requests SET status = $3, finished_at = $4, result = $5, error_kind = $6, error_message = $7,
    headers = NULL, payload = NULL
WHERE id = $1 AND api = $2 AND status = ANY($8::text[])
"""
# $1 now, $2 limit, $3 terminal statuses. Rows (1, blob key or NULL) per expired record deleted (with its
# queue row), (2, blob key) per terminal record whose payload blob is handed over.
_SWEEP = """
WITH gone AS (
    DELETE FROM {s}.requests WHERE id IN (
        SELECT id FROM {s}.requests WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
    ) RETURNING id, payload_ref
), unqueued AS (
    DELETE FROM {s}.queue WHERE id IN (SELECT id FROM gone)
), done AS (
    UPDATE {s}.requests AS r SET payload_ref = NULL
    FROM (
        SELECT id, payload_ref FROM {s}.requests
        WHERE payload_ref IS NOT NULL AND status = ANY($3::text[]) AND expires_at > $1
        LIMIT $2 FOR UPDATE SKIP LOCKED
    ) AS old
    WHERE r.id = old.id RETURNING old.payload_ref
)
SELECT 1, payload_ref FROM gone UNION ALL SELECT 2, payload_ref FROM done
"""
_TERMINAL = list(status_values(sorted(TERMINAL)))
# $1 api, or NULL for every API: the changes the trigger appended, added into the counts (rows locked in
# one order, so two folds never deadlock; a change a concurrent fold took is skipped)
_FOLD = """
WITH folded AS (
    DELETE FROM {s}.request_count_changes WHERE $1::text IS NULL OR api = $1 RETURNING api, status, change
)
INSERT INTO {s}.request_counts (api, status, n)
SELECT api, status, sum(change) FROM folded GROUP BY api, status ORDER BY api, status
ON CONFLICT (api, status) DO UPDATE SET n = {s}.request_counts.n + excluded.n
"""
# the counts and the changes not folded yet, in one snapshot: exact whatever folds run meanwhile
_COUNTS = """
SELECT status, sum(n)::bigint FROM (
    SELECT status, n FROM {s}.request_counts WHERE api = $1
    UNION ALL SELECT status, change FROM {s}.request_count_changes WHERE api = $1
) AS both_ GROUP BY status
"""


class PostgresRecordStore(RecordStore):
    """Request records in PostgreSQL; small payloads live in the row, large ones in blobs."""

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self._pool = server.pool

    async def create(self, request: NewRequest) -> Duplicate | None:
        args = (
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
        )
        insert = self._server.sql(_CREATE)
        with wrap_errors("create", self._server.url):
            if request.idempotency_key is None:
                await self._pool.execute(insert, *args)
                return None
            async with self._pool.acquire() as conn, conn.transaction():
                for _ in range(_CREATE_TRIES):
                    if await conn.execute(insert, *args) == "INSERT 0 1":
                        return None
                    held = await conn.fetchrow(self._server.sql(_HOLDER), request.api, request.idempotency_key)
                    if held is None:  # freed or deleted since the insert saw it: try again
                        continue
                    if held[2] > request.created_at:
                        return Duplicate(id=held[0], body_digest=held[1])
                    # expired but not swept yet: it no longer holds the key
                    await conn.execute(self._server.sql(_FREE_KEY), held[0])
        raise BackendError(
            f"PostgreSQL create failed at {self._server.url}: idempotency key of request {request.id}"
            f" still contended after {_CREATE_TRIES} tries"
        )

    async def get(self, api: str, request_id: str, *, now: float) -> RequestRecord | None:
        with wrap_errors("get", self._server.url):
            row = await self._pool.fetchrow(self._server.sql(_GET), request_id, api, now)
        return None if row is None else _record(row)

    async def recent(self, api: str, *, limit: int, now: float) -> list[RequestRecord]:
        with wrap_errors("recent", self._server.url):
            rows = await self._pool.fetch(self._server.sql(_RECENT), api, now, limit)
        return [_record(row) for row in rows]

    async def start(self, api: str, request_id: str, *, attempts: int, now: float) -> RequestRecord | None:
        sources = list(status_values(sources_of(Status.IN_PROGRESS)))
        with wrap_errors("start", self._server.url):
            row = await self._pool.fetchrow(
                self._server.sql(_START), request_id, api, Status.IN_PROGRESS.value, now, attempts, sources
            )
        return None if row is None else _record(row)

    async def finish(self, api: str, request_id: str, outcome: Outcome, *, now: float) -> bool:
        error = outcome.error
        sources = list(status_values(sources_of(outcome.status)))
        with wrap_errors("finish", self._server.url):
            status = await self._pool.execute(
                self._server.sql(_FINISH),
                request_id,
                api,
                outcome.status.value,
                now,
                outcome.result,
                None if error is None else error.kind,
                None if error is None else error.message,
                sources,
            )
        return status == "UPDATE 1"

    async def set_webhook(self, api: str, request_id: str, state: dict[str, Any]) -> bool:
        text = json.dumps(state, separators=(",", ":"))
        with wrap_errors("webhook state", self._server.url):
            status = await self._pool.execute(self._server.sql(_SET_WEBHOOK), request_id, api, text)
        return status == "UPDATE 1"

    async def counts(self, api: str, *, now: float) -> dict[Status, int]:
        # the fold keeps the changes few (the sweep folds every API's too), so the read stays small
        with wrap_errors("counts", self._server.url):
            await self._pool.execute(self._server.sql(_FOLD), api)
            rows = await self._pool.fetch(self._server.sql(_COUNTS), api)
        counts = dict.fromkeys(Status, 0)
        for status, n in rows:
            counts[Status(status)] = int(n)
        return counts

    async def sweep(self, *, now: float, limit: int = 1000) -> Swept:
        with wrap_errors("sweep", self._server.url):
            rows = await self._pool.fetch(self._server.sql(_SWEEP), now, limit, _TERMINAL)
            await self._pool.execute(self._server.sql(_FOLD), None)
        return Swept(deleted=sum(row[0] == 1 for row in rows), blob_keys=[row[1] for row in rows if row[1] is not None])


def row_record(row: asyncpg.Record | tuple[Any, ...]) -> RequestRecord:
    """A record from a row of :data:`LIGHT` (or :data:`FULL`) columns."""
    return _record(row)


def _record(row: asyncpg.Record | tuple[Any, ...]) -> RequestRecord:
    names = fields.FULL if len(row) == len(fields.FULL) else fields.LIGHT
    return record_from(dict(zip(names, tuple(row), strict=True)))


_API_COLUMNS = "name, spec, spec_id, created_at, updated_at, meta"
_PUT_API = f"""
INSERT INTO {{s}}.apis (name, spec, spec_id, created_at, updated_at, meta) VALUES ($1, $2, $3, $4, $4, $5)
ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, spec_id = excluded.spec_id,
    updated_at = excluded.updated_at, meta = excluded.meta
RETURNING {_API_COLUMNS}
"""

# one statement: the entry leaves the catalog and is kept as retired, or neither
_RETIRE_API = f"""
WITH gone AS (DELETE FROM {{s}}.apis WHERE name = $1 RETURNING {_API_COLUMNS})
INSERT INTO {{s}}.retired_apis ({_API_COLUMNS}) SELECT {_API_COLUMNS} FROM gone
ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, spec_id = excluded.spec_id,
    created_at = excluded.created_at, updated_at = excluded.updated_at, meta = excluded.meta
"""


class PostgresCatalog(Catalog):
    """Deployed API specs in PostgreSQL."""

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self._pool = server.pool

    async def put_api(
        self, name: str, spec: dict[str, Any], spec_id: str, *, now: float, meta: dict[str, Any] | None = None
    ) -> ApiEntry:
        text, meta_text = json.dumps(spec, sort_keys=True), json.dumps(meta or {}, sort_keys=True)
        with wrap_errors("catalog write", self._server.url):
            row = await self._pool.fetchrow(self._server.sql(_PUT_API), name, text, spec_id, now, meta_text)
        assert row is not None  # INSERT ... RETURNING always returns the row
        return _entry(row)

    async def get_api(self, name: str) -> ApiEntry | None:
        with wrap_errors("catalog read", self._server.url):
            row = await self._pool.fetchrow(
                self._server.sql(f"SELECT {_API_COLUMNS} FROM {{s}}.apis WHERE name = $1"), name
            )
        return None if row is None else _entry(row)

    async def list_apis(self) -> list[ApiEntry]:
        with wrap_errors("catalog read", self._server.url):
            rows = await self._pool.fetch(
                self._server.sql(f'SELECT {_API_COLUMNS} FROM {{s}}.apis ORDER BY name COLLATE "C"')
            )
        return [_entry(row) for row in rows]

    async def delete_api(self, name: str) -> bool:
        with wrap_errors("catalog write", self._server.url):
            status = await self._pool.execute(self._server.sql(_RETIRE_API), name)
        return status == "INSERT 0 1"

    async def get_retired_api(self, name: str) -> ApiEntry | None:
        with wrap_errors("catalog read", self._server.url):
            row = await self._pool.fetchrow(
                self._server.sql(f"SELECT {_API_COLUMNS} FROM {{s}}.retired_apis WHERE name = $1"), name
            )
        return None if row is None else _entry(row)


def _entry(row: asyncpg.Record) -> ApiEntry:
    return ApiEntry(
        name=row[0],
        spec=json.loads(row[1]),
        spec_id=row[2],
        created_at=row[3],
        updated_at=row[4],
        meta=json.loads(row[5]),
    )


async def open_store(url: str, resources: Resources) -> tuple[PostgresRecordStore, PostgresCatalog]:
    """The record store and catalog in the PostgreSQL database of ``postgresql://...?schema=cortex``."""
    server = await open_server(url, resources, "", migrations=MIGRATIONS, versions="store_version")
    return PostgresRecordStore(server), PostgresCatalog(server)
