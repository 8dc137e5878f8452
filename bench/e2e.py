"""Scenario (b): end-to-end overhead for a no-op user server, beside calling that server directly.

A round trip is ``POST /<api>`` to the first ``GET /<api>/<id>`` that shows ``completed``
(polling every millisecond). The overhead at a percentile is that percentile of the round trips
minus the median time of calling the user server directly under the same load (the handler's own
time, which a user pays with or without cortex-async).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop

from bench import roundtrip
from bench.cluster import NOOP_SERVER, Cluster, api_spec
from bench.procs import free_port, running, wait_http
from bench.stats import latency_summary, median

API = "bench-e2e"
#: an API with no replica: what is submitted to it stays queued (submit rates of d, the waiters of w)
IDLE_API = "bench-idle"


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """An API of one replica of the no-op server, and the same server to call directly."""

    gateway_url: str
    direct_url: str


@contextlib.contextmanager
def deployed(cluster: Cluster, work: Path, *, clients: int) -> Iterator[Target]:
    """Deploy the API (``max_concurrency`` = ``clients``) and start the direct server, for the block."""
    cluster.deploy(api_spec(API, replicas=1, max_concurrency=max(clients, 1)))
    cluster.deploy(api_spec(IDLE_API, replicas=0))
    port = free_port()
    env = {"CORTEX_PORT": str(port), "PATH": "/usr/bin:/bin"}
    try:
        with running([sys.executable, str(NOOP_SERVER)], work / "direct-server.log", env=env):
            wait_http(f"http://127.0.0.1:{port}/healthz")
            yield Target(cluster.gateway_url, f"http://127.0.0.1:{port}/")
    finally:
        cluster.delete(API)
        cluster.delete(IDLE_API)


def measure(target: Target, *, runs: int, sequential: int, clients: int, per_client: int) -> dict[str, Any]:
    """Round trips one at a time and from ``clients`` concurrent clients, through cortex and direct."""
    rows: list[dict[str, Any]] = []
    for index in range(runs):
        row = {
            "one": uvloop.run(_compare(target, sequential, 1)),
            "load": uvloop.run(_compare(target, per_client, clients)),
        }
        rows.append(row)
        print(
            f"  (b) run {index + 1}: overhead p50 {row['one']['overhead_p50_ms']:.2f} ms,"
            f" p99 {row['one']['overhead_p99_ms']:.2f} ms (one in flight);"
            f" p50 {row['load']['overhead_p50_ms']:.2f} ms, p99 {row['load']['overhead_p99_ms']:.2f} ms"
            f" ({clients} clients)",
            file=sys.stderr,
        )
    return {"runs": rows, "clients": clients}


def direct_and_polled(target: Target, count: int) -> tuple[list[float], list[float]]:
    """``count`` direct calls, then ``count`` round trips polling every millisecond, one at a time (scenario f)."""
    return uvloop.run(_samples(target, count, 1, warmup=2))


def one_in_flight(target: Target, count: int) -> dict[str, list[float]]:
    """What scenario (d) sets beside each stack, ``count`` of each, one at a time: direct calls (``direct``),
    round trips polling every millisecond (``poll``), ``POST`` with ``Prefer: wait`` (``post_wait``) and
    ``POST`` then ``GET ?wait=`` (``get_wait``)."""

    async def samples() -> dict[str, list[float]]:
        direct_s, poll_s = await _samples(target, count, 1, warmup=2)
        async with roundtrip.session() as http:
            out = {"direct": direct_s, "poll": poll_s}
            for via in ("post", "get"):
                call = roundtrip.cortex_wait_call(http, target.gateway_url, API, via=via)
                out[f"{via}_wait"] = await roundtrip.sequential(call, count, warmup=2)
        return out

    return uvloop.run(samples())


def submit_rate(target: Target, count: int, clients: int) -> float:
    """Submissions per second to the API with no replica, from ``clients`` concurrent aiohttp loops."""

    async def rate() -> float:
        async with roundtrip.session() as http:
            return await roundtrip.submit_many(http, target.gateway_url, IDLE_API, count, clients=clients)

    return uvloop.run(rate())


async def _compare(target: Target, count: int, clients: int) -> dict[str, Any]:
    """Direct calls, then round trips through cortex-async; ``count`` per client."""
    return summarize(*await _samples(target, count, clients, warmup=20 if clients == 1 else 5))


async def _samples(target: Target, count: int, clients: int, *, warmup: int) -> tuple[list[float], list[float]]:
    async with roundtrip.session() as http:
        through = roundtrip.cortex_call(http, target.gateway_url, API)
        direct = roundtrip.direct_call(http, target.direct_url)
        if clients == 1:
            direct_s = await roundtrip.sequential(direct, count, warmup=warmup)
            through_s = await roundtrip.sequential(through, count, warmup=warmup)
        else:
            direct_s = await roundtrip.concurrent(direct, clients, count, warmup=warmup)
            through_s = await roundtrip.concurrent(through, clients, count, warmup=warmup)
    return direct_s, through_s


def summarize(direct_s: list[float], through_s: list[float]) -> dict[str, Any]:
    """Percentiles of both, and the overhead: round-trip percentiles less the direct call's median."""
    handler_ms = median(direct_s) * 1000
    cortex = latency_summary(through_s)
    return {
        "direct": latency_summary(direct_s),
        "cortex": cortex,
        "overhead_p50_ms": cortex["p50_ms"] - handler_ms,
        "overhead_p99_ms": cortex["p99_ms"] - handler_ms,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Beside:
    """cortex-async's side of scenario (d) (:class:`bench.diy.Ours`), on ``target``."""

    target: Target

    def round_trips(self, count: int) -> dict[str, list[float]]:
        """See :func:`one_in_flight`."""
        return one_in_flight(self.target, count)

    def submit_rate(self, count: int, clients: int) -> float:
        """See :func:`submit_rate`."""
        return submit_rate(self.target, count, clients)
