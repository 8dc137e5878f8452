"""A state directory written before the queue knew when its rows became visible opens and works."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from cortex.backends import BackendUrls, open_backends

#: the queue table as the first versions created it (no ``visible_since``)
OLD_QUEUE = """
CREATE TABLE queue (
    seq INTEGER PRIMARY KEY,
    api TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_ready ON queue(api, lease_until, seq);
INSERT INTO queue(api, id) VALUES ('api', 'old');
"""


async def test_an_old_queue_table_gains_its_visibility_times(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "cortex.db") as conn:
        conn.executescript(OLD_QUEUE)
    opened = time.time()
    backends = await open_backends(BackendUrls.for_state_dir(tmp_path))
    try:
        depth = await backends.queue.depth("api")
        # the old row counts as visible from the upgrade, not from 1970
        assert depth.queued == 1 and 0.0 <= depth.oldest_queued_age <= time.time() - opened + 0.05
        await backends.queue.enqueue("api", "new")
        leases = await backends.queue.lease("api", visibility=30, limit=2)
        assert [lease.id for lease in leases] == ["old", "new"]
    finally:
        await backends.aclose()
