"""A local cluster under steady load whose processes the fault tests kill with SIGKILL.

The cluster is the one ``cortex cluster up`` starts (``tests/cluster/conftest.py``), on the
embedded SQLite backends or on the local Redis and PostgreSQL servers (each test in a namespace of
its own, ``tests/servers/databases.py``). Its processes are found through ``/proc`` by their
command lines; its user server (``user_server.py`` here) answers the request id it was given and the
payload it was sent, and traces each run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import yaml

from cortex.backends import BackendUrls
from tests.cluster.conftest import ClusterFactory, LocalCluster, make_cluster
from tests.conftest import BACKENDS
from tests.faults.figures import record
from tests.faults.ledger import Verdict
from tests.servers.databases import urls_for

__all__ = ["make_cluster"]  # the cluster tests' fixture, shared

API = "echo"
REPLICAS = 2
USER_SERVER = str(Path(__file__).with_name("user_server.py"))
#: short enough that a killed dequeuer's requests run again within the test, long enough for a loaded machine
LEASE_SECONDS = 3.0
GRACE_PERIOD = 3.0


def role(argv: list[str]) -> str | None:
    """What a process of the cluster is, from its command line: cluster, gateway, dequeuer or user."""
    if "-m" in argv and argv.index("-m") + 1 < len(argv):
        module, rest = argv[argv.index("-m") + 1], argv[argv.index("-m") + 2 :]
        if module == "cortex.dequeuer" or (module == "cortex" and rest[:1] == ["dequeuer"]):
            return "dequeuer"
        if module == "cortex.gateway" or (module == "cortex" and rest[:1] == ["gateway"]):
            return "gateway"
        if module == "cortex" and rest[:2] == ["cluster", "up"] and "--foreground" in rest:
            return "cluster"
        return None  # a CLI command (`cortex get`, `cortex cluster up` waiting for its cluster)
    return "user" if any(arg.endswith("user_server.py") for arg in argv) else None


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclasses.dataclass
class FaultCluster:
    """A running local cluster, the options it was started with, and its processes by role."""

    backend: str
    local: LocalCluster
    options: tuple[str, ...]

    @property
    def endpoint(self) -> str:
        return f"{self.local.gateway}/{API}"

    @property
    def trace(self) -> Path:
        """Where the user server leaves a file per run: ``<request id>.<pid>.<n>``."""
        return self.local.workdir / "trace"

    def runs(self) -> Counter[str]:
        """How many times the user server started each request."""
        return Counter(path.name.split(".", 1)[0] for path in self.trace.iterdir())

    def pids(self) -> dict[str, set[int]]:
        """The cluster's live processes by role (zombies not yet reaped left out)."""
        found: dict[str, set[int]] = {"cluster": set(), "gateway": set(), "dequeuer": set(), "user": set()}
        for pid in self.local.processes():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            kind = role(argv)
            if kind is not None and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found[kind].add(pid)
        return found

    def restart(self) -> None:
        """``cortex cluster up`` again on the same state directory and ports, as a user would after a crash."""
        ports = ("--gateway-port", str(self.local.gateway_port), "--operator-port", str(self.local.operator_port))
        self.local.cortex("cluster", "up", *ports, *self.options)

    def deploy(self) -> None:
        """The echo API: two replicas of the user server, four requests at a time each."""
        self.trace.mkdir()
        api = {
            "name": API,
            "kind": "AsyncAPI",
            "pod": {
                "port": 8080,
                "max_concurrency": 4,
                "containers": [
                    {
                        "name": "api",
                        "command": [sys.executable, USER_SERVER],
                        "env": {"TEST_TRACE_DIR": str(self.trace)},
                        "readiness_probe": {"http_get": {"path": "/healthz", "port": 8080}},
                    }
                ],
            },
            "autoscaling": {"min_replicas": REPLICAS, "max_replicas": REPLICAS},
        }
        config = self.local.workdir / "faults.yaml"
        config.write_text(yaml.safe_dump([api]))
        self.local.cortex("deploy", str(config))

    async def wait(self, what: str, check: Callable[[dict[str, set[int]]], bool], timeout: float = 30.0) -> None:
        """Poll the processes until ``check`` holds for them; fail naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not check(pids := await asyncio.to_thread(self.pids)):
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}: {pids}"
            await asyncio.sleep(0.1)

    async def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the gateway answers and every replica of the API is ready."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.local.gateway}/healthz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"the gateway did not answer within {timeout}s"
                await asyncio.sleep(0.1)
        await asyncio.to_thread(self.local.wait_live, API, REPLICAS, max(1.0, deadline - time.monotonic()))


def cluster_options(backend: str, urls: BackendUrls) -> tuple[str, ...]:
    """``cortex cluster up``'s options for the fault tests on ``backend`` at ``urls``."""
    options: tuple[str, ...] = ("--grace-period", str(GRACE_PERIOD), "--lease-seconds", str(LEASE_SECONDS))
    if backend != "sqlite":  # the embedded backends are the state directory's by default
        options += ("--queue", urls.queue, "--store", urls.store, "--blobs", urls.blobs)
    return options


@contextlib.asynccontextmanager
async def serving(make_cluster: ClusterFactory, backend: str, options: tuple[str, ...]) -> AsyncIterator[FaultCluster]:
    """A cluster started with ``options``, serving the echo API at two replicas; stopped afterwards."""
    local = await asyncio.to_thread(make_cluster, *options)
    cluster = FaultCluster(backend, local, options)
    try:
        await asyncio.to_thread(cluster.deploy)
        await cluster.wait_serving()
        yield cluster
    finally:
        await asyncio.to_thread(local.cortex, "cluster", "down", check=False)
        for pid in local.processes():
            kill9(pid)


@pytest.fixture(params=BACKENDS)
async def fault_cluster(
    request: pytest.FixtureRequest, make_cluster: ClusterFactory, tmp_path: Path
) -> AsyncIterator[FaultCluster]:
    """A cluster serving the echo API at two replicas, on each backend; stopped before its namespace is dropped."""
    async with (
        urls_for(request.param, tmp_path) as urls,
        serving(make_cluster, request.param, cluster_options(request.param, urls)) as cluster,
    ):
        yield cluster


def report(test: str, backend: str, verdict: Verdict) -> None:
    """Print the test's line of figures and write its row of ``docs/reliability-figures.md``."""
    figures = verdict.figures()
    print(f"\nfaults[{test}, {backend}]: {figures}; outcomes {dict(verdict.statuses)}")
    record(test, backend, figures)
