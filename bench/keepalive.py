"""Scenario (k): the 40 ms trap on keep-alive (issue 19, point 6), through a dequeuer with and without its remedy.

The user server is ``bench/twowrite_server.py`` (Python's ``http.server``, HTTP/1.1: the head and
the body in two writes). Two local clusters run side by side, the same but for the dequeuers'
private knob ``CORTEX_DEQUEUER_QUICKACK=0`` in one of them (``src/cortex/dequeuer/forward.py``:
``TCP_QUICKACK`` once an answer's head is in). Each has one replica of that server
(``max_concurrency`` 1, so one kept-alive connection); a round trip is ``POST /<api>`` with
``Prefer: wait=10``, answered with the finished record, one at a time. The two alternate in
chunks, so both see the same machine; beside them, the same server called directly by a
kept-alive aiohttp client, which pays the trap itself.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop

from bench import roundtrip
from bench.cluster import Cluster, api_spec
from bench.procs import REPO, free_port, running, wait_http
from bench.stats import latency_summary

API = "bench-two-writes"
SERVER = REPO / "bench" / "twowrite_server.py"
CHUNKS = 4
#: the two dequeuer settings compared
SETTINGS = {"quickack": {}, "without": {"CORTEX_DEQUEUER_QUICKACK": "0"}}


@contextlib.contextmanager
def _cluster(root: Path, env: dict[str, str]) -> Iterator[Cluster]:
    cluster = Cluster(root, env=env)
    cluster.up()
    try:
        cluster.deploy(api_spec(API, replicas=1, max_concurrency=1, server=SERVER))
        yield cluster
    finally:
        cluster.down()


def measure(work: Path, *, runs: int, count: int) -> dict[str, Any]:
    """Per run, ``count`` round trips through each cluster and ``count`` direct calls."""
    rows: list[dict[str, Any]] = []
    port = free_port()
    with contextlib.ExitStack() as stack:
        clusters = {
            name: stack.enter_context(_cluster(work / f"cluster-k-{name}", env)) for name, env in SETTINGS.items()
        }
        stack.enter_context(
            running([sys.executable, str(SERVER)], work / "two-writes-direct.log", env={"CORTEX_PORT": str(port)})
        )
        wait_http(f"http://127.0.0.1:{port}/")
        for index in range(runs):
            samples = uvloop.run(_samples(clusters, f"http://127.0.0.1:{port}/", count))
            row = {name: latency_summary(values) for name, values in samples.items()}
            rows.append(row)
            print(
                f"  (k) run {index + 1}: p50 {row['quickack']['p50_ms']:.2f} ms with TCP_QUICKACK,"
                f" {row['without']['p50_ms']:.2f} ms without; direct {row['direct']['p50_ms']:.2f} ms",
                file=sys.stderr,
            )
    return {"runs": rows, "count": count}


async def _samples(clusters: dict[str, Cluster], direct_url: str, count: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in (*clusters, "direct")}
    chunk = max(count // CHUNKS, 1)
    async with roundtrip.session(connections=1) as http:
        calls = {
            name: roundtrip.cortex_wait_call(http, cluster.gateway_url, API, via="post")
            for name, cluster in clusters.items()
        }
        calls["direct"] = roundtrip.direct_call(http, direct_url)
        for call in calls.values():  # a first request through each: the replica's connection is open
            await call()
        for _ in range(CHUNKS):
            for name, call in calls.items():
                out[name] += await roundtrip.sequential(call, chunk, warmup=1)
    return out
