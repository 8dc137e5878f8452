"""Scenario (c): dispatch throughput, completions per second of several replicas of a no-op server.

The replicas start with their readiness held back (the no-op server's gate), N requests are
submitted, then the gate opens for every replica at once and the harness waits until all N are
completed. The rate is N over the time from the first start to the last finish (read from the
embedded store); the steady rate is the same over the middle 80% of the finishes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import uvloop

from bench import roundtrip
from bench.cluster import Cluster, api_spec
from bench.procs import memory_mb


def measure(
    cluster: Cluster, work: Path, *, runs: int, requests: int, replicas: int, concurrency: int
) -> dict[str, Any]:
    """``runs`` rounds of load, release, drain; each on a fresh API."""
    rows = []
    for index in range(runs):
        api = f"bench-dispatch-{index}"
        gate = work / f"gate-{index}"
        cluster.deploy(api_spec(api, replicas=replicas, max_concurrency=concurrency, gate=gate), wait=False)
        wait_for(partial(probed, work, gate.name, replicas), 120, "replicas to start")
        idle = [memory_mb(pid)["VmRSS"] for pid in cluster.dequeuer_pids(api)]
        submit_rate = uvloop.run(_submit(cluster.gateway_url, api, requests))
        gate.touch()
        wait_for(partial(_drained, cluster, api, requests), 60 + requests / 50, "the queue to drain")
        done, finished, first_start = cluster.finished_times(api)
        low, high = int(0.1 * done), int(0.9 * done) - 1
        memory = [memory_mb(pid) for pid in cluster.dequeuer_pids(api)]
        row: dict[str, Any] = {
            "requests": done,
            "completions_per_s": done / (finished[-1] - first_start),
            "steady_completions_per_s": (high - low) / (finished[high] - finished[low]),
            "preload_submits_per_s": submit_rate,
            "dequeuer_idle_rss_mb": idle,
            "dequeuer_rss_mb": [m["VmRSS"] for m in memory],
            "dequeuer_peak_rss_mb": [m["VmHWM"] for m in memory],
        }
        rows.append(row)
        print(
            f"  (c) run {index + 1}: {row['completions_per_s']:.0f} completions/s"
            f" (steady {row['steady_completions_per_s']:.0f}/s), dequeuer RSS"
            f" {', '.join(f'{m:.1f}' for m in row['dequeuer_rss_mb'])} MB"
            f" (idle {', '.join(f'{m:.1f}' for m in idle)} MB)",
            file=sys.stderr,
        )
        cluster.delete(api)
    return {"runs": rows, "replicas": replicas, "max_concurrency": concurrency}


async def _submit(gateway_url: str, api: str, count: int) -> float:
    async with roundtrip.session() as http:
        return await roundtrip.submit_many(http, gateway_url, api, count)


def probed(work: Path, gate: str, replicas: int) -> bool:
    """Whether ``replicas`` no-op servers have been probed (and held back) at ``gate``."""
    return len(list(work.glob(f"{gate}.probed.*"))) >= replicas


def _drained(cluster: Cluster, api: str, requests: int) -> bool:
    return cluster.count(api, "completed") >= requests


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds, or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
