"""Round trips: submit, then poll until the result is visible; one at a time or from concurrent clients.

Every round trip of every system (cortex-async, the user server called directly, Celery, RQ,
arq) is timed the same way: from the submit call to the first poll that sees the result, polling
every :data:`POLL` seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.wrk import BODY

#: seconds between two polls for a result
POLL = 0.001
_HEADERS = {"Content-Type": "application/json"}

Call = Callable[[], Awaitable[None]]


async def timed(call: Call) -> float:
    """Seconds one call took."""
    began = time.perf_counter()
    await call()
    return time.perf_counter() - began


async def sequential(call: Call, count: int, *, warmup: int = 20) -> list[float]:
    """``count`` calls one after the other (after ``warmup`` untimed ones)."""
    for _ in range(warmup):
        await call()
    return [await timed(call) for _ in range(count)]


async def concurrent(call: Call, clients: int, per_client: int, *, warmup: int = 5) -> list[float]:
    """``clients`` loops of ``per_client`` calls each, all at once."""

    async def client() -> list[float]:
        return await sequential(call, per_client, warmup=warmup)

    results = await asyncio.gather(*(client() for _ in range(clients)))
    return [sample for result in results for sample in result]


def session(connections: int = 64) -> aiohttp.ClientSession:
    """A keep-alive HTTP client session."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))


def cortex_call(http: aiohttp.ClientSession, gateway_url: str, api: str) -> Call:
    """``POST /<api>``, then ``GET /<api>/<id>`` until ``completed``."""
    submit_url = f"{gateway_url}/{api}"

    async def call() -> None:
        async with http.post(submit_url, data=BODY, headers=_HEADERS) as response:
            response.raise_for_status()
            request_id = (await response.json())["id"]
        status_url = f"{submit_url}/{request_id}"
        while True:
            async with http.get(status_url) as response:
                status = json.loads(await response.read())["status"]
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise RuntimeError(f"request {request_id} {status}")
            await asyncio.sleep(POLL)

    return call


def cortex_wait_call(http: aiohttp.ClientSession, gateway_url: str, api: str, *, via: str, wait: int = 10) -> Call:
    """A round trip without polling: ``POST /<api>`` with ``Prefer: wait=N`` answering the finished record
    (``via="post"``, one HTTP exchange), or ``POST /<api>`` then ``GET /<api>/<id>?wait=N`` (``via="get"``)."""
    submit_url = f"{gateway_url}/{api}"
    prefer = {**_HEADERS, "Prefer": f"wait={wait}"} if via == "post" else _HEADERS

    async def call() -> None:
        async with http.post(submit_url, data=BODY, headers=prefer) as response:
            response.raise_for_status()
            answer = json.loads(await response.read())
        if answer.get("status") != "completed":  # without Prefer: wait, the POST answers only the id
            async with http.get(f"{submit_url}/{answer['id']}?wait={wait}") as response:
                answer = json.loads(await response.read())
        if answer["status"] != "completed":
            raise RuntimeError(f"request {answer['id']} {answer['status']} after a wait of {wait}s")

    return call


def direct_call(http: aiohttp.ClientSession, url: str) -> Call:
    """``POST /`` to the user server itself: the baseline."""

    async def call() -> None:
        async with http.post(url, data=BODY, headers=_HEADERS) as response:
            response.raise_for_status()
            await response.read()

    return call


async def submit_many(
    http: aiohttp.ClientSession, gateway_url: str, api: str, count: int, *, clients: int = 32
) -> float:
    """Submit ``count`` requests from ``clients`` concurrent loops; return submissions per second."""
    url = f"{gateway_url}/{api}"
    left = count

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with http.post(url, data=BODY, headers=_HEADERS) as response:
                response.raise_for_status()
                await response.read()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.perf_counter() - began)


async def submit_many_ids(
    http: aiohttp.ClientSession, gateway_url: str, api: str, count: int, *, clients: int = 32
) -> list[str]:
    """Submit ``count`` requests from ``clients`` concurrent loops; their ids."""
    url = f"{gateway_url}/{api}"
    ids: list[str] = []
    left = count

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with http.post(url, data=BODY, headers=_HEADERS) as response:
                response.raise_for_status()
                ids.append(json.loads(await response.read())["id"])

    await asyncio.gather(*(client() for _ in range(clients)))
    return ids
