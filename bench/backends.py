"""Scenario (f): the same pipeline on each queue and record backend, SQLite, Redis and PostgreSQL.

For each backend a cluster runs with ``--queue`` and ``--store`` on it (blobs stay files) and the
harness measures, as in (b) and (c): the round trip with one request in flight, less the direct
call's median; and the dispatch rate of several replicas. Here the drain's end is read from the
queue itself (``depth()`` back to zero: every request finished and acknowledged), the same way on
every backend, so the three columns are comparable with each other (not exactly with (c), which
reads the finish times from the embedded store).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import uvloop

from bench import e2e, profile, roundtrip
from bench.cluster import Cluster, api_spec
from bench.dispatch import probed, wait_for
from bench.procs import memory_mb
from cortex.backends import BackendUrls, open_backends

REDIS = "redis://127.0.0.1:6379/12"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def available() -> dict[str, str | None]:
    """Each backend's URL base (None for the embedded one), for the servers that answer."""
    found: dict[str, str | None] = {"sqlite": None}
    for name, base in (("redis", REDIS), ("postgres", POSTGRES)):
        if uvloop.run(_answers(base)):
            found[name] = base
        else:
            print(f"(f) {name} skipped: no server answers at {base}", file=sys.stderr)
    return found


def measure(
    work: Path, *, runs: int, sequential: int, requests: int, replicas: int, concurrency: int
) -> dict[str, Any]:
    """Every available backend in turn: one-in-flight overhead and dispatch rate, ``runs`` times each."""
    out: dict[str, Any] = {}
    for name, base in available().items():
        with _namespace(name, base) as url:
            cluster = Cluster(work / f"cluster-f-{name}", backend_url=url)
            cluster.up()
            try:
                out[name] = _one_backend(cluster, work, name, runs, sequential, requests, replicas, concurrency)
                if name == "postgres" and url is not None:
                    # the price of a flush, apart from everything else: what each take and finish waits for
                    out[name]["server_round_trips"] = profile.postgres_round_trips(url)
            finally:
                cluster.down()
    return {"backends": out, "replicas": replicas, "max_concurrency": concurrency, "requests": requests}


