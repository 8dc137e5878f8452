"""A batch through real processes: each payload reaches the user server as if POSTed alone as JSON."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import Processes, api_yaml, deploy_to, free_port

pytestmark = pytest.mark.slow


async def test_each_payload_of_a_batch_is_run_as_a_json_request(processes: Processes, http: httpx.AsyncClient) -> None:
    await deploy_to(processes.state_dir, api_yaml("echo", concurrency=4))
    gw, user = free_port(), free_port()
    processes.gateway(gw)
    processes.user_server(user)
    processes.dequeuer("echo", user)
    base = f"http://127.0.0.1:{gw}"
    # spacing kept as sent; one payload over the gateway's 64 KiB inline limit goes through the blob store
    payloads = [b'{"n": %d,  "pad": "%s"}' % (n, b"x" * n) for n in range(40)]
    payloads.append(json.dumps({"big": "y" * 70_000}).encode())
    body = b"\n".join(payloads) + b"\n"
    answer = await http.post(f"{base}/echo/batch", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200, answer.text
    ids = answer.json()["ids"]
    assert len(ids) == len(payloads)
    for request_id, payload in zip(ids, payloads, strict=True):
        record = (await http.get(f"{base}/echo/{request_id}", params={"wait": "30"}, timeout=60)).json()
        assert record["status"] == "completed", record
        assert record["result"]["id"] == request_id
        assert (record["result"]["length"], record["result"]["content_type"]) == (len(payload), "application/json")
