"""The autoscaler loop against the real queue and catalog, with a runtime double that records scale calls.

Ticks are driven by hand (``await autoscaler.tick()``) on a fake clock, so each test says exactly
what the loop sees; one test runs the loop in the background to check its timing and nudge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cortex.autoscaler import Autoscaler, Reading
from cortex.backends import Backends
from cortex.dequeuer.metrics import DequeuerMetrics
from cortex.errors import NotFound
from cortex.operator.app import create_operator_app
from cortex.operator.service import Operator
from cortex.requests import NewRequest, now
from cortex.runtime.base import ReplicaState, ReplicaStatus, Runtime
from cortex.spec import ApiSpec
from tests.helpers import api_yaml, deploy, one_route, serving
from tests.promtext import samples, value

QUICK = """
autoscaling:
  min_replicas: 0
  max_replicas: 4
  window: 10s
  downscale_stabilization_period: 0s
  upscale_stabilization_period: 0s
"""
#: Cortex's stabilization periods, with scale to zero allowed
SLOW_TO_WAKE = """
autoscaling:
  min_replicas: 0
  max_replicas: 4
  window: 10s
"""


class RecordingRuntime(Runtime):
    """The Runtime interface in memory: remembers requested counts and every scale call."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.calls: list[tuple[str, int]] = []

    async def apply(self, spec: ApiSpec, *, deployment_id: str, config_dir: Path, replicas: int) -> None:
        self.counts[spec.name] = replicas

    async def scale(self, api: str, replicas: int) -> None:
        if api not in self.counts:
            raise NotFound(f"api {api} is not running on the recording runtime")
        self.calls.append((api, replicas))
        self.counts[api] = replicas

    async def delete(self, api: str) -> None:
        self.counts.pop(api, None)

    def replicas(self, api: str) -> list[ReplicaStatus]:
        # every requested replica is ready at once
        return [ReplicaStatus(f"{api}-{i}", api, ReplicaState.READY, "d1", 0.0) for i in range(self.requested(api))]

    def requested(self, api: str) -> int:
        return self.counts.get(api, 0)

    async def logs(
        self,
        api: str,
        *,
        follow: bool,
        tail: int | None = None,
        request_id: str | None = None,
        replica: str | None = None,
    ) -> AsyncIterator[str]:
        lines: tuple[str, ...] = ()
        for line in lines:
            yield line

    async def aclose(self) -> None:
        self.counts.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def runtime() -> RecordingRuntime:
    return RecordingRuntime()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def autoscaler(backends: Backends, runtime: RecordingRuntime, clock: Clock) -> Autoscaler:
    return Autoscaler(backends.catalog, backends.queue, runtime, interval=2.0, clock=clock, wall_clock=clock)


async def start(backends: Backends, runtime: RecordingRuntime, name: str, extra: str, replicas: int) -> None:
    await deploy(backends.catalog, api_yaml(name, extra=extra))
    runtime.counts[name] = replicas


async def submit(backends: Backends, api: str, count: int, prefix: str = "r") -> None:
    for i in range(count):
        await backends.queue.enqueue(api, f"{prefix}{i}")


async def finish_all(backends: Backends, api: str) -> None:
    for lease in await backends.queue.lease(api, visibility=60, limit=1000):
        await backends.queue.ack(lease)


