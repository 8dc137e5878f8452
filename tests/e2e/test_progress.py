"""Progress across processes, on every backend (issue 19): the example server reports to its dequeuer,
a separate gateway process streams it.

Gateway, dequeuer and ``examples/progress/server.py`` run as processes; the gateway hears of the
dequeuer's start, progress writes and finish only through the backend's notifications.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cortex.backends import BackendUrls, open_backends
from tests.e2e.conftest import Processes, api_yaml, free_port
from tests.helpers import deploy
from tests.servers.databases import urls_for

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "progress" / "server.py"


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    """The (name, JSON data) of each event of an SSE stream."""
    name = "message"
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
async def test_the_events_stream_shows_queued_started_progress_and_completed_in_order(
    backend: str, processes: Processes, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with urls_for(backend, tmp_path / "backend") as urls:
        if backend == "sqlite":  # the processes' own state directory
            urls = BackendUrls.for_state_dir(processes.state_dir)
        else:
            processes.backend_args = ["--queue", urls.queue, "--store", urls.store, "--blobs", urls.blobs]
        backends = await open_backends(urls)
        try:
            await deploy(backends.catalog, api_yaml("progress"))
        finally:
            await backends.aclose()
        gw, user, admin = free_port(), free_port(), free_port()
        processes.gateway(gw)
        env = {"CORTEX_PORT": str(user), "CORTEX_DEQUEUER_URL": f"http://127.0.0.1:{admin}"}
        processes.user_server(user, EXAMPLE, env)
        base = f"http://127.0.0.1:{gw}/progress"
        rid = (await http.post(base, json={"steps": 3, "seconds": 0.6})).json()["id"]
        seen: list[tuple[str, Any]] = []
        async with http.stream("GET", f"{base}/{rid}/events", timeout=60) as stream:
            events = _events(stream.aiter_lines())
            seen.append(await anext(events))  # in_queue: no dequeuer runs yet
            processes.dequeuer("progress", user, admin_port=admin)
            async for event in events:
                seen.append(event)
        record = (await http.get(f"{base}/{rid}")).json()
    shown = [(name, data["status"] if name == "status" else data) for name, data in seen]
    # in order: queued, started, its steps, completed. A step every 0.6 s against a write every 0.5 s
    # at most: each is usually its own event, but a loaded machine may coalesce some (never reorder
    # them), and the last one is always stored before the outcome.
    assert shown[:2] == [("status", "in_queue"), ("status", "in_progress")], shown
    assert shown[-2:] == [("progress", {"step": 3, "of": 3}), ("status", "completed")], shown
    steps = [value["step"] for name, value in shown[2:-1] if name == "progress"]
    assert len(steps) == len(shown) - 3 and steps == sorted(set(steps)), shown
    assert record["result"] == {"steps": 3} and record["progress"] == {"step": 3, "of": 3}
