"""The database on a host of its own, cut off from the cluster by a partition and healed (DESIGN §4).

The Redis server runs in a network namespace the test makes (:mod:`tests.servers.netns`), reached
over a veth pair; the local cluster (gateway, dequeuers, user servers) stays in this one. Under a
steady load at 80% of the measured capacity the pair is cut for a few seconds: packets are dropped
without a word, so every backend call of the gateway and the dequeuers meets silence, not a
refused connection. Then the pair is healed.

What must hold (:mod:`tests.faults.ledger`): no 500; errors only while the cut lasts; service within
a few seconds of healing; every acknowledged request completes with its own payload. Where the
gateway has its backend deadlines (``/readyz`` answers, issue 18 point 1), also: every answer during
the cut comes within the deadline, none left hanging past the client's timeout, and ``/readyz``
fails while the database is cut off.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from cortex.backends import BackendUrls
from tests.cluster.conftest import ClusterFactory
from tests.faults.conftest import cluster_options, report, serving
from tests.faults.ledger import Ledger, Verdict
from tests.servers import netns
from tests.servers.private_redis import private_redis

pytestmark = pytest.mark.slow

#: seconds of load before the cut and after the recovery
SETTLE = 3.0
#: seconds the database stays cut off
CUT = 4.0
#: seconds after healing within which the gateway must serve again (issue 18: 5 s)
RECOVERY = 5.0


async def _ready(gateway: str) -> int:
    """The status ``/readyz`` answers (404 before the deadlines work; 0 for no answer within 5 s)."""
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            return (await client.get(f"{gateway}/readyz")).status_code
        except httpx.HTTPError:
            return 0


@pytest.mark.timeout(150)
async def test_a_database_cut_off_and_healed_loses_nothing_acknowledged(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    with netns.host() as db:
        async with private_redis(folder, netns=db) as server:
            url = f"{server.url}?prefix=partition"
            urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path.resolve() / 'blobs'}")
            async with serving(make_cluster, "redis", cluster_options("redis", urls)) as cluster:
                gateway = cluster.local.gateway
                deadlines = await _ready(gateway) == 200  # the gateway has /readyz: it has its deadlines
                ledger = await Ledger.sized(cluster.endpoint)
                async with ledger.running():
                    await asyncio.sleep(SETTLE)
                    async with ledger.outage("database cut off", recovery_timeout=30) as window:
                        await asyncio.to_thread(db.cut)
                        await asyncio.sleep(CUT / 2)
                        ready_during_cut = await _ready(gateway)
                        await asyncio.sleep(max(0.0, window.start + CUT - time.monotonic()))
                        await asyncio.to_thread(db.heal)
                    await asyncio.sleep(SETTLE)
                verdict = Verdict(ledger, await ledger.outcomes(timeout=60), cluster.runs())
                report("partition: database cut off", "redis", verdict)
                slowest = max((a.answered - a.sent for a in ledger.errors), default=0.0)
                print(f"readyz during the cut: {ready_during_cut}; slowest error answer {slowest:.1f}s")
                verdict.check()
                if deadlines:
                    assert ready_during_cut not in (0, 200), f"/readyz answered {ready_during_cut} while cut off"
                    assert not ledger.answers[0], f"{ledger.answers[0]} answers never came during the cut"
                    assert window.recovery <= RECOVERY, f"served again {window.recovery:.1f}s after healing"
