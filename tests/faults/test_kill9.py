"""Nothing acknowledged is lost when any process of a local cluster is killed with SIGKILL (DESIGN §4).

Under a steady load, the gateway, a dequeuer, a user container and the cluster process itself are
killed in turn. The cluster restarts the first three itself; the last is restarted with ``cortex
cluster up``, which must first stop what the killed cluster left running. Then every request the
gateway acknowledged must end, and each completed one must hold the user server's answer to it:
its own id and its own payload. Requests refused while the gateway was down were never
acknowledged and are only counted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.faults.conftest import REPLICAS, FaultCluster, Load, kill9

pytestmark = pytest.mark.slow

#: submissions per second, steady through every fault
RATE = 25.0
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
    load = Load(fault_cluster.endpoint, RATE)
    stop = asyncio.Event()
    began = time.monotonic()
    submitting = asyncio.create_task(load.run(stop))
    acknowledged = [0]  # before each fault, then at the end
    recovery: dict[str, str] = {}
    try:
        await asyncio.sleep(SETTLE)
        for name, fault in FAULTS:
            acknowledged.append(len(load.acknowledged))
            start, refused = time.monotonic(), load.refused
            await fault(fault_cluster)
            recovery[name] = f"{time.monotonic() - start:.1f}s, {load.refused - refused} refused"
            await asyncio.sleep(SETTLE)
    finally:
        stop.set()
        await submitting
    acknowledged.append(len(load.acknowledged))
    loaded = time.monotonic() - began
    outcomes = await load.outcomes(timeout=60)

    never_ended = sorted(set(load.acknowledged) - set(outcomes))
    unknown = sorted(rid for rid, data in outcomes.items() if data["http"] == 404)
    statuses = Counter(data.get("status", "unknown") for data in outcomes.values())
    wrong = {
        rid: data["result"]
        for rid, data in outcomes.items()
        if data.get("status") == "completed"
        and (data["result"]["request_id"], data["result"]["payload"]) != (rid, load.acknowledged[rid])
    }
    failed = {rid: data["error"] for rid, data in outcomes.items() if data.get("status") == "failed"}
    runs = fault_cluster.runs()
    unrun = sorted(rid for rid, data in outcomes.items() if data.get("status") == "completed" and not runs[rid])
    print(
        f"\nfaults[{fault_cluster.backend}]: {load.submitted} submitted in {loaded:.1f}s, "
        f"{len(load.acknowledged)} acknowledged, {load.refused} refused; {len(FAULTS)} faults, recovery {recovery}; "
        f"outcomes {dict(statuses)}; lost {len(never_ended) + len(unknown)}; "
        f"run more than once {sum(runs[rid] > 1 for rid in load.acknowledged)}"
    )
    assert all(b > a for a, b in itertools.pairwise(acknowledged)), f"no load went through at times: {acknowledged}"
    assert not never_ended, f"{len(never_ended)} acknowledged request(s) never ended, e.g. {never_ended[:5]}"
    assert not unknown, f"{len(unknown)} acknowledged request(s) are unknown to the gateway, e.g. {unknown[:5]}"
    assert not wrong, f"{len(wrong)} result(s) are not the user server's answer to their own request: {wrong}"
    assert not unrun, f"{len(unrun)} request(s) completed without the user server running them: {unrun[:5]}"
    # a crash costs an attempt, and no request is near max_attempts here: each one ends completed
    assert not failed, f"{len(failed)} request(s) failed: {failed}"
    # and the restarted cluster, stopped, leaves nothing behind: no process of the killed one either
    await asyncio.to_thread(fault_cluster.local.cortex, "cluster", "down")
    assert await asyncio.to_thread(fault_cluster.local.processes) == []
