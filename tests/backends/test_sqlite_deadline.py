"""The embedded backend's one wait, for another process's write lock, has a deadline set in the URL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cortex.backends import Resources
from cortex.errors import BackendError
from cortex.sqlitedb import BUSY_TIMEOUT_S, open_database
from cortex.sqlitetables import MIGRATIONS


async def test_a_write_waits_for_a_held_lock_no_longer_than_busy_timeout(tmp_path: Path) -> None:
    resources = Resources()
    db = await open_database(f"sqlite:///{tmp_path / 'cortex.db'}?busy_timeout=0.5", resources)
    assert db.busy_timeout == 0.5
    other = sqlite3.connect(tmp_path / "cortex.db", isolation_level=None)  # another process, in effect
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(BackendError, match="locked"):
            await db.write(lambda conn: conn.execute("CREATE TABLE t (x)"))
        waited = time.monotonic() - started
        assert 0.4 < waited < 5, waited
        other.execute("ROLLBACK")
        await db.write(lambda conn: conn.execute("CREATE TABLE t (x)"))  # the lock free: it passes
    finally:
        other.close()
        await resources.aclose()


async def test_the_default_and_a_bad_busy_timeout(tmp_path: Path) -> None:
    resources = Resources()
    try:
        assert (await open_database(f"sqlite:///{tmp_path / 'a.db'}", resources)).busy_timeout == BUSY_TIMEOUT_S
        with pytest.raises(BackendError, match="give seconds"):
            await open_database(f"sqlite:///{tmp_path / 'b.db'}?busy_timeout=never", resources)
    finally:
        await resources.aclose()


async def test_a_file_at_the_latest_schema_opens_while_another_process_writes(tmp_path: Path) -> None:
    # a replica's dequeuer starting while the gateway holds the write lock needs no lock of its own
    path = tmp_path / "cortex.db"
    first = Resources()
    await open_database(f"sqlite:///{path}", first)
    await first.aclose()
    other = sqlite3.connect(path, isolation_level=None)
    later = Resources()
    try:
        other.execute("BEGIN IMMEDIATE")
        db = await open_database(f"sqlite:///{path}?busy_timeout=0.2", later)  # it would fail "locked" otherwise
        assert db.path == path.resolve()
    finally:
        other.execute("ROLLBACK")
        other.close()
        await later.aclose()


async def test_a_new_file_is_still_migrated(tmp_path: Path) -> None:
    resources = Resources()
    try:
        await open_database(f"sqlite:///{tmp_path / 'new.db'}", resources)
    finally:
        await resources.aclose()
    conn = sqlite3.connect(tmp_path / "new.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()
