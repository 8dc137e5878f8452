"""Scenario (w): the gateway's CPU with 1,000 idle waiters (issue 19), beside the same gateway idle.

The waiters are ``GET /<api>/<id>?wait=60`` on requests that stay queued (an API with no replica),
each on a connection of its own, from four loopback addresses (the gateway takes at most 256
connections from one address). Once they are all in, the gateway's CPU (user + system, from
``/proc/<pid>/stat``) is read over a window, and over a window of the same length with no waiter
before them. A wait costs no backend query and no timer tick while nothing changes: what is left
is what the event loop pays to hold the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

import aiohttp
import uvloop

from bench.cluster import Cluster
from bench.e2e import IDLE_API
from bench.profile import cpu_seconds
from bench.roundtrip import submit_many_ids

#: loopback addresses the waiters connect from (the gateway's --max-connections-per-address is 256)
SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
#: seconds each waiter asks to wait: longer than the settling and the window together
WAIT = 60
#: seconds the waiters get to be read by the gateway before the window
SETTLE = 3.0


def measure(cluster: Cluster, *, runs: int, waiters: int, window: float) -> dict[str, Any]:
    """Per run: the gateway's CPU (fraction of one core) idle, then with ``waiters`` open waits."""
    gateway = cluster.gateway_pids()[0]
    rows: list[dict[str, Any]] = []
    for index in range(runs):
        row = uvloop.run(_one(cluster.gateway_url, gateway, waiters, window))
        rows.append(row)
        print(
            f"  (w) run {index + 1}: gateway CPU {row['idle_cpu'] * 100:.2f}% idle,"
            f" {row['waiting_cpu'] * 100:.2f}% with {row['waiting']} waiters",
            file=sys.stderr,
        )
    return {"runs": rows, "waiters": waiters, "window_s": window}


def _cpu(pid: int, window: float) -> float:
    began, spent = time.monotonic(), cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - spent) / (time.monotonic() - began)


async def _one(gateway_url: str, pid: int, waiters: int, window: float) -> dict[str, Any]:
    idle = await asyncio.to_thread(_cpu, pid, window)
    async with aiohttp.ClientSession() as http:
        ids = await submit_many_ids(http, gateway_url, IDLE_API, waiters)
    per_source = -(-waiters // len(SOURCES))
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=per_source, local_addr=(source, 0)),
            timeout=aiohttp.ClientTimeout(total=WAIT + 30),
        )
        for source in SOURCES
    ]
    answered: list[int] = []

    async def wait(http: aiohttp.ClientSession, request_id: str) -> None:
        async with http.get(f"{gateway_url}/{IDLE_API}/{request_id}?wait={WAIT}") as response:
            await response.read()
            answered.append(response.status)

    tasks = [asyncio.create_task(wait(sessions[n % len(sessions)], rid)) for n, rid in enumerate(ids)]
    try:
        await asyncio.sleep(SETTLE)
        early = len(answered)
        waiting = await asyncio.to_thread(_cpu, pid, window)
        late = len(answered)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task
        for http in sessions:
            await http.close()
    return {"idle_cpu": idle, "waiting_cpu": waiting, "waiting": waiters - early, "answered_early": early,
            "answered_in_window": late - early}  # fmt: skip
