"""``cortex get <api>`` on a real local cluster: requests by status, the oldest queued wait, replicas busy and idle."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.slow

#: a user server that holds each request while the file ``gate`` (beside it) exists
GATED_SERVER = """
import http.server, json, os, pathlib, time

GATE = pathlib.Path(__file__).with_name("gate")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        while GATE.exists():
            time.sleep(0.02)
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), Handler).serve_forever()
"""

CONFIG = """
- name: gated
  kind: AsyncAPI
  pod:
    port: 8080
    max_concurrency: 1
    containers:
      - name: api
        command: ["python", "server.py"]
  autoscaling:
    min_replicas: 1
    max_replicas: 1
"""


def _until(cluster: LocalCluster, holds: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
    """The ``queue`` of ``cortex get gated -o json`` once ``holds`` says so (polled until ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        (api,) = cluster.json("get", "gated")
        queue: dict[str, Any] = api["queue"]
        if holds(queue):
            return queue
        assert time.monotonic() < deadline, f"the queue summary never got there: {queue}"
        time.sleep(0.2)


def test_cortex_get_shows_the_queue_and_which_replicas_are_busy(local_cluster: LocalCluster) -> None:
    folder = local_cluster.workdir / "gated"
    folder.mkdir()
    (folder / "server.py").write_text(GATED_SERVER)
    (folder / "cortex.yaml").write_text(textwrap.dedent(CONFIG))
    gate: Path = folder / "gate"
    local_cluster.cortex("deploy", str(folder / "cortex.yaml"))
    local_cluster.wait_live("gated")

    gate.touch()
    ids = [httpx.post(f"{local_cluster.gateway}/gated", json={"n": n}).json()["id"] for n in range(3)]
    held = _until(local_cluster, lambda q: q["requests"]["in_progress"] == 1 and q["replicas"]["busy"] == 1)
    assert held["requests"] == {"in_queue": 2, "in_progress": 1, "completed": 0, "failed": 0, "cancelled": 0}
    assert held["replicas"] == {"requested": 1, "ready": 1, "busy": 1, "idle": 0, "unknown": 0, "in_flight": 1}
    assert held["oldest_queued_age"] > 0

    (api,) = local_cluster.json("get", "gated")
    assert {"spec", "endpoint", "metadata", "status", "api_versions"} <= set(api)  # Cortex's keys stay
    pretty = local_cluster.cortex("get", "gated").stdout.splitlines()
    header = next(i for i, line in enumerate(pretty) if line.split()[:2] == ["in", "queue"])
    assert pretty[header + 1].split()[:5] == ["2", "1", "0", "0", "0"]
    load = next(i for i, line in enumerate(pretty) if line.startswith("busy replicas"))
    assert pretty[load + 1].split() == ["1", "0", "1"]

    gate.unlink()
    for rid in ids:
        assert local_cluster.wait_result("gated", rid)["status"] == "completed"
    done = _until(local_cluster, lambda q: q["replicas"]["idle"] == 1)
    assert done["requests"] == {"in_queue": 0, "in_progress": 0, "completed": 3, "failed": 0, "cancelled": 0}
    assert (done["replicas"]["busy"], done["oldest_queued_age"]) == (0, 0.0)
    assert local_cluster.json("get", "gated")[0]["queue"]["requests"]["completed"] == 3
