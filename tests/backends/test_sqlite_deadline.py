"""The embedded backend's one wait, for another process's write lock, has a deadline set in the URL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cortex.backends import Resources
from cortex.errors import BackendError
from cortex.sqlitedb import BUSY_TIMEOUT_S, open_database


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
