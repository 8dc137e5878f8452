"""Waiting without polling across processes (issue 19): the gateway hears of the dequeuer's steps
through the backend's notifications (here the embedded backend's datagrams)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import Processes, api_yaml, deploy_to, free_port

pytestmark = pytest.mark.slow


async def test_prefer_wait_answers_the_result_and_events_follow_the_request(
    processes: Processes, http: httpx.AsyncClient
) -> None:
    await deploy_to(processes.state_dir, api_yaml("echo"))
    gw, user = free_port(), free_port()
    processes.gateway(gw)
    processes.user_server(user)
    processes.dequeuer("echo", user)
    base = f"http://127.0.0.1:{gw}"

    # one exchange: the completed result (the dequeuer may start a moment late: the wait covers it)
    response = await http.post(f"{base}/echo", json={"text": "hi"}, headers={"Prefer": "wait=30"}, timeout=60)
    assert response.status_code == 200 and response.headers["preference-applied"] == "wait=30"
    data = response.json()
    assert data["status"] == "completed" and data["result"]["length"] == len(b'{"text":"hi"}'), data

    # a request that runs a while: its events stream shows each status, in order, then ends
    rid = (await http.post(f"{base}/echo", json={"sleep": 0.5})).json()["id"]
    seen = []
    async with http.stream("GET", f"{base}/echo/{rid}/events", timeout=60) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: "))["status"])
    # the dequeuer may have started it before the stream opened; it runs 0.5 s, so in_progress shows
    assert seen in (["in_queue", "in_progress", "completed"], ["in_progress", "completed"]), seen
