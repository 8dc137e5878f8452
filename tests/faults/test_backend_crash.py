"""Nothing acknowledged is lost when the backend's own server crashes and restarts (DESIGN §4).

A local cluster runs on a server of the test's own (never the shared ones: other people use them)
under a steady load at 80% of its measured capacity:

- **Redis** with its append-only file fsynced on every write (``appendfsync always``: what Redis
  acknowledged is on disk) is killed with SIGKILL and restarted on the same port and folder;
- **PostgreSQL** with its durable defaults gets an immediate restart (``pg_ctl restart -m
  immediate``: no checkpoint, recovery from the WAL).

While the server is down the gateway answers 503 (never 500) or not at all; once it is back the
load is acknowledged again, and every request acknowledged before, during or after the crash
completes with its own payload (:mod:`tests.faults.ledger`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cortex.backends import BackendUrls
from tests.cluster.conftest import ClusterFactory
from tests.faults.conftest import FaultCluster, cluster_options, report, serving
from tests.faults.ledger import Ledger, Verdict
from tests.servers.private_postgres import private_postgres
from tests.servers.private_redis import private_redis

pytestmark = pytest.mark.slow

#: seconds of load before the crash and after the recovery
SETTLE = 3.0
#: seconds the Redis server stays down (PostgreSQL's restart takes what it takes)
DOWN = 2.0


@pytest.mark.timeout(120)
async def test_redis_killed_with_its_aof_fsynced_always_loses_nothing_acknowledged(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    async with private_redis(folder, durable=True) as server:
        url = f"{server.url}?prefix=crash"
        urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path.resolve() / 'blobs'}")
        async with serving(make_cluster, "redis", cluster_options("redis", urls)) as cluster:
            ledger = await Ledger.sized(cluster.endpoint)
            async with ledger.running():
                await asyncio.sleep(SETTLE)
                async with ledger.outage("redis kill -9"):
                    await asyncio.to_thread(server.kill)
                    await asyncio.sleep(DOWN)
                    await server.restart()
                await asyncio.sleep(SETTLE)
            await _judge(cluster, ledger, "redis kill -9 (AOF always)")


@pytest.mark.timeout(120)
async def test_postgres_restarted_immediately_loses_nothing_acknowledged(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    async with private_postgres() as server:
        url = f"{server.url}?schema=crash"
        urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path.resolve() / 'blobs'}")
        async with serving(make_cluster, "postgres", cluster_options("postgres", urls)) as cluster:
            ledger = await Ledger.sized(cluster.endpoint)
            async with ledger.running():
                await asyncio.sleep(SETTLE)
                async with ledger.outage("postgres immediate restart"):
                    await asyncio.to_thread(server.restart_immediate)
                await asyncio.sleep(SETTLE)
            await _judge(cluster, ledger, "postgres restart -m immediate")


async def _judge(cluster: FaultCluster, ledger: Ledger, test: str) -> None:
    verdict = Verdict(ledger, await ledger.outcomes(timeout=60), cluster.runs())
    report(test, cluster.backend, verdict)
    verdict.check()
