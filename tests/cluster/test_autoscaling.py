"""Autoscaling on a real local cluster, driven through the `cortex` command, with a slow user server.

The autoscaler ticks every 0.2 s here (``cortex cluster up --autoscaler-tick 0.2``) and replicas
get 1 s to drain, shorter than the long requests: a busy replica stopped by a scale-in would hand
its request back and it would run a second time, which the user server's trace files would show.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.cluster.conftest import ClusterFactory, LocalCluster

pytestmark = pytest.mark.slow

#: the runtime tests' user server: ``sleep:N`` bodies sleep N s; each request touches ``$TEST_TRACE_DIR/<id>.<replica>``
USER_SERVER = str(Path(__file__).resolve().parents[1] / "runtime" / "user_server.py")
TICK = 0.2
#: scheduling slack on top of one tick (a loaded CI machine)
SLACK = 0.5
MAX_REPLICAS = 4


def write_api(cluster: LocalCluster, name: str, autoscaling: dict[str, Any]) -> tuple[Path, Path]:
    """An API of one test user server (``sleep:N`` bodies sleep N s) tracing each request it runs."""
    trace = cluster.workdir / f"trace-{name}"
    trace.mkdir()
    api = {
        "name": name,
        "kind": "AsyncAPI",
        "pod": {
            "max_concurrency": 1,
            "containers": [
                {"name": "api", "command": [sys.executable, USER_SERVER, "api"], "env": {"TEST_TRACE_DIR": str(trace)}}
            ],
        },
        "autoscaling": {"min_replicas": 0, "max_replicas": MAX_REPLICAS, "window": "10s", **autoscaling},
    }
    config = cluster.workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump([api]))
    return config, trace


def events(cluster: LocalCluster, api: str) -> list[dict[str, Any]]:
    return list(cluster.json("describe", api)["autoscaling_events"])


def wait_scaled_to_zero(cluster: LocalCluster, api: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        description = cluster.json("describe", api)
        if description["replica_counts"]["requested"] == 0 and not description["replicas"]:
            return
        assert time.monotonic() < deadline, f"{api} not back to 0 replicas after {timeout}s: {description}"
        time.sleep(0.2)


def test_a_request_to_an_idle_api_wakes_it_within_one_tick(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("--autoscaler-tick", str(TICK), "--grace-period", "1")
    # Cortex's upscale period and start-up hold (1m) would keep this API asleep for a minute
    config, _ = write_api(cluster, "sleepy", {"upscale_stabilization_period": "1m"})
    cluster.cortex("deploy", str(config))
    assert cluster.json("describe", "sleepy")["replica_counts"]["requested"] == 0
    time.sleep(3 * TICK)  # a few idle ticks

    submitted = time.time()
    rid = httpx.post(f"{cluster.gateway}/sleepy", content=b"sleep:0.1", timeout=10).json()["id"]
    result = cluster.wait_result("sleepy", rid, timeout=30)
    assert result["status"] == "completed" and result["attempts"] == 1, result

    (woke, *_) = events(cluster, "sleepy")
    assert (woke["from"], woke["to"]) == (0, 1)
    assert woke["reason"].startswith("wake from zero")
    assert submitted <= woke["time"] <= submitted + TICK + SLACK
    assert "0 -> 1" in cluster.cortex("describe", "sleepy").stdout  # the events table
    log = (cluster.state_dir / "logs" / "cluster.log").read_text()
    assert "autoscaling event: api sleepy: 0 -> 1 (wake from zero" in log


def test_a_request_to_a_sleeping_api_wakes_it_long_before_the_next_tick(make_cluster: ClusterFactory) -> None:
    """With a 10-minute tick, only the backend's announcement of the submit can wake the API in time."""
    cluster = make_cluster("--autoscaler-tick", "600", "--grace-period", "1")
    config, trace = write_api(cluster, "dozing", {"upscale_stabilization_period": "1m"})
    cluster.cortex("deploy", str(config))  # after the cluster's first tick: the deploy's own nudge watches it
    assert cluster.json("describe", "dozing")["replica_counts"]["requested"] == 0

    rid = httpx.post(f"{cluster.gateway}/dozing", content=b"sleep:0", timeout=10).json()["id"]
    result = cluster.wait_result("dozing", rid, timeout=60)  # far less than the tick
    assert result["status"] == "completed" and result["attempts"] == 1, result
    (woke,) = events(cluster, "dozing")
    assert (woke["from"], woke["to"]) == (0, 1) and woke["reason"].startswith("wake from zero"), woke
    assert [path.name.split(".")[0] for path in trace.iterdir()] == [rid]


@pytest.mark.timeout(150)
def test_a_burst_scales_up_within_the_step_limits_and_back_to_zero_without_stopping_busy_replicas(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster("--autoscaler-tick", str(TICK), "--grace-period", "1")
    periods = {"downscale_stabilization_period": "0s", "upscale_stabilization_period": "0s"}
    config, trace = write_api(cluster, "burst", periods)
    cluster.cortex("deploy", str(config))
    time.sleep(1)  # idle samples in the window, as in a real lull

    # two long requests first (they are leased first), then a burst of short ones: once the short
    # ones are done, the scale-in runs while two replicas are busy and the others idle
    bodies = [b"sleep:20"] * 2 + [b"sleep:1"] * 14
    with httpx.Client(timeout=10) as http:
        rids = [http.post(f"{cluster.gateway}/burst", content=body).json()["id"] for body in bodies]
    results = [cluster.wait_result("burst", rid, timeout=60) for rid in rids]
    wait_scaled_to_zero(cluster, "burst", timeout=30)

    # no request lost or failed, each run once: no busy replica was stopped (it would have
    # handed its request back after the 1 s grace period, and the request would have run again)
    assert [r["status"] for r in results] == ["completed"] * len(rids)
    assert all(r["attempts"] == 1 for r in results)
    assert Counter(p.name.split(".")[0] for p in trace.iterdir()) == dict.fromkeys(rids, 1)
    drained_busy = [
        p for p in (cluster.state_dir / "logs" / "burst").glob("*/dequeuer.log") if "draining:" in p.read_text()
    ]
    assert drained_busy == []

    steps = [(e["from"], e["to"]) for e in events(cluster, "burst")]
    assert steps[0] == (0, 1)
    assert max(to for _, to in steps) == MAX_REPLICAS
    assert steps[-1] == (1, 0)
    for before, after in steps:
        if after > before:
            assert after <= min(max(before + 1, math.ceil(before * 1.5)), MAX_REPLICAS), steps
        else:
            assert after >= min(before - 1, math.ceil(before * 0.75)), steps
    # the scale-in began while the long requests still ran, so idle and busy replicas coexisted
    long_done = min(_unix(r["finished_at"]) for r in results[:2])
    downs = [e for e in events(cluster, "burst") if e["to"] < e["from"]]
    assert any(e["time"] < long_done and e["to"] >= 2 for e in downs), downs


def _unix(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
