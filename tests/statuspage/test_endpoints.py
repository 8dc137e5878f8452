"""The status page's JSON, in-process over the real backends, fed by a real autoscaler tick."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from cortex.autoscaler import Autoscaler
from cortex.backends import Backends
from cortex.dequeuer.metrics import DequeuerMetrics
from cortex.ids import new_id
from cortex.operator.app import create_operator_app
from cortex.operator.history import History
from cortex.operator.service import Operator
from cortex.operator.status_feed import StatusFeed, completed_counts
from cortex.operator.status_page import MAX_RESULT_BYTES, StatusPage
from cortex.requests import ErrorKind, NewRequest, Outcome, now
from tests.autoscaler.test_loop import RecordingRuntime
from tests.helpers import api_yaml, deploy, one_route, serving

STEADY = "autoscaling: {min_replicas: 2, max_replicas: 2, init_replicas: 2}\n"


class Cluster:
    """The operator app with a status page over real backends, and the autoscaler that feeds it."""

    def __init__(self, backends: Backends, peers: dict[str, str]) -> None:
        self.backends = backends
        self.runtime = RecordingRuntime()
        self.history = History()
        self.operator = Operator(backends.catalog, self.runtime, gateway_url="http://gw")
        self.feed = StatusFeed(self.history, lambda: peers)
        self.autoscaler = Autoscaler(backends.catalog, backends.queue, self.runtime, on_tick=self.feed.on_tick)
        status = StatusPage(self.operator, backends.queue, backends.records, self.history)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_operator_app(self.operator, {}, status=status)),
            base_url="http://operator",
        )

    async def deploy(self, name: str) -> None:
        await deploy(self.backends.catalog, api_yaml(name, extra=STEADY))
        self.runtime.counts[name] = 2

    async def submit(self, api: str) -> str:
        await asyncio.sleep(0.002)  # ids sort by their millisecond: one each
        rid = new_id()
        created = now()
        await self.backends.records.create(
            NewRequest(id=rid, api=api, created_at=created, expires_at=created + 600, headers=(), payload=b"{}")
        )
        await self.backends.queue.enqueue(api, rid)
        return rid

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path)


@pytest.fixture
async def replica() -> AsyncIterator[tuple[DequeuerMetrics, str]]:
    """One replica's dequeuer metrics, served on loopback as the local runtime's admin port serves them."""
    metrics = DequeuerMetrics()
    async with one_route("/metrics", serving(metrics)) as url:
        yield metrics, f"{url}/metrics"


@pytest.fixture
async def cluster(backends: Backends, replica: tuple[DequeuerMetrics, str]) -> AsyncIterator[Cluster]:
    made = Cluster(backends, {"api-1": replica[1], "api-2": "http://127.0.0.1:9/metrics"})
    try:
        yield made
    finally:
        await made.feed.aclose()
        await made.http.aclose()


async def test_apis_show_the_replicas_of_cortex_get_and_the_queue_now(cluster: Cluster) -> None:
    await cluster.deploy("api")
    await cluster.deploy("idle")
    for _ in range(3):
        await cluster.submit("api")
    await cluster.backends.queue.lease("api", visibility=60)
    data = (await cluster.get("/status/apis")).json()
    assert [api["name"] for api in data["apis"]] == ["api", "idle"]
    api, idle = data["apis"]
    assert api["replicas"] == (await cluster.operator.get("api"))["status"]
    assert (api["replicas"]["ready"], api["replicas"]["requested"]) == (2, 2)
    assert (api["queue"]["queued"], api["queue"]["in_flight"]) == (2, 1)
    assert 0 < api["queue"]["oldest_queued_age"] <= (await cluster.backends.queue.depth("api")).oldest_queued_age
    assert idle["queue"] == {"queued": 0, "in_flight": 0, "oldest_queued_age": 0.0}
    # the counts by status of the queue summary: a lease alone starts nothing
    assert api["requests"] == {"in_queue": 3, "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert set(idle["requests"].values()) == {0}
    assert api["endpoint"] == "http://gw/api"


async def test_recent_requests_newest_first_with_status_and_latency(cluster: Cluster) -> None:
    await cluster.deploy("api")
    first, second, third = [await cluster.submit("api") for _ in range(3)]
    records = cluster.backends.records
    await records.start("api", first, attempts=1, now=now())
    assert await records.finish("api", first, Outcome.completed(b'{"answer": 42}'), now=now())
    assert await records.finish(
        "api", second, Outcome.failed(ErrorKind.HTTP_STATUS, "the user server answered 500"), now=now()
    )
    listed = (await cluster.get("/status/apis/api/requests?limit=3")).json()["requests"]
    assert [(r["id"], r["status"]) for r in listed] == [(third, "in_queue"), (second, "failed"), (first, "completed")]
    done = await records.get("api", first, now=now())
    assert done is not None and done.finished_at is not None
    assert listed[2]["latency"] == done.finished_at - done.created_at
    assert listed[0]["latency"] is None and listed[1]["error_kind"] == "http_status"
    assert len((await cluster.get("/status/apis/api/requests?limit=2")).json()["requests"]) == 2

    detail = (await cluster.get(f"/status/apis/api/requests/{first}")).json()
    assert (detail["status"], detail["result"], detail["result_shown"]) == ("completed", {"answer": 42}, True)
    failed = (await cluster.get(f"/status/apis/api/requests/{second}")).json()
    assert failed["error"] == {"kind": "http_status", "message": "the user server answered 500"}


async def test_a_large_result_is_left_out_of_the_detail(cluster: Cluster) -> None:
    await cluster.deploy("api")
    rid = await cluster.submit("api")
    big = b'"' + b"x" * MAX_RESULT_BYTES + b'"'
    await cluster.backends.records.start("api", rid, attempts=1, now=now())
    assert await cluster.backends.records.finish("api", rid, Outcome.completed(big), now=now())
    detail = (await cluster.get(f"/status/apis/api/requests/{rid}")).json()
    assert (detail["result"], detail["result_size"], detail["result_shown"]) == (None, len(big), False)


async def test_a_running_request_shows_its_progress(cluster: Cluster) -> None:
    await cluster.deploy("api")
    rid = await cluster.submit("api")
    (taken,) = await cluster.backends.plane.take("api", visibility=60, limit=1, max_attempts=3, timeout=0)
    assert await cluster.backends.plane.report_progress(taken.lease, '{"step":2,"of":5}', now=now())
    detail = (await cluster.get(f"/status/apis/api/requests/{rid}")).json()
    assert detail["status"] == "in_progress" and detail["more"]["progress"] == {"step": 2, "of": 5}
    assert detail["more"]["progress_at"].endswith("Z")


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/status/apis/nope/requests", 404, "api nope is not deployed"),
        ("/status/apis/nope/history", 404, "api nope is not deployed"),
        ("/status/apis/api/requests/00000000000000000000000000", 404, "not found (unknown or expired)"),
        ("/status/apis/api/requests?limit=0", 400, "limit must be a whole number from 1 to 100"),
        ("/status/apis/api/requests?limit=many", 400, "limit must be a whole number"),
    ],
)
async def test_errors_say_what_was_wrong(cluster: Cluster, path: str, status: int, message: str) -> None:
    await cluster.deploy("api")
    response = await cluster.get(path)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_each_tick_adds_the_depth_and_the_replicas_completions_to_the_history(
    cluster: Cluster, replica: tuple[DequeuerMetrics, str]
) -> None:
    metrics, _ = replica
    await cluster.deploy("api")
    for _ in range(4):
        await cluster.submit("api")
    metrics.ended("api", "completed")
    metrics.ended("api", "completed")
    metrics.ended("api", "failed")  # not a completion
    metrics.ended("other", "completed")  # another API's
    await cluster.autoscaler.tick()  # records the queue; the replicas' counters are read beside the loop
    await cluster.feed.settled()
    metrics.ended("api", "completed")  # after that reading: counted by the next
    await cluster.backends.queue.lease("api", visibility=60)
    await cluster.autoscaler.tick()  # records what the first reading found
    history = (await cluster.get("/status/apis/api/history")).json()
    assert (history["span"], history["resolution"]) == (3600.0, 10.0)
    last = history["points"][-1]
    assert (last["queued"], last["in_flight"], last["requested"], last["ready"]) == (3, 1, 2, 2)
    assert sum(p["completed"] for p in history["points"]) == 2
    await cluster.feed.settled()
    await cluster.autoscaler.tick()
    points = (await cluster.get("/status/apis/api/history")).json()["points"]
    assert sum(p["completed"] for p in points) == 3


async def test_a_replica_that_does_not_answer_does_not_hold_up_the_tick(backends: Backends) -> None:
    hung: asyncio.Queue[None] = asyncio.Queue()

    async def never(request: web.Request) -> web.Response:
        await hung.get()
        return web.Response()

    async with one_route("/metrics", never, shutdown_timeout=0.1) as url:
        cluster = Cluster(backends, {"api-1": f"{url}/metrics"})
        try:
            await cluster.deploy("api")
            began = time.monotonic()
            for _ in range(3):
                await cluster.autoscaler.tick()
            assert time.monotonic() - began < 0.5  # the fetch waits up to 1 s, the ticks do not
            assert len((await cluster.get("/status/apis/api/history")).json()["points"]) >= 1
        finally:
            await cluster.feed.aclose()
            await cluster.http.aclose()


def test_completed_counts_read_the_dequeuer_exposition() -> None:
    metrics = DequeuerMetrics()
    for api, status in [("a", "completed"), ("a", "completed"), ("a", "cancelled"), ("b", "completed")]:
        metrics.ended(api, status)
    assert completed_counts(metrics.exposition().decode()) == {"a": 2.0, "b": 1.0}
    assert completed_counts("not { prometheus") == {}


async def test_the_page_is_self_contained(cluster: Cluster) -> None:
    response = await cluster.get("/status")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<svg" not in page or "xmlns" in page  # charts are drawn by the inline script
    # nothing is loaded from elsewhere: no external script, style, image or font, and no absolute URL
    # but the SVG namespace (a name, never fetched)
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page)
    assert re.findall(r"https?://[^\s\"'`]+", page) == ["http://www.w3.org/2000/svg"]
    for fetched in ("status/apis", "/history", "/requests"):
        assert fetched in page
