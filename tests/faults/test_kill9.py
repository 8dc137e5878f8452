"""Nothing acknowledged is lost when any process of a local cluster is killed with SIGKILL (DESIGN §4).

Under a steady load, the gateway, a dequeuer, a user container and the cluster process itself are
killed in turn. The cluster restarts the first three itself; the last is restarted with ``cortex
cluster up``, which must first stop what the killed cluster left running. Then every request the
gateway acknowledged must end, and each completed one must hold the user server's answer to it:
its own id and its own payload (:mod:`tests.faults.ledger`). Requests refused while the gateway
was down were never acknowledged and are only counted, within the fault's outage window.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.faults.conftest import REPLICAS, FaultCluster, kill9, report
from tests.faults.ledger import Ledger, Verdict

pytestmark = pytest.mark.slow

#: seconds of load before the first fault, between two, and after the last
SETTLE = 2.0


async def kill_gateway(cluster: FaultCluster) -> None:
    (old,) = (await asyncio.to_thread(cluster.pids))["gateway"]
    kill9(old)
    await cluster.wait("a new gateway", lambda p: len(p["gateway"]) == 1 and old not in p["gateway"])
    await cluster.wait_serving()


async def kill_dequeuer(cluster: FaultCluster) -> None:
    old = min((await asyncio.to_thread(cluster.pids))["dequeuer"])
    kill9(old)
    await cluster.wait("a new dequeuer", lambda p: len(p["dequeuer"]) == REPLICAS and old not in p["dequeuer"])
    await cluster.wait_serving()


async def kill_user_container(cluster: FaultCluster) -> None:
    old = min((await asyncio.to_thread(cluster.pids))["user"])
    kill9(old)
    await cluster.wait("a new user container", lambda p: len(p["user"]) == REPLICAS and old not in p["user"])
    await cluster.wait_serving()


async def kill_cluster(cluster: FaultCluster) -> None:
    before = await asyncio.to_thread(cluster.pids)
    (old,) = before["cluster"]
    kill9(old)
    # gone, not only dead: `cortex cluster up` takes a zombie not yet reaped for a running cluster
    await cluster.wait("the cluster process to be gone", lambda _: not Path(f"/proc/{old}").exists())
    await asyncio.to_thread(cluster.restart)
    await cluster.wait_serving()
    after = await asyncio.to_thread(cluster.pids)
    left = {kind: before[kind] & after[kind] for kind in before if before[kind] & after[kind]}
    assert not left, f"processes of the killed cluster still run beside the new one: {left}"
    assert {kind: len(pids) for kind, pids in after.items()} == {
        "cluster": 1,
        "gateway": 1,
        "dequeuer": REPLICAS,
        "user": REPLICAS,
    }


FAULTS: list[tuple[str, Callable[[FaultCluster], Awaitable[None]]]] = [
    ("gateway", kill_gateway),
    ("dequeuer", kill_dequeuer),
    ("user container", kill_user_container),
    ("cluster", kill_cluster),
]


@pytest.mark.timeout(180)
async def test_every_acknowledged_request_ends_with_its_own_answer_under_kill_9(fault_cluster: FaultCluster) -> None:
    ledger = await Ledger.sized(fault_cluster.endpoint)
    acknowledged = [0]  # before each fault, then at the end
    async with ledger.running():
        await asyncio.sleep(SETTLE)
        for name, fault in FAULTS:
            acknowledged.append(len(ledger.acknowledged))
            async with ledger.outage(name):
                await fault(fault_cluster)
            await asyncio.sleep(SETTLE)
    acknowledged.append(len(ledger.acknowledged))
    verdict = Verdict(ledger, await ledger.outcomes(timeout=60), fault_cluster.runs())
    report("kill -9 of each process", fault_cluster.backend, verdict)

    assert all(b > a for a, b in itertools.pairwise(acknowledged)), f"no load went through at times: {acknowledged}"
    # a crash costs an attempt, and no request is near max_attempts here: each one ends completed
    verdict.check()
    # and the restarted cluster, stopped, leaves nothing behind: no process of the killed one either
    await asyncio.to_thread(fault_cluster.local.cortex, "cluster", "down")
    assert await asyncio.to_thread(fault_cluster.local.processes) == []
