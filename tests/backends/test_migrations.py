"""Versioned migrations: a database written by the previous release's schema is brought up to date and works.

Also the rule that keeps the declaration and the schemas together: once migrated, the requests
table has exactly the columns :data:`cortex.recordfields.FIELDS` declares (a field declared without
its migration, or a migration without its field, fails here).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import asyncpg

from cortex.backends import BackendUrls, open_backends
from cortex.postgresdb import split_url
from cortex.recordfields import FIELDS
from cortex.requests import Status
from cortex.sqlitetables import MIGRATIONS as SQLITE_MIGRATIONS
from cortex.store.postgres import MIGRATIONS as POSTGRES_MIGRATIONS
from tests.servers.databases import POSTGRES_URL, postgres_namespace

#: the previous release's tables (before versioning): what its files and schemas hold
PREVIOUS_SQLITE = SQLITE_MIGRATIONS[0]
PREVIOUS_POSTGRES = POSTGRES_MIGRATIONS[0]
DECLARED = sorted(field.name for field in FIELDS)


def _old_row(created: float) -> tuple[object, ...]:
    return ("old", "api", "in_queue", created, created + 600, '[["X-A","1"]]', b'{"n":1}')


async def test_a_sqlite_file_of_the_previous_release_is_migrated(tmp_path: Path) -> None:
    created = time.time()
    with sqlite3.connect(tmp_path / "cortex.db") as conn:
        conn.executescript(PREVIOUS_SQLITE)
        conn.execute(
            "INSERT INTO requests(id, api, status, created_at, expires_at, headers, payload) VALUES (?,?,?,?,?,?,?)",
            _old_row(created),
        )
        conn.execute("INSERT INTO queue(api, id, visible_since) VALUES ('api', 'old', ?)", (created,))
    conn.close()
    backends = await open_backends(BackendUrls.for_state_dir(tmp_path))
    try:
        record = await backends.records.get("api", "old", now=time.time())
        assert record is not None and record.status == "in_queue"
        # the counts by status start from the rows the file held (then the triggers keep them)
        assert (await backends.records.counts("api", now=time.time()))[Status.IN_QUEUE] == 1
        (taken,) = await backends.plane.take("api", visibility=30, limit=1, max_attempts=3, timeout=1.0)
        assert taken.started and taken.record is not None and taken.record.payload == b'{"n":1}'
        assert taken.record.headers == (("X-A", "1"),)
        counts = await backends.records.counts("api", now=time.time())
        assert (counts[Status.IN_QUEUE], counts[Status.IN_PROGRESS]) == (0, 1)
    finally:
        await backends.aclose()
    conn = sqlite3.connect(tmp_path / "cortex.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(SQLITE_MIGRATIONS)
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(requests)")}
        assert "requests_blobs" in indexes
        assert sorted(row[1] for row in conn.execute("PRAGMA table_info(requests)")) == DECLARED
    finally:
        conn.close()


async def test_a_postgres_schema_of_the_previous_release_is_migrated(tmp_path: Path) -> None:
    async with postgres_namespace() as url:
        _, schema = split_url(url)
        conn = await asyncpg.connect(POSTGRES_URL)
        created = time.time()
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            await conn.execute(PREVIOUS_POSTGRES.replace("{s}", f'"{schema}"'))
            await conn.execute(
                f'INSERT INTO "{schema}".requests(id, api, status, created_at, expires_at, headers, payload)'
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                *_old_row(created),
            )
            backends = await open_backends(BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path}/blobs"))
            try:
                record = await backends.records.get("api", "old", now=time.time())
                assert record is not None and record.status == "in_queue"
                assert (await backends.records.counts("api", now=time.time()))[Status.IN_QUEUE] == 1
                started = await backends.records.start("api", "old", attempts=1, now=time.time())
                assert started is not None and started.payload == b'{"n":1}'
                counts = await backends.records.counts("api", now=time.time())
                assert (counts[Status.IN_QUEUE], counts[Status.IN_PROGRESS]) == (0, 1)
            finally:
                await backends.aclose()
            version = await conn.fetchval(f'SELECT max(version) FROM "{schema}".store_version')
            assert version == len(POSTGRES_MIGRATIONS)
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = $2", schema, "requests_blobs"
                )
                == 1
            )
            names = await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = $1 AND table_name = 'requests'",
                schema,
            )
            assert sorted(row[0] for row in names) == DECLARED
        finally:
            await conn.close()
