"""From a finish to the answer of a ``GET /<api>/<id>?wait=`` that waits for it, on each backend (issue 19).

In one process: the gateway in-process (``httpx.ASGITransport``), the request taken and finished
through the data plane as a dequeuer would. Measured from just before the finish is sent to the
answer: the finish's own round trip, the backend's notification, the one read it triggers and the
answer. ``python -m bench.wait_latency [N]`` with the test servers of ``tests/servers/databases.py``
prints p50 and p99 per backend (issue 19's goal: within 50 ms of the finish).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tests.helpers import api_yaml, deploy
from tests.servers.databases import urls_for

from cortex.backends import open_backends
from cortex.gateway import GatewaySettings, create_app
from cortex.requests import Outcome, Status, now


async def measure(backend: str, n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with urls_for(backend, Path(tmp)) as urls:
            backends = await open_backends(urls)
            try:
                await deploy(backends.catalog, api_yaml("noop"))
                app = create_app(backends, settings=GatewaySettings())
                transport = httpx.ASGITransport(app=app)
                watch = backends.plane.changes
                latencies = []
                async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                    for _ in range(n):
                        rid = (await client.post("/noop", content=b"{}")).json()["id"]
                        (taken,) = await backends.plane.take("noop", visibility=30, limit=1, max_attempts=3, timeout=5)
                        waiting = asyncio.create_task(client.get(f"/noop/{rid}?wait=30"))
                        while not watch.waiting(rid):
                            await asyncio.sleep(0.001)
                        start = time.perf_counter()
                        await backends.plane.finish(taken.lease, Outcome(Status.COMPLETED, result=b"{}"), now=now())
                        response = await waiting
                        latencies.append(time.perf_counter() - start)
                        assert response.json()["status"] == "completed"
                return latencies
            finally:
                await backends.aclose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    for backend in ("sqlite", "redis", "postgres"):
        ms = sorted(1000 * x for x in asyncio.run(measure(backend, n)))
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        p50 = statistics.median(ms)
        print(f"{backend:9} finish -> answer of a waiting GET: p50 {p50:.2f} ms, p99 {p99:.2f} ms (n={n})")


if __name__ == "__main__":
    main()
