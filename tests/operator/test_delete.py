"""Deleting an API: what it finished stays readable, what it had not run is cancelled and never runs again.

On every backend, through the operator as the CLI reaches it (the runtime in memory).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cortex.backends import Backends
from cortex.ids import new_id
from cortex.requests import NewRequest, Outcome, RequestRecord, Status, now
from tests.helpers import api_yaml
from tests.operator.conftest import Harness


@pytest.fixture
async def cluster(backends: Backends) -> AsyncIterator[Harness]:
    made = Harness(backends)
    try:
        yield made
    finally:
        await made.http.aclose()


async def submit(cluster: Harness, api: str = "echo") -> str:
    rid = new_id()
    created = now()
    request = NewRequest(id=rid, api=api, created_at=created, expires_at=created + 600, headers=(), payload=b"{}")
    assert await cluster.backends.records.create(request) is None
    await cluster.backends.queue.enqueue(api, rid)
    return rid


async def record(cluster: Harness, rid: str, api: str = "echo") -> RequestRecord:
    found = await cluster.backends.records.get(api, rid, now=now())
    assert found is not None, f"request {rid} is not readable"
    return found


async def test_delete_keeps_finished_requests_and_cancels_the_rest(cluster: Harness) -> None:
    queue, records = cluster.backends.queue, cluster.backends.records
    await cluster.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    done, running, waiting = [await submit(cluster) for _ in range(3)]
    leases = {lease.id: lease for lease in await queue.lease("echo", visibility=60, limit=2)}
    assert set(leases) == {done, running}
    assert await records.start("echo", done, attempts=1, now=now()) is not None
    assert await records.finish("echo", done, Outcome.completed(b'{"ok": true}'), now=now())
    assert await queue.ack(leases[done])
    # `running` stays leased by a worker that died with it: its lease has not lapsed yet
    assert await records.start("echo", running, attempts=1, now=now()) is not None

    answer = await cluster.http.delete("/delete/echo")
    assert answer.json() == {"message": "deleting echo"}

    kept = await record(cluster, done)
    assert (kept.status, kept.result) == (Status.COMPLETED, b'{"ok": true}')
    for rid in (running, waiting):
        cancelled = await record(cluster, rid)
        assert cancelled.status == Status.CANCELLED
        assert cancelled.error is not None and cancelled.error.kind == "api_deleted"
        assert cancelled.error.message == "api echo was deleted before this request ran"
    assert (await queue.depth("echo")).total == 0


async def test_a_redeploy_of_the_name_runs_none_of_the_old_requests(cluster: Harness) -> None:
    queue = cluster.backends.queue
    await cluster.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    before = await submit(cluster)
    await cluster.operator.delete("echo")
    # accepted by a gateway whose table still had the API (it refreshes every couple of seconds)
    late = await submit(cluster)

    (result,) = await cluster.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    assert result.message == "creating echo (AsyncAPI)"
    assert await queue.lease("echo", visibility=60, limit=10) == []  # the new API starts with an empty queue
    assert (await record(cluster, before)).status == Status.CANCELLED
    late_record = await record(cluster, late)
    assert late_record.status == Status.CANCELLED
    assert late_record.error is not None
    assert late_record.error.message.endswith("it was not given to the new api")

    fresh = await submit(cluster)  # the new API's own requests are untouched
    (lease,) = await queue.lease("echo", visibility=60)
    assert lease.id == fresh
    assert (await record(cluster, fresh)).status == Status.IN_QUEUE


async def test_an_update_cancels_nothing(cluster: Harness) -> None:
    await cluster.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    waiting = await submit(cluster)
    (result,) = await cluster.operator.deploy(api_yaml("echo", concurrency=2), "/tmp/cortex.yaml")
    assert result.message == "updating echo (AsyncAPI)"
    assert (await record(cluster, waiting)).status == Status.IN_QUEUE
    assert (await cluster.backends.queue.depth("echo")).queued == 1
