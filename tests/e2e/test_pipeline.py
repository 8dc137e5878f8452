"""The embedded pipeline as separate processes: gateways, dequeuers and a stdlib user server."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Processes, api_yaml, deploy_to, free_port, wait_status

pytestmark = pytest.mark.slow


async def test_request_travels_gateway_dequeuer_user_server(processes: Processes, http: httpx.AsyncClient) -> None:
    await deploy_to(processes.state_dir, api_yaml("echo"))
    gw, user = free_port(), free_port()
    processes.gateway(gw)
    processes.user_server(user)
    processes.dequeuer("echo", user)
    response = await http.post(f"http://127.0.0.1:{gw}/echo", json={"text": "hi"})
    assert response.status_code == 200
    rid = response.json()["id"]
    data = await wait_status(http, f"http://127.0.0.1:{gw}/echo/{rid}", ("completed", "failed"))
    assert data["status"] == "completed", data
    assert data["result"]["id"] == rid and data["result"]["content_type"] == "application/json"
    assert data["result"]["length"] == len(b'{"text":"hi"}')


async def test_killed_dequeuer_request_is_completed_by_another(processes: Processes, http: httpx.AsyncClient) -> None:
    await deploy_to(processes.state_dir, api_yaml("echo"))
    gw, user = free_port(), free_port()
    processes.gateway(gw)
    processes.user_server(user)
    first = processes.dequeuer("echo", user, lease_seconds=2)
    rid = (await http.post(f"http://127.0.0.1:{gw}/echo", json={"sleep": 1})).json()["id"]
    url = f"http://127.0.0.1:{gw}/echo/{rid}"
    await wait_status(http, url, ("in_progress",))
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    processes.dequeuer("echo", user, lease_seconds=2)
    data = await wait_status(http, url, ("completed", "failed"))
    assert data["status"] == "completed" and data["attempts"] == 2, data
    assert data["result"]["id"] == rid


async def test_request_whose_worker_dies_max_attempts_times_fails(
    processes: Processes, http: httpx.AsyncClient
) -> None:
    await deploy_to(processes.state_dir, api_yaml("echo", extra="async: {max_attempts: 2}"))
    gw, user = free_port(), free_port()
    processes.gateway(gw)
    processes.user_server(user)
    rid = (await http.post(f"http://127.0.0.1:{gw}/echo", json={"sleep": 60})).json()["id"]
    url = f"http://127.0.0.1:{gw}/echo/{rid}"
    for attempt in (1, 2):
        worker = processes.dequeuer("echo", user, lease_seconds=1)
        data = await wait_status(http, url, ("in_progress",))
        while data["attempts"] < attempt:
            data = await wait_status(http, url, ("in_progress",))
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    processes.dequeuer("echo", user, lease_seconds=1)
    data = await wait_status(http, url, ("completed", "failed"))
    assert data["status"] == "failed" and data["error"]["kind"] == "max_attempts", data


async def test_two_gateways_two_dequeuers_lose_nothing(processes: Processes, http: httpx.AsyncClient) -> None:
    await deploy_to(processes.state_dir, api_yaml("echo", concurrency=8))
    gateways = [free_port(), free_port()]
    user = free_port()
    for port in gateways:
        processes.gateway(port)
    processes.user_server(user)
    processes.dequeuer("echo", user)
    processes.dequeuer("echo", user)
    total = 2000
    limits = asyncio.Semaphore(64)

    async def submit(i: int) -> tuple[str, str]:
        base = f"http://127.0.0.1:{gateways[i % 2]}"
        async with limits:
            response = await http.post(f"{base}/echo", json={"i": i})
        assert response.status_code == 200, response.text
        return base, response.json()["id"]

    accepted = await asyncio.gather(*(submit(i) for i in range(total)))
    assert len({rid for _, rid in accepted}) == total

    async def outcome(base: str, rid: str) -> tuple[str, str | None]:
        async with limits:
            data = await wait_status(http, f"{base}/echo/{rid}", ("completed", "failed"), timeout=120)
        return data["status"], data.get("result", {}).get("id")

    results = await asyncio.gather(*(outcome(base, rid) for base, rid in accepted))
    assert [status for status, _ in results] == ["completed"] * total
    assert [echoed for _, echoed in results] == [rid for _, rid in accepted]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_200_mb_upload_keeps_gateway_memory_flat(processes: Processes, http: httpx.AsyncClient) -> None:
    await deploy_to(processes.state_dir, api_yaml("echo", extra="async: {max_payload_size: 300Mi}"))
    gw = free_port()
    gateway = processes.gateway(gw)
    await http.post(f"http://127.0.0.1:{gw}/echo", content=b"warm-up")
    before = _rss_kib(gateway.pid)
    chunk = b"x" * (1 << 20)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield chunk

    response = await http.post(f"http://127.0.0.1:{gw}/echo", content=body())
    assert response.status_code == 200, response.text
    grown_mib = (_rss_kib(gateway.pid) - before) / 1024
    assert grown_mib < 50, f"gateway grew by {grown_mib:.0f} MiB for a 200 MiB upload"
    blob = next((processes.state_dir / "blobs").rglob(response.json()["id"]))
    assert blob.stat().st_size == 200 * (1 << 20)
