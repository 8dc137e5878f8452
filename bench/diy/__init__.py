"""Scenario (d): the do-it-yourself stacks (Celery, RQ, arq) on the local Redis, in a dedicated DB.

Each stack gets the same no-op job (it returns ``{}``) and the same 1 KiB JSON payload. Its submit
rate is measured with its own client and no worker running, one job at a time (and, for a client
that can, 64 at once), beside cortex-async's at the same concurrency; its round trip with its
worker running as a subprocess, two ways: polling every millisecond (as in scenario b), and the
stack's own blocking wait (Celery's ``AsyncResult.get()``, RQ's ``Job.latest_result(timeout=)``,
arq's ``Job.result()``), beside cortex-async's polling and ``Prefer: wait`` round trips. Raw round
trips are compared with raw round trips. Each worker runs in its lowest-latency setting: Celery's
``solo`` pool, RQ's ``SimpleWorker`` (no fork per job), arq with ``poll_delay`` 1 ms (its default
of 0.5 s would dominate).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import uvloop

from bench.e2e import summarize
from bench.procs import REPO, running
from bench.roundtrip import POLL, sequential
from bench.stats import latency_summary
from bench.wrk import BODY

#: the Redis DB the stacks use; only it is ever flushed
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "13"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
QUEUE = "cortex-bench"
#: how many alternations of a stack's round trips and cortex-async's in one run
CHUNKS = 6
#: the concurrencies submit rates are measured at (every stack at the first; those that can at both)
SUBMIT_CLIENTS = (1, 64)
#: seconds a blocking wait may take before the round trip counts as broken
WAIT_TIMEOUT = 10.0
PAYLOAD: dict[str, Any] = json.loads(BODY)


class Stack(Protocol):
    """What the scenario needs of one stack."""

    @property
    def name(self) -> str:
        """What the report calls it."""

    @property
    def worker_argv(self) -> list[str]:
        """The command that runs its worker."""

    async def submit(self) -> object:
        """Submit one no-op job; a handle to poll."""

    async def visible(self, handle: object) -> bool:
        """Whether the job's result can be read."""

    @property
    def concurrent_submits(self) -> bool:
        """Whether its client can submit many jobs at once (asyncio), or one at a time only."""

    async def wait(self, handle: object, timeout: float) -> None:
        """Block until the job's result is in, with the stack's own waiting call."""

    async def submit_many(self, count: int, clients: int) -> None:
        """Submit ``count`` jobs from ``clients`` concurrent loops (1 for a synchronous client)."""

    async def flush(self) -> None:
        """Empty the dedicated Redis DB."""

    async def aclose(self) -> None:
        """Close the client's connections."""


def redis_up() -> bool:
    """Whether the local Redis answers."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stacks() -> list[Stack]:
    """Celery, RQ and arq (imported only here: they come with the ``bench`` extra)."""
    from bench.diy.arq_jobs import ArqStack
    from bench.diy.celery_jobs import CeleryStack
    from bench.diy.rq_jobs import RqStack

    return [CeleryStack(), RqStack(), ArqStack()]


class Ours(Protocol):
    """cortex-async's side of the comparison, measured beside each stack."""

    def round_trips(self, count: int) -> dict[str, list[float]]:
        """``count`` each of direct calls and round trips (``poll``, ``post_wait``, ``get_wait``), one in flight."""

    def submit_rate(self, count: int, clients: int) -> float:
        """Submissions per second to an API with no replica, from ``clients`` concurrent clients."""


def measure(work: Path, *, runs: int, submits: int, sequential_count: int, ours: Ours | None = None) -> dict[str, Any]:
    """Per stack and run: submit rates without a worker, then round trips with one.

    ``ours`` gives cortex-async's figures; they alternate with the stack's in :data:`CHUNKS` chunks,
    so that both see the same machine.
    """
    results: dict[str, Any] = {}
    env = dict(os.environ, PYTHONPATH=str(REPO), BENCH_REDIS_DB=str(REDIS_DB))
    for stack in stacks():
        rows = []
        for index in range(runs):
            row: dict[str, Any] = {"submits_per_s": {}, "cortex_submits_per_s": {}}
            for clients in SUBMIT_CLIENTS:
                if clients == 1 or stack.concurrent_submits:
                    row["submits_per_s"][str(clients)] = uvloop.run(_submit_rate(stack, submits, clients))
                if ours is not None:
                    row["cortex_submits_per_s"][str(clients)] = ours.submit_rate(submits, clients)
            polled: list[float] = []
            waited: list[float] = []
            mine: dict[str, list[float]] = {}
            chunk = max(sequential_count // CHUNKS, 1)
            with running(stack.worker_argv, work / f"{stack.name}-worker.log", env=env):
                uvloop.run(_round_trips(stack, 0, warmup=20))  # the worker is up once a first job went through
                for _ in range(CHUNKS):
                    polled += uvloop.run(_round_trips(stack, chunk, warmup=2))
                    waited += uvloop.run(_round_trips(stack, chunk, warmup=2, blocking=True))
                    if ours is not None:
                        for key, samples in ours.round_trips(chunk).items():
                            mine.setdefault(key, []).extend(samples)
            row |= {"round_trip_s": polled, "wait_round_trip_s": waited}
            beside = ""
            if ours is not None:
                row["cortex"] = summarize(mine["direct"], mine["poll"])
                row["cortex_post_wait"] = latency_summary(mine["post_wait"])
                row["cortex_get_wait"] = latency_summary(mine["get_wait"])
                beside = (
                    f"; cortex-async beside it: poll p50 {row['cortex']['cortex']['p50_ms']:.2f} ms,"
                    f" Prefer: wait p50 {row['cortex_post_wait']['p50_ms']:.2f} ms"
                )
            rows.append(row)
            print(
                f"  (d) {stack.name} run {index + 1}: {row['submits_per_s']['1']:.0f} submits/s one at a time,"
                f" round trip p50 {latency_summary(polled)['p50_ms']:.2f} ms polling,"
                f" {latency_summary(waited)['p50_ms']:.2f} ms blocking{beside}",
                file=sys.stderr,
            )
        uvloop.run(_flush(stack))
        results[stack.name] = {"runs": rows}
    return results


async def _submit_rate(stack: Stack, count: int, clients: int) -> float:
    await stack.flush()
    began = time.perf_counter()
    await stack.submit_many(count, clients)
    rate = count / (time.perf_counter() - began)
    await stack.flush()
    await stack.aclose()
    return rate


async def _round_trips(stack: Stack, count: int, *, warmup: int, blocking: bool = False) -> list[float]:
    async def call() -> None:
        handle = await stack.submit()
        if blocking:
            await stack.wait(handle, WAIT_TIMEOUT)
            return
        while not await stack.visible(handle):
            await asyncio.sleep(POLL)

    try:
        await asyncio.wait_for(call(), 60)
        return await sequential(call, count, warmup=warmup)
    finally:
        await stack.aclose()


async def _flush(stack: Stack) -> None:
    await stack.flush()
    await stack.aclose()
