"""A real local cluster, driven through the `cortex` command in subprocesses, as a user would."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclasses.dataclass
class LocalCluster:
    state_dir: Path
    config_dir: Path
    gateway_port: int
    operator_port: int
    workdir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CORTEX_CLI_CONFIG_DIR": str(self.config_dir),
            "CORTEX_STATE_DIR": str(self.state_dir),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def cortex(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "cortex", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert result.returncode == 0, f"cortex {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cortex(*args, "-o", "json").stdout)

    def example(self, name: str) -> Path:
        target = self.workdir / name
        if not target.exists():
            shutil.copytree(EXAMPLES / name, target)
        return target / "cortex.yaml"

    def wait_live(self, api: str, replicas: int = 1, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            (data,) = self.json("get", api)
            status = data["status"]
            if status["ready"] == status["requested"] == status["up_to_date"] == replicas:
                return dict(data)
            assert time.monotonic() < deadline, f"{api} not live after {timeout}s: {status}"
            time.sleep(0.2)

    def wait_result(self, api: str, rid: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data: dict[str, Any] = httpx.get(f"{self.gateway}/{api}/{rid}", timeout=10).json()
            if data["status"] in ("completed", "failed", "cancelled"):
                return data
            assert time.monotonic() < deadline, f"{rid} still {data['status']} after {timeout}s"
            time.sleep(0.05)

    def processes(self) -> list[int]:
        """Pids of every process whose command line or environment names this cluster's state dir."""
        found = []
        marker = str(self.state_dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes() or marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found


#: starts a cluster with ``cortex cluster up`` plus the given options (e.g. ``--autoscaler-tick 0.2``)
ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []

    def make(*options: str) -> LocalCluster:
        cluster = LocalCluster(
            state_dir=tmp_path / "state",
            config_dir=tmp_path / "cli",
            gateway_port=free_port(),
            operator_port=free_port(),
            workdir=tmp_path / "work",
        )
        cluster.workdir.mkdir()
        started.append(cluster)
        ports = ("--gateway-port", str(cluster.gateway_port), "--operator-port", str(cluster.operator_port))
        cluster.cortex("cluster", "up", *ports, *options)
        return cluster

    try:
        yield make
    finally:
        for cluster in started:
            cluster.cortex("cluster", "down", check=False)
            for pid in cluster.processes():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def local_cluster(make_cluster: ClusterFactory) -> LocalCluster:
    return make_cluster("--grace-period", "5")
