"""The embedded record store and catalog: tables in the state directory's SQLite database.

The records and the queue share that database; the steps that touch both are
:mod:`cortex.dataplane.sqlite`'s, one transaction each. The tables are :mod:`cortex.sqlitetables`'.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cortex.backends import Resources
from cortex.requests import Duplicate, NewRequest, Outcome, RequestRecord, Status
from cortex.sqlitedb import SqliteDatabase, open_database
from cortex.sqlitetables import (
    LIGHT,
    finish_record,
    insert_record,
    read_record,
    row_record,
    start_record,
    status_counts,
    sweep_records,
)
from cortex.store.base import ApiEntry, Catalog, RecordStore, Swept

#: what :meth:`SqliteRecordStore.recent` lists: no result either
_LISTED = LIGHT.replace(" result,", " NULL,")


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
        return await self._db.read(lambda c: read_record(c, api, request_id, now=now))

    async def recent(self, api: str, *, limit: int, now: float) -> list[RequestRecord]:
        # the primary key's index walked backwards reads a few rows whatever the table's size;
        # "+expires_at" keeps the planner off the expiry index (every unexpired row, then a sort)
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT {_LISTED} FROM requests WHERE api = ? AND +expires_at > ? ORDER BY id DESC LIMIT ?",
                (api, now, limit),
            ).fetchall()
        )
        return [row_record(row) for row in rows]

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

    async def counts(self, api: str, *, now: float) -> dict[Status, int]:
        return await self._db.read(lambda c: status_counts(c, api))

    async def sweep(self, *, now: float, limit: int = 1000) -> Swept:
        swept = await self._db.write(lambda c: sweep_records(c, now=now, limit=limit))
        # every sweep, not only one that deleted: a finished request's payload was cleared meanwhile
        self._db.scrub()
        return swept


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
        def retire(c: sqlite3.Connection) -> bool:
            c.execute(f"INSERT OR REPLACE INTO retired_apis SELECT {_API_COLUMNS} FROM apis WHERE name = ?", (name,))
            return c.execute("DELETE FROM apis WHERE name = ?", (name,)).rowcount == 1

        return await self._db.write(retire)

    async def get_retired_api(self, name: str) -> ApiEntry | None:
        row = await self._db.read(
            lambda c: c.execute(f"SELECT {_API_COLUMNS} FROM retired_apis WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else _entry(row)


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
