"""Scenario (d): the do-it-yourself stacks (Celery, RQ, arq) on the local Redis, in a dedicated DB.

Each stack gets the same no-op job (it returns ``{}``) and the same 1 KiB JSON payload. Its submit
rate is measured with its own client and no worker running; its round trip (submit to result
visible, polling every millisecond, as in scenario b) with its worker running as a subprocess.
Each worker runs in its lowest-latency setting: Celery's ``solo`` pool, RQ's ``SimpleWorker``
(no fork per job), arq with ``poll_delay`` 1 ms (its default of 0.5 s would dominate).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import uvloop

from bench.e2e import summarize
from bench.procs import REPO, running
from bench.roundtrip import POLL, sequential
from bench.wrk import BODY

#: the Redis DB the stacks use; only it is ever flushed
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "13"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
QUEUE = "cortex-bench"
#: how many alternations of a stack's round trips and cortex-async's in one run
CHUNKS = 6
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

    async def submit_many(self, count: int) -> None:
        """Submit ``count`` jobs as fast as the stack's client allows."""

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


def measure(
    work: Path,
    *,
    runs: int,
    submits: int,
    sequential_count: int,
    ours: Callable[[int], tuple[list[float], list[float]]] | None = None,
) -> dict[str, Any]:
    """Per stack and run: submit rate without a worker, then round trips with one.

    ``ours`` gives cortex-async's direct calls and round trips (scenario b, one in flight); they
    alternate with the stack's in :data:`CHUNKS` chunks, so that both see the same machine.
    """
    results: dict[str, Any] = {}
    env = dict(os.environ, PYTHONPATH=str(REPO), BENCH_REDIS_DB=str(REDIS_DB))
    for stack in stacks():
        rows = []
        for index in range(runs):
            rate = uvloop.run(_submit_rate(stack, submits))
            samples: list[float] = []
            direct_s: list[float] = []
            through_s: list[float] = []
            with running(stack.worker_argv, work / f"{stack.name}-worker.log", env=env):
                uvloop.run(_round_trips(stack, 0, warmup=20))  # the worker is up once a first job went through
                for _ in range(CHUNKS):
                    samples += uvloop.run(_round_trips(stack, sequential_count // CHUNKS, warmup=2))
                    if ours is not None:
                        direct, through = ours(sequential_count // CHUNKS)
                        direct_s += direct
                        through_s += through
            row: dict[str, Any] = {"submits_per_s": rate, "round_trip_s": samples}
            beside = ""
            if ours is not None:
                row["cortex"] = summarize(direct_s, through_s)
                beside = f"; cortex-async overhead p50 beside it {row['cortex']['overhead_p50_ms']:.2f} ms"
            rows.append(row)
            ordered = sorted(samples)
            print(
                f"  (d) {stack.name} run {index + 1}: {rate:.0f} submits/s,"
                f" round trip p50 {ordered[len(ordered) // 2] * 1000:.2f} ms{beside}",
                file=sys.stderr,
            )
        uvloop.run(_flush(stack))
        results[stack.name] = {"runs": rows}
    return results


async def _submit_rate(stack: Stack, count: int) -> float:
    await stack.flush()
    began = time.perf_counter()
    await stack.submit_many(count)
    rate = count / (time.perf_counter() - began)
    await stack.flush()
    await stack.aclose()
    return rate


async def _round_trips(stack: Stack, count: int, *, warmup: int) -> list[float]:
    async def call() -> None:
        handle = await stack.submit()
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