def _one_backend(
    cluster: Cluster, work: Path, name: str, runs: int, sequential: int, requests: int, replicas: int, concurrency: int
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with e2e.deployed(cluster, work, clients=1) as target:
        for _ in range(runs):
            rows.append({"one": e2e.summarize(*e2e.direct_and_polled(target, sequential))})
    for index, row in enumerate(rows):
        row |= _drain_run(cluster, work, name, f"{index}", requests, replicas, concurrency)
        print(
            f"  (f) {name} run {index + 1}: overhead p50 {row['one']['overhead_p50_ms']:.2f} ms,"
            f" p99 {row['one']['overhead_p99_ms']:.2f} ms; {row['completions_per_s']:.0f} completions/s",
            file=sys.stderr,
        )
    # py-spy takes CPU from the processes it watches: its drain is an extra one, left out of the rates
    sampled = _drain_run(cluster, work, name, "sampled", max(requests // 4, 1), replicas, concurrency, sample=True)
    print(f"  (f) {name} sampled drain: {sampled['completions_per_s']:.0f} completions/s", file=sys.stderr)
    return {"runs": rows, "sampled": sampled}


def _drain_run(
    cluster: Cluster,
    work: Path,
    name: str,
    label: str,
    requests: int,
    replicas: int,
    concurrency: int,
    *,
    sample: bool = False,
) -> dict[str, Any]:
    """Preload ``requests`` behind a readiness gate, open it, time the drain; account for its CPU."""
    row: dict[str, Any] = {"requests": requests}
    api = f"bench-f-{name}-{label}"
    gate = work / f"gate-f-{name}-{label}"
    cluster.deploy(api_spec(api, replicas=replicas, max_concurrency=concurrency, gate=gate), wait=False)
    wait_for(partial(probed, work, gate.name, replicas), 120, "replicas to start")
    row["preload_submits_per_s"] = uvloop.run(_submit(cluster.gateway_url, api, requests))
    accounting = profile.Accounting(
        {
            "gateway": cluster.gateway_pids,
            "dequeuers": partial(cluster.dequeuer_pids, api),
            "user servers": partial(profile.with_env, f"BENCH_GATE={gate}"),
            "database server": partial(profile.by_name, _SERVER_PROCESS[name]),
            "harness": lambda: [os.getpid()],
        },
        _counters(name, cluster.backend_url),
    )
    with contextlib.ExitStack() as stack:
        if sample:
            spy = stack.enter_context(profile.sampled(cluster.dequeuer_pids(api)[0], work / f"spy-f-{name}.txt"))
        accounting.start()
        started = time.monotonic()
        gate.touch()
        uvloop.run(_drain(cluster, api, timeout=60 + requests / 50))
        row["drain_s"] = time.monotonic() - started  # from the gate's opening to an empty queue
    row["completions_per_s"] = requests / row["drain_s"]
    row["profile"] = accounting.stop(requests)
    if sample:
        row["profile"]["one_dequeuer_sampled"] = spy
    row["dequeuer_rss_mb"] = [memory_mb(pid)["VmRSS"] for pid in cluster.dequeuer_pids(api)]
    cluster.delete(api)
    return row


#: the command name of each backend's server processes (none for the embedded one)
_SERVER_PROCESS = {"sqlite": "-", "redis": "redis-server", "postgres": "postgres"}


def _counters(name: str, url: str | None) -> Any:
    if name == "postgres" and url is not None:
        return profile.postgres_counters(url.partition("?")[0])
    if name == "redis" and url is not None:
        return profile.redis_counters(url.partition("?")[0])
    return profile.no_counters


async def _submit(gateway_url: str, api: str, count: int) -> float:
    async with roundtrip.session() as http:
        return await roundtrip.submit_many(http, gateway_url, api, count)


async def _drain(cluster: Cluster, api: str, *, timeout: float) -> None:
    """Return once ``api``'s queue holds nothing queued or leased.

    Polled every 100 ms: counting is a scan of the API's rows on SQLite and PostgreSQL, which should
    not take CPU from the dequeuers being measured. A drain takes 10 s or more: the error is under 1%.
    """
    backends = await open_backends(_urls(cluster))
    try:
        start = time.monotonic()
        while (await backends.queue.depth(api)).total:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{api}: the queue did not drain within {timeout:g}s")
            await asyncio.sleep(0.1)
    finally:
        await backends.aclose()


def _urls(cluster: Cluster) -> BackendUrls:
    return BackendUrls.resolve(cluster.state_dir, queue=cluster.backend_url, store=cluster.backend_url)


async def _answers(url: str) -> bool:
    try:
        backends = await open_backends(BackendUrls(queue=url, store=url, blobs="file:///tmp/cortex-bench-probe"))
    except Exception:
        return False
    await backends.aclose()
    return True


@contextlib.contextmanager
def _namespace(name: str, base: str | None) -> Iterator[str | None]:
    """A fresh key prefix (Redis) or schema (PostgreSQL) for one cluster, removed afterwards."""
    if base is None:
        yield None
        return
    tag = f"bench_{secrets.token_hex(4)}"
    url = f"{base}?prefix={tag}:" if name == "redis" else f"{base}?schema={tag}"
    try:
        yield url
    finally:
        uvloop.run(_drop(name, base, tag))


async def _drop(name: str, base: str, tag: str) -> None:
    if name == "redis":
        import redis.asyncio as redis

        client = redis.Redis.from_url(base)
        try:
            keys = [key async for key in client.scan_iter(match=f"{tag}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
        finally:
            await client.aclose()
    else:
        import asyncpg

        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
        finally:
            await conn.close()
