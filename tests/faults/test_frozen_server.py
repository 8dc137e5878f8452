"""A Redis server frozen (SIGSTOP) past the gateway's timeout during a submission: the retry finds it queued.

What was reproduced before the data plane: the gateway's create sat in the frozen server's buffer,
the gateway answered 503, Redis ran the create when it resumed but the enqueue never came, and the
retry with the same ``Idempotency-Key`` got ``200`` with an id that never ran. Now the submission is
one script: when the server resumes it stores and queues the request together.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from cortex.backends import BackendUrls, open_backends
from cortex.gateway import GatewaySettings, create_app
from tests.faults.test_interrupted_submit import _run_all
from tests.helpers import api_yaml, deploy
from tests.servers.private_redis import private_redis


async def test_a_submission_to_a_frozen_redis_is_queued_once_it_resumes(tmp_path: Path) -> None:
    async with private_redis(tmp_path) as server:
        url = f"{server.url}?prefix=frozen&socket_timeout=1"
        backends = await open_backends(BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path}/blobs"))
        try:
            await deploy(backends.catalog, api_yaml("echo"))
            app = create_app(backends, settings=GatewaySettings(catalog_ttl=3600))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
                assert (await client.post("/echo", content=b"{}")).status_code == 200  # the API cached, scripts loaded
                await _run_all(backends)

                server.freeze()
                try:
                    frozen = await client.post("/echo", content=b'{"n": 1}', headers={"Idempotency-Key": "k"})
                    assert frozen.status_code == 503, frozen.text
                    again = await client.post("/echo", content=b'{"n": 1}', headers={"Idempotency-Key": "k"})
                    assert again.status_code == 503, again.text
                finally:
                    server.thaw()
                retried = await client.post("/echo", content=b'{"n": 1}', headers={"Idempotency-Key": "k"})
                assert retried.status_code == 200, retried.text
                request_id = retried.json()["id"]
                assert await _run_all(backends) == [request_id]  # stored while frozen, queued with it, once
                status = await client.get(f"/echo/{request_id}")
                assert status.json()["status"] == "completed"
        finally:
            await backends.aclose()