async def test_an_idle_api_is_woken_at_the_first_tick_after_a_submit(
    backends: Backends,
    runtime: RecordingRuntime,
    autoscaler: Autoscaler,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start(backends, runtime, "slow", SLOW_TO_WAKE, replicas=0)
    await autoscaler.tick()
    assert runtime.calls == []
    clock.now += 2
    await submit(backends, "slow", 1)
    with caplog.at_level(logging.INFO, logger="cortex.autoscaler.loop"):
        await autoscaler.tick()  # in Cortex: held for the upscale stabilization period (1m)
    assert runtime.calls == [("slow", 1)]
    (event,) = autoscaler.events.recent("slow")
    assert (event.time, event.before, event.after) == (1002.0, 0, 1)
    assert event.reason == "wake from zero: 1 queued, 0 in flight"
    assert "autoscaling event: api slow: 0 -> 1 (wake from zero: 1 queued, 0 in flight)" in caplog.messages


async def test_a_burst_scales_up_within_the_step_limits_then_back_to_zero(
    backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler, clock: Clock
) -> None:
    await start(backends, runtime, "burst", QUICK, replicas=1)
    await submit(backends, "burst", 20)
    for _ in range(3):  # 1 -> 2 (+1), 2 -> 3 (x1.5), 3 -> 4 (x1.5 = 5, clamped to max_replicas)
        await autoscaler.tick()
        clock.now += 2
    assert runtime.calls == [("burst", 2), ("burst", 3), ("burst", 4)]
    await finish_all(backends, "burst")
    emptied = clock.now
    while clock.now < emptied + 20:
        await autoscaler.tick()
        clock.now += 2
    # down only once the window (10s) holds no work, one step per tick: ceil(x0.75), and at least -1
    assert runtime.calls[3:] == [("burst", 3), ("burst", 2), ("burst", 1), ("burst", 0)]
    events = autoscaler.events.recent("burst")
    assert [(e.before, e.after) for e in events] == [(1, 2), (2, 3), (3, 4), (4, 3), (3, 2), (2, 1), (1, 0)]
    last_work = emptied - 2
    assert events[3].time == last_work + 10  # the first tick whose window (10s) holds no sample with work
    assert "max_replicas 4" in events[2].reason and "downscale step limit 3" in events[3].reason


async def test_gauges_are_set_every_tick_and_served_at_metrics(
    backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler
) -> None:
    await start(backends, runtime, "gauged", QUICK + "  init_replicas: 2\n", replicas=2)
    await submit(backends, "gauged", 5)
    await backends.queue.lease("gauged", visibility=60, limit=2)
    await autoscaler.tick()
    app = create_operator_app(Operator(backends.catalog, runtime, gateway_url="http://gw"), {}, autoscaler.metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://op") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    labels = '{api_kind="AsyncAPI",api_name="gauged"}'
    for line in [
        f"cortex_async_queued{labels} 3.0",
        f"cortex_async_active{labels} 2.0",
        f"cortex_async_in_flight{labels} 5.0",
        f"cortex_async_replicas_requested{labels} 3.0",  # scaled 2 -> 3 by this tick
        f"cortex_async_replicas_ready{labels} 3.0",
    ]:
        assert line in response.text.splitlines()


async def test_describe_shows_the_events(backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler) -> None:
    await start(backends, runtime, "told", SLOW_TO_WAKE, replicas=0)
    await submit(backends, "told", 1)
    await autoscaler.tick()
    operator = Operator(backends.catalog, runtime, gateway_url="http://gw", scaling_events=autoscaler.events)
    description = await operator.describe("told")
    assert description["autoscaling_events"] == [
        {"time": 1000.0, "from": 0, "to": 1, "reason": "wake from zero: 1 queued, 0 in flight"}
    ]
    assert description["replica_counts"]["requested"] == 1


async def test_a_deleted_api_is_forgotten_and_a_redeployed_one_starts_afresh(
    backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler, clock: Clock
) -> None:
    held = "autoscaling: {min_replicas: 0, max_replicas: 4, window: 10s, upscale_stabilization_period: 1m}\n"
    await start(backends, runtime, "gone", held, replicas=1)
    await submit(backends, "gone", 9)
    for _ in range(31):  # held for the first minute, then up
        await autoscaler.tick()
        clock.now += 2
    assert runtime.calls == [("gone", 2)]
    await backends.catalog.delete_api("gone")
    await autoscaler.tick()
    assert autoscaler.events.recent("gone") == []
    assert b'api_name="gone"' not in autoscaler.metrics.exposition()
    await start(backends, runtime, "gone", held, replicas=1)
    await autoscaler.tick()
    clock.now += 2
    await autoscaler.tick()
    assert runtime.calls == [("gone", 2)]  # the start-up hold counts again from the redeploy


async def test_a_redeploy_applies_the_new_knobs_at_the_next_tick(
    backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler, clock: Clock
) -> None:
    await start(backends, runtime, "knobs", QUICK, replicas=4)
    await submit(backends, "knobs", 8)
    await autoscaler.tick()
    assert runtime.calls == []
    clock.now += 2
    await deploy(backends.catalog, api_yaml("knobs", extra=QUICK.replace("max_replicas: 4", "max_replicas: 2")))
    await autoscaler.tick()
    assert runtime.calls == [("knobs", 2)]


async def test_a_failed_scale_is_logged_and_decided_again_next_tick(
    backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler, caplog: pytest.LogCaptureFixture
) -> None:
    await deploy(backends.catalog, api_yaml("early", extra=QUICK))  # in the catalog, not yet in the runtime
    await submit(backends, "early", 1)
    await autoscaler.tick()
    assert "autoscaler: api early: could not scale to 1" in caplog.text
    assert autoscaler.events.recent("early") == []
    runtime.counts["early"] = 0
    await autoscaler.tick()
    assert runtime.calls == [("early", 1)]


async def test_the_background_loop_ticks_and_a_nudge_runs_a_tick_at_once(
    backends: Backends, runtime: RecordingRuntime
) -> None:
    await start(backends, runtime, "nudged", QUICK, replicas=0)
    autoscaler = Autoscaler(backends.catalog, backends.queue, runtime, interval=30.0)
    autoscaler.start()
    try:
        await asyncio.sleep(0.2)  # the first tick runs at once, and finds nothing to do
        await submit(backends, "nudged", 1)
        began = time.monotonic()
        autoscaler.nudge()
        while not runtime.calls:
            assert time.monotonic() - began < 5, "the nudge did not run a tick"
            await asyncio.sleep(0.01)
        assert runtime.calls == [("nudged", 1)]
    finally:
        began = time.monotonic()
        await autoscaler.aclose()
    assert time.monotonic() - began < 1  # closing does not wait for the next tick


async def test_a_submit_to_a_sleeping_api_wakes_it_without_waiting_for_the_tick(
    backends: Backends, runtime: RecordingRuntime
) -> None:
    """The tick is an hour: only the queue's announcement of the submit can run the tick that wakes it."""
    await start(backends, runtime, "sleepy", SLOW_TO_WAKE, replicas=0)
    await start(backends, runtime, "awake", SLOW_TO_WAKE, replicas=1)
    autoscaler = Autoscaler(backends.catalog, backends.queue, runtime, interval=3600.0)
    autoscaler.start()
    try:
        deadline = time.monotonic() + 20
        while autoscaler.sleeping != {"sleepy"}:  # the first tick ran; only the API at zero is watched
            assert time.monotonic() < deadline, f"watching {autoscaler.sleeping}"
            await asyncio.sleep(0.01)
        created = now()
        await backends.plane.submit(NewRequest("r1", "sleepy", created, created + 600, (), payload=b"{}"))
        while not runtime.calls:
            assert time.monotonic() < deadline, "the submit did not wake the API before the next tick"
            await asyncio.sleep(0.01)
        assert runtime.calls == [("sleepy", 1)]
        (event,) = autoscaler.events.recent("sleepy")
        assert event.reason == "wake from zero: 1 queued, 0 in flight"
        assert autoscaler.sleeping == set()  # awake now: nothing to watch
    finally:
        await autoscaler.aclose()
    assert autoscaler.sleeping == set()


async def test_with_waking_off_an_api_at_zero_keeps_its_replicas_until_the_tick(
    backends: Backends, runtime: RecordingRuntime
) -> None:
    """The benchmarks' clusters (``CORTEX_AUTOSCALER_WAKE=0``): a submit runs no tick; the API stays as deployed."""
    await start(backends, runtime, "sleepy", SLOW_TO_WAKE, replicas=0)
    autoscaler = Autoscaler(backends.catalog, backends.queue, runtime, interval=3600.0, wake_sleeping=False)
    autoscaler.start()
    try:
        deadline = time.monotonic() + 20
        while "sleepy" not in autoscaler.metrics.exposition().decode():  # the first tick ran
            assert time.monotonic() < deadline, "no first tick"
            await asyncio.sleep(0.01)
        created = now()
        await backends.plane.submit(NewRequest("r1", "sleepy", created, created + 600, (), payload=b"{}"))
        await asyncio.sleep(1.0)  # what a watch would have woken within (it takes about 0.05 s)
        assert autoscaler.sleeping == set()
        assert runtime.calls == []
    finally:
        await autoscaler.aclose()


async def test_an_api_deployed_while_the_loop_sleeps_is_watched_at_once(
    backends: Backends, runtime: RecordingRuntime
) -> None:
    """The operator's deploy nudges the loop, so a new API at zero is watched before the next (hourly) tick."""
    autoscaler = Autoscaler(backends.catalog, backends.queue, runtime, interval=3600.0)
    operator = Operator(backends.catalog, runtime, gateway_url="http://gw", on_deployed=autoscaler.nudge)
    autoscaler.start()
    try:
        await asyncio.sleep(0.2)  # the first tick ran and found no API
        await operator.deploy(api_yaml("fresh", extra=SLOW_TO_WAKE), "/tmp/cortex.yaml")
        deadline = time.monotonic() + 20
        while autoscaler.sleeping != {"fresh"}:
            assert time.monotonic() < deadline, "the deploy did not run a tick"
            await asyncio.sleep(0.01)
        await backends.queue.enqueue("fresh", "r1")
        while not runtime.calls:
            assert time.monotonic() < deadline, "the enqueue did not wake the new API"
            await asyncio.sleep(0.01)
        assert runtime.calls == [("fresh", 1)]
    finally:
        await autoscaler.aclose()


async def test_ticks_come_every_interval(backends: Backends, runtime: RecordingRuntime) -> None:
    await start(backends, runtime, "ticking", QUICK, replicas=0)
    autoscaler = Autoscaler(backends.catalog, backends.queue, runtime, interval=0.05)
    autoscaler.start()
    try:
        await asyncio.sleep(0.1)
        await submit(backends, "ticking", 1)
        began = time.monotonic()
        while not runtime.calls:
            assert time.monotonic() - began < 5, "no tick after the submit"
            await asyncio.sleep(0.005)
        assert time.monotonic() - began < 0.5
    finally:
        await autoscaler.aclose()


def test_a_tick_must_be_positive(runtime: RecordingRuntime) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Autoscaler(None, None, runtime, interval=0)  # type: ignore[arg-type]


async def test_metrics_parse_back_equal_to_the_queue_and_include_the_replicas(
    backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler
) -> None:
    await start(backends, runtime, "parsed", QUICK + "  init_replicas: 1\n", replicas=1)
    await submit(backends, "parsed", 4)
    await backends.queue.lease("parsed", visibility=60, limit=1)
    await autoscaler.tick()
    replica = DequeuerMetrics()
    replica.answered("parsed", 200, 0.1)
    async with one_route("/metrics", serving(replica)) as url:
        peers = {"parsed-1": f"{url}/metrics", "gone": "http://127.0.0.1:9/metrics"}
        operator = Operator(backends.catalog, runtime, gateway_url="http://gw")
        app = create_operator_app(operator, {}, autoscaler.metrics, peers=lambda: peers)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://op") as http:
            text = (await http.get("/metrics")).text
    samples(text)
    depth = await backends.queue.depth("parsed")
    assert value(text, "cortex_async_queued", api_name="parsed") == depth.queued == 3
    assert value(text, "cortex_async_active", api_name="parsed") == depth.in_flight == 1
    assert value(text, "cortex_async_in_flight", api_name="parsed") == depth.total
    assert value(text, "cortex_async_request_count_total", replica="parsed-1", status_code="200") == 1


async def test_the_age_of_the_oldest_queued_request_is_a_gauge(
    backends: Backends, runtime: RecordingRuntime, autoscaler: Autoscaler
) -> None:
    await start(backends, runtime, "aged", QUICK, replicas=1)
    await submit(backends, "aged", 2)
    await asyncio.sleep(0.3)
    await autoscaler.tick()
    text = autoscaler.metrics.exposition().decode()
    samples(text)
    age = value(text, "cortex_async_oldest_queued_age_seconds", api_name="aged")
    assert 0.25 <= age <= (await backends.queue.depth("aged")).oldest_queued_age
    await finish_all(backends, "aged")
    await autoscaler.tick()
    assert (
        value(autoscaler.metrics.exposition().decode(), "cortex_async_oldest_queued_age_seconds", api_name="aged") == 0
    )


async def test_each_tick_hands_its_readings_to_the_listener(
    backends: Backends, runtime: RecordingRuntime, clock: Clock
) -> None:
    seen: list[list[Reading]] = []

    async def listen(readings: list[Reading]) -> None:
        seen.append(readings)
        raise RuntimeError("a broken listener")  # logged; the loop goes on

    autoscaler = Autoscaler(backends.catalog, backends.queue, runtime, interval=2.0, clock=clock, on_tick=listen)
    await start(backends, runtime, "heard", QUICK + "  init_replicas: 2\n", replicas=2)
    await submit(backends, "heard", 3)
    await backends.queue.lease("heard", visibility=60)
    await autoscaler.tick()
    await autoscaler.tick()
    assert len(seen) == 2
    (reading,) = seen[0]
    assert (reading.api, reading.depth.queued, reading.depth.in_flight) == ("heard", 2, 1)
    assert (reading.requested, reading.ready) == (runtime.requested("heard"), runtime.requested("heard"))
