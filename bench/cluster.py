"""A local cluster in a temporary state directory on free ports, driven as a user would.

The autoscaler ticks once a day, so an API keeps the replicas it was deployed with: an API with
``min_replicas: 0`` never takes work (scenario a), and a fixed number of replicas serves the others.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import REPO, free_port, memory_mb, pids_with, wait_http
from cortex.client import Client

#: seconds between two autoscaler ticks: never, within a benchmark
AUTOSCALER_TICK = 86400.0
NOOP_SERVER = REPO / "bench" / "noop_server.py"


class Cluster:
    """``cortex cluster up`` in ``root``; :meth:`down` stops it and leaves nothing running."""

    def __init__(self, root: Path, *, backend_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.root = root
        #: a Redis or PostgreSQL URL for the queue and the records (default: the embedded SQLite)
        self.backend_url = backend_url
        self.state_dir = root / "state"
        self.gateway_port = free_port()
        self.operator_port = free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        # the cluster's processes inherit it (``env``: extra variables, as bench/keepalive.py's private knob)
        # CORTEX_AUTOSCALER_WAKE=0: a submit to an API at zero does not wake it either (a private knob of the
        # operator), so the replicas are what the scenario deployed; bench/wake.py's cluster turns it back on
        self.env = {
            **os.environ,
            "CORTEX_CLI_CONFIG_DIR": str(root / "cli"),
            "CORTEX_AUTOSCALER_WAKE": "0",
            **(env or {}),
        }
        self.client = Client(f"http://127.0.0.1:{self.operator_port}")

    @property
    def up_command(self) -> list[str]:
        """The command line that starts this cluster."""
        return [
            "cortex", "cluster", "up", "--state-dir", str(self.state_dir),
            "--gateway-port", str(self.gateway_port), "--operator-port", str(self.operator_port),
            "--autoscaler-tick", f"{AUTOSCALER_TICK:g}", "--env", "bench",
            *([] if self.backend_url is None else ["--queue", self.backend_url, "--store", self.backend_url]),
        ]  # fmt: skip

    def up(self) -> None:
        """Start the cluster and wait for its gateway."""
        self._cortex(self.up_command[1:])
        wait_http(f"{self.gateway_url}/healthz")

    def down(self) -> None:
        """Drain and stop the cluster."""
        self._cortex(["cluster", "down", "--state-dir", str(self.state_dir)])

    def _cortex(self, args: list[str]) -> None:
        cortex = Path(sys.executable).with_name("cortex")
        subprocess.run([str(cortex), *args], env=self.env, check=True, capture_output=True)

    def deploy(self, spec: dict[str, Any], *, wait: bool = True) -> None:
        """Deploy one API (and wait for its replicas unless ``wait`` is False)."""
        self.client.deploy(spec, wait=wait, timeout=120)
        deadline = time.monotonic() + 30  # the gateway learns of a new API within its catalog TTL
        while httpx.get(f"{self.gateway_url}/{spec['name']}").status_code == 404:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway does not route {spec['name']}")
            time.sleep(0.1)

    def delete(self, name: str) -> None:
        """Delete an API and wait until its replicas are gone."""
        self.client.delete(name)
        deadline = time.monotonic() + 60
        while self.dequeuer_pids(name) and time.monotonic() < deadline:
            time.sleep(0.1)

    def gateway_pids(self) -> list[int]:
        """The gateway process (the cluster supervises one)."""
        return pids_with("-m cortex gateway", f"--state-dir {self.state_dir} ")

    def dequeuer_pids(self, api: str) -> list[int]:
        """One dequeuer process per replica of ``api``."""
        return pids_with("-m cortex.dequeuer", f"--api {api} ", str(self.state_dir))

    def gateway_memory(self) -> dict[str, float]:
        """The gateway's VmRSS and VmHWM in MB."""
        return memory_mb(self.gateway_pids()[0])

    def finished_times(self, api: str) -> tuple[int, list[float], float]:
        """Completed count, sorted ``finished_at`` and the earliest ``started_at`` of ``api`` (embedded store)."""
        uri = f"file:{self.state_dir / 'cortex.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=30) as conn:
            done = [
                row[0]
                for row in conn.execute(
                    "SELECT finished_at FROM requests WHERE api = ? AND status = 'completed' ORDER BY finished_at",
                    (api,),
                )
            ]
            first = conn.execute("SELECT MIN(started_at) FROM requests WHERE api = ?", (api,)).fetchone()[0]
        return len(done), done, float(first or 0.0)

    def count(self, api: str, status: str | None = None) -> int:
        """How many requests of ``api`` are stored (with ``status``, if given) in the embedded store."""
        uri = f"file:{self.state_dir / 'cortex.db'}?mode=ro"
        query, args = "SELECT COUNT(*) FROM requests WHERE api = ?", [api]
        if status is not None:
            query, args = query + " AND status = ?", [api, status]
        with sqlite3.connect(uri, uri=True, timeout=30) as conn:
            return int(conn.execute(query, args).fetchone()[0])


def api_spec(
    name: str, *, replicas: int, max_concurrency: int = 8, gate: Path | None = None, server: Path = NOOP_SERVER
) -> dict[str, Any]:
    """An API whose replicas run the no-op user server, or ``server`` (readiness held back until ``gate`` exists)."""
    env = {} if gate is None else {"BENCH_GATE": str(gate)}
    return {
        "name": name,
        "kind": "AsyncAPI",
        "pod": {
            "port": 8080,
            "max_concurrency": max_concurrency,
            "containers": [
                {
                    "name": "api",
                    "command": ["python", str(server)],
                    "env": env,
                    "readiness_probe": {"http_get": {"path": "/healthz", "port": 8080}, "period_seconds": 1},
                }
            ],
        },
        "autoscaling": {"min_replicas": replicas, "max_replicas": max(replicas, 1)},
    }
