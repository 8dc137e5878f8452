"""The pipeline past one machine: gateways and dequeuers sharing only Redis or PostgreSQL, and S3 for blobs.

Under load, one gateway and one dequeuer are killed with SIGKILL: every acknowledged request
must still end ``completed`` with its own result.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from cortex.backends import BackendUrls, open_backends
from tests.e2e.conftest import Processes, api_yaml, free_port, wait_status
from tests.helpers import deploy
from tests.servers.databases import urls_for
from tests.servers.seaweed import s3_endpoint, s3_url

__all__ = ["s3_endpoint"]
pytestmark = pytest.mark.slow

TOTAL = 5000
KILL_AT = 1500


# 5,000 requests through six processes take 45-55 s on a quiet 2-core machine: allow a loaded one
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_gateways_and_dequeuers_sharing_servers_lose_nothing_under_kill_9(
    backend: str, processes: Processes, http: httpx.AsyncClient, tmp_path: Path, s3_endpoint: str
) -> None:
    async with urls_for(backend, tmp_path) as shared:
        urls = BackendUrls(
            queue=shared.queue, store=shared.store, blobs=s3_url(s3_endpoint, "scaleout", uuid.uuid4().hex)
        )
        processes.backend_args = ["--queue", urls.queue, "--store", urls.store, "--blobs", urls.blobs]
        backends = await open_backends(urls)
        try:
            await deploy(backends.catalog, api_yaml("echo", concurrency=8))
        finally:
            await backends.aclose()
        gateways = [free_port(), free_port()]
        gateway_procs = [processes.gateway(port) for port in gateways]
        user = free_port()
        processes.user_server(user)
        dequeuers = [processes.dequeuer("echo", user) for _ in range(4)]
        limits = asyncio.Semaphore(48)
        killed = asyncio.Event()

        async def submit(i: int) -> str | None:
            body = b'{"i": %d, "pad": "%s"}' % (i, b"x" * (100_000 if i % 50 == 0 else 0))  # some go to S3
            async with limits:
                port = gateways[1] if killed.is_set() else gateways[i % 2]
                try:
                    response = await http.post(f"http://127.0.0.1:{port}/echo", content=body)
                except httpx.TransportError:
                    return None  # its gateway was killed before answering: never acknowledged
            if i == KILL_AT:
                for proc in (gateway_procs[0], dequeuers[0]):
                    os.killpg(proc.pid, signal.SIGKILL)
                killed.set()
            assert response.status_code == 200, response.text
            rid: str = response.json()["id"]
            return rid

        accepted = [rid for rid in await asyncio.gather(*(submit(i) for i in range(TOTAL))) if rid is not None]
        assert len(accepted) > TOTAL - 100 and len(set(accepted)) == len(accepted)
        survivor = f"http://127.0.0.1:{gateways[1]}"

        async def outcome(rid: str) -> tuple[str, str | None]:
            async with limits:
                data = await wait_status(http, f"{survivor}/echo/{rid}", ("completed", "failed"), timeout=240)
            return data["status"], data.get("result", {}).get("id")

        results = await asyncio.gather(*(outcome(rid) for rid in accepted))
        processes.kill_all()  # before the namespace is dropped
    assert [status for status, _ in results] == ["completed"] * len(accepted)
    assert [echoed for _, echoed in results] == accepted
