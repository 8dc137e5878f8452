"""The queue summary at the operator: ``GET /queue/<api>``, and ``queue`` beside Cortex's keys in ``GET /get/<api>``."""

from __future__ import annotations

import pytest

from cortex.errors import BackendError
from cortex.operator.queue_summary import ReplicaLoad, replica_load
from cortex.requests import NewRequest, Outcome, Status, now
from cortex.runtime.base import ReplicaState, ReplicaStatus
from tests.autoscaler.test_loop import RecordingRuntime
from tests.helpers import api_yaml
from tests.operator.conftest import Harness


class LoadedRuntime(RecordingRuntime):
    """Ready replicas whose dequeuers say what they run: ``loads`` by replica id (absent: no answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.running: dict[str, int | None] = {}

    async def loads(self, api: str) -> dict[str, int | None]:
        return {replica.id: self.running.get(replica.id) for replica in self.replicas(api)}


def _request(rid: str, api: str = "echo") -> NewRequest:
    created = now()
    return NewRequest(id=rid, api=api, created_at=created, expires_at=created + 600, headers=(), payload=b"{}")


async def test_the_summary_counts_requests_by_status_and_the_oldest_queued_wait(harness: Harness) -> None:
    await harness.operator.deploy(api_yaml("echo", extra="async: {retention: 1h}\n"), "/tmp/cortex.yaml")
    plane = harness.backends.plane
    for n in range(4):
        await plane.submit(_request(f"r{n}"))
    await plane.submit(_request("x1", api="other"))  # another API's request is not counted
    (taken,) = await plane.take("echo", visibility=30, limit=1, max_attempts=3, timeout=0)
    await plane.finish(taken.lease, Outcome(Status.COMPLETED, result=b"{}"), now=now())
    (running,) = await plane.take("echo", visibility=30, limit=1, max_attempts=3, timeout=0)
    assert running.started

    answer = await harness.http.get("/queue/echo")
    assert answer.status_code == 200
    summary = answer.json()
    assert summary["api"] == "echo" and summary["retention"] == 3600
    assert summary["requests"] == {"in_queue": 2, "in_progress": 1, "completed": 1, "failed": 0, "cancelled": 0}
    assert summary["oldest_queued_age"] > 0
    # every requested replica of the recording runtime is ready; its dequeuer's load is not known
    assert summary["replicas"] == {"requested": 1, "ready": 1, "busy": 0, "idle": 0, "unknown": 1, "in_flight": 0}


async def test_get_api_keeps_cortexs_keys_and_adds_the_queue_beside_them(harness: Harness) -> None:
    await harness.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    await harness.backends.plane.submit(_request("r1"))
    (api,) = (await harness.http.get("/get/echo")).json()
    assert {"spec", "endpoint", "metadata", "status", "api_versions", "queue"} <= set(api)
    assert api["queue"]["requests"]["in_queue"] == 1
    alone = (await harness.http.get("/queue/echo")).json()
    assert {key: value for key, value in api["queue"].items() if key != "oldest_queued_age"} == {
        key: value for key, value in alone.items() if key != "oldest_queued_age"
    }
    # the listing of every API stays as Cortex's, without a summary per API
    assert all("queue" not in listed for listed in (await harness.http.get("/get")).json())


async def test_replicas_are_busy_or_idle_by_what_their_dequeuers_say(harness: Harness) -> None:
    runtime = LoadedRuntime()
    harness.operator.runtime = runtime
    await harness.operator.deploy(api_yaml("echo", extra="autoscaling: {init_replicas: 3}\n"), "/tmp/cortex.yaml")
    runtime.running = {"echo-0": 2, "echo-1": 0}  # echo-2's dequeuer did not answer
    replicas = (await harness.http.get("/queue/echo")).json()["replicas"]
    assert replicas == {"requested": 3, "ready": 3, "busy": 1, "idle": 1, "unknown": 1, "in_flight": 2}


async def test_an_api_not_deployed_is_a_404(harness: Harness) -> None:
    answer = await harness.http.get("/queue/nope")
    assert answer.status_code == 404
    assert answer.json()["kind"] == "not_found" and "nope" in answer.json()["error"]


async def test_a_backend_that_does_not_answer_is_a_503_and_get_still_answers(harness: Harness) -> None:
    await harness.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    records = harness.operator.records
    assert records is not None

    async def down(api: str, *, now: float) -> dict[Status, int]:
        raise BackendError("the store is down")

    records.counts = down  # type: ignore[method-assign]
    answer = await harness.http.get("/queue/echo")
    assert answer.status_code == 503 and answer.json()["kind"] == "unavailable"
    (api,) = (await harness.http.get("/get/echo")).json()
    assert api["queue"] is None and api["metadata"]["name"] == "echo"


def _replica(rid: str, state: ReplicaState) -> ReplicaStatus:
    return ReplicaStatus(rid, "echo", state, "d", 0.0)


@pytest.mark.parametrize(
    ("state", "load", "expected"),
    [
        (ReplicaState.READY, 0, ReplicaLoad(1, 1, 0, 1, 0, 0)),
        (ReplicaState.READY, 3, ReplicaLoad(1, 1, 1, 0, 0, 3)),
        (ReplicaState.READY, None, ReplicaLoad(1, 1, 0, 0, 1, 0)),
        (ReplicaState.READY_OUT_OF_DATE, 0, ReplicaLoad(1, 1, 0, 1, 0, 0)),
        # a draining replica still finishing its work is busy, never idle
        (ReplicaState.TERMINATING, 1, ReplicaLoad(1, 0, 1, 0, 0, 1)),
        (ReplicaState.TERMINATING, 0, ReplicaLoad(1, 0, 0, 0, 0, 0)),
        (ReplicaState.NOT_READY, None, ReplicaLoad(1, 0, 0, 0, 0, 0)),
    ],
)
def test_replica_load_table(state: ReplicaState, load: int | None, expected: ReplicaLoad) -> None:
    assert replica_load(1, [_replica("r", state)], {"r": load}) == expected
