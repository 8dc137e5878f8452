"""A pod's replica state and its deletion cost, by table (pure functions of the pod object)."""

from __future__ import annotations

from typing import Any

import pytest

from cortex.runtime.base import ReplicaState
from cortex.runtime.kubepods import IDLE_COST, UNKNOWN_COST, deletion_cost, replica_status


def pod(
    *,
    phase: str | None = "Running",
    ready: bool = True,
    scheduled: bool = True,
    deployment_id: str = "new",
    deleting: bool = False,
    waiting: str | None = None,
    restarts: int = 0,
    last_exit: str | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting, "message": "back-off 5m"}} if waiting else {"running": {}}
    container: dict[str, Any] = {"name": "api", "ready": ready, "restartCount": restarts, "state": state}
    if last_exit:
        container["lastState"] = {"terminated": {"reason": last_exit, "exitCode": 137}}
    conditions = [
        {"type": "PodScheduled", "status": "True" if scheduled else "False", "message": "0/3 nodes: insufficient gpu"},
        {"type": "Ready", "status": "True" if ready else "False"},
    ]
    metadata: dict[str, Any] = {
        "name": "api-x-abc-qwert",
        "labels": {"apiName": "x", "deploymentID": deployment_id},
        "creationTimestamp": "2026-11-30T08:00:00Z",
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-30T08:05:00Z"
    status: dict[str, Any] = {"conditions": conditions, "containerStatuses": [container], "phase": phase}
    status["startTime"] = "2026-11-30T08:00:01Z"
    return {"metadata": metadata, "status": status}


@pytest.mark.parametrize(
    ("the_pod", "state"),
    [
        (pod(), ReplicaState.READY),
        (pod(deployment_id="old"), ReplicaState.READY_OUT_OF_DATE),
        (pod(ready=False), ReplicaState.NOT_READY),
        (pod(phase="Pending", ready=False, scheduled=False), ReplicaState.PENDING),
        (pod(phase="Pending", ready=False), ReplicaState.CREATING),
        (pod(phase=None, ready=False, scheduled=False), ReplicaState.PENDING),
        (pod(deleting=True), ReplicaState.TERMINATING),
        (pod(ready=False, waiting="CrashLoopBackOff", restarts=4), ReplicaState.FAILED),
        (pod(phase="Pending", ready=False, waiting="ImagePullBackOff"), ReplicaState.FAILED),
        (pod(phase="Pending", ready=False, waiting="ContainerCreating"), ReplicaState.CREATING),
        (pod(phase="Failed", ready=False), ReplicaState.FAILED),
    ],
)
def test_replica_state(the_pod: dict[str, Any], state: ReplicaState) -> None:
    assert replica_status(the_pod, "new").state == state


def test_replica_fields() -> None:
    status = replica_status(pod(restarts=2, deployment_id="old"), "new")
    assert status.id == "api-x-abc-qwert"
    assert status.api == "x"
    assert status.deployment_id == "old"
    assert status.restarts == 2
    assert status.started_at == 1796025601.0  # startTime, 2026-11-30T08:00:01Z


def test_details_say_why() -> None:
    assert replica_status(pod(ready=False, waiting="CrashLoopBackOff"), "new").detail == (
        "api: CrashLoopBackOff: back-off 5m"
    )
    pending = replica_status(pod(phase="Pending", ready=False, scheduled=False), "new")
    assert pending.detail == "0/3 nodes: insufficient gpu"
    not_ready = replica_status(pod(ready=False, last_exit="OOMKilled"), "new")
    assert not_ready.detail == "not ready: api; api: last exit OOMKilled"


@pytest.mark.parametrize(("in_flight", "cost"), [(0, IDLE_COST), (None, UNKNOWN_COST), (1, 1), (7, 7)])
def test_deletion_cost(in_flight: int | None, cost: int) -> None:
    assert deletion_cost(in_flight) == cost


def test_idle_pods_cost_least_and_the_busiest_most() -> None:
    costs = [deletion_cost(load) for load in (3, None, 0, 1)]
    assert sorted(costs) == [deletion_cost(0), deletion_cost(None), deletion_cost(1), deletion_cost(3)]
