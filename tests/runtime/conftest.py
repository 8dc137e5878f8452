"""A local runtime against real backends, with helpers to deploy, submit and wait (each wait bounded)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.ids import new_id
from cortex.requests import NewRequest, RequestRecord, Status
from cortex.runtime import ReplicaState, ReplicaStatus
from cortex.runtime.local import ClusterEnv, LocalRuntime, LocalSettings
from cortex.spec import ApiSpec
from tests.helpers import deploy

USER_SERVER = str(Path(__file__).with_name("user_server.py").resolve())
FAST = LocalSettings(lease_seconds=2, grace_period=2, health_interval=0.1)
TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


def server(name: str = "api", *args: str, **keys: Any) -> dict[str, Any]:
    """A container running the test user server (``keys`` adds container fields such as ``env``)."""
    return {"name": name, "command": [sys.executable, USER_SERVER], "args": [name, *args], **keys}


def api_yaml(name: str = "echo", *containers: dict[str, Any], concurrency: int = 1) -> str:
    """One API's YAML, its containers given as mappings (default: one test user server)."""
    api = {
        "name": name,
        "kind": "AsyncAPI",
        "pod": {"max_concurrency": concurrency, "containers": list(containers) or [server()]},
    }
    return yaml.safe_dump([api])


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_with(marker: str) -> set[int]:
    """Live processes whose environment holds ``marker``: every process a runtime started, and their children."""
    needle = marker.encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes() and alive(int(entry.name)):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


async def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclasses.dataclass
class Harness:
    """One test's cluster: backends, a local runtime, and a marker identifying its processes."""

    tmp: Path
    urls: BackendUrls
    backends: Backends
    runtime: LocalRuntime
    marker: str

    async def apply(self, text: str, *, deployment_id: str = "d1aaaaaa", replicas: int = 1) -> ApiSpec:
        """Deploy ``text`` into the catalog (where dequeuers read it), then run it."""
        spec = await deploy(self.backends.catalog, text)
        await self.runtime.apply(spec, deployment_id=deployment_id, config_dir=self.tmp, replicas=replicas)
        return spec

    def states(self, api: str = "echo") -> list[ReplicaState]:
        return [r.state for r in self.runtime.replicas(api)]

    async def wait_ready(self, count: int, api: str = "echo", timeout: float = 15.0) -> list[ReplicaStatus]:
        """Wait until ``api`` has exactly ``count`` replicas, all ready; return them."""

        def check() -> bool:
            states = self.states(api)
            return len(states) == count and all(s == ReplicaState.READY for s in states)

        try:
            await wait_for(f"{count} ready replica(s)", check, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; replicas: {self.runtime.replicas(api)}") from None
        return self.runtime.replicas(api)

    async def submit(self, body: str, api: str = "echo") -> str:
        """Store and queue a request as the gateway does."""
        request_id = new_id()
        created = time.time()
        headers = (("Content-Type", "text/plain"),)
        request = NewRequest(request_id, api, created, created + 3600, headers, payload=body.encode())
        await self.backends.records.create(request)
        await self.backends.queue.enqueue(api, request_id)
        return request_id

    async def record(self, request_id: str, api: str = "echo") -> RequestRecord:
        record = await self.backends.records.get(api, request_id, now=time.time())
        assert record is not None, f"request {request_id} not found"
        return record

    async def finished(self, request_id: str, api: str = "echo", timeout: float = 20.0) -> RequestRecord:
        """Wait until the request is terminal; return its record."""
        deadline = time.monotonic() + timeout
        while (record := await self.record(request_id, api)).status not in TERMINAL:
            assert time.monotonic() < deadline, f"request {request_id} still {record.status} after {timeout}s"
            await asyncio.sleep(0.05)
        return record

    async def result(self, request_id: str, api: str = "echo", timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the request completes; return the user server's answer."""
        record = await self.finished(request_id, api, timeout)
        assert record.status == Status.COMPLETED and record.result is not None, record
        answer: dict[str, Any] = json.loads(record.result)
        return answer


#: makes the runtime under test from its state folder, backends and cluster environment
RuntimeFactory = Callable[[Path, BackendUrls, ClusterEnv], LocalRuntime]


def _processes(state: Path, urls: BackendUrls, env: ClusterEnv) -> LocalRuntime:
    return LocalRuntime(state, urls, env, FAST)


@contextlib.asynccontextmanager
async def local_harness(tmp_path: Path, make: RuntimeFactory = _processes) -> AsyncIterator[Harness]:
    """A local runtime on embedded backends in ``tmp_path``; on exit, checks that no process is left."""
    state = tmp_path / "state"
    state.mkdir()
    urls = BackendUrls.for_state_dir(state)
    marker = f"http://gateway.test/{uuid.uuid4().hex}"
    env = ClusterEnv(gateway_url=marker, cli_config_dir=tmp_path / "cli", version="9.9.9")
    backends = await open_backends(urls)
    runtime = make(state, urls, env)
    try:
        yield Harness(tmp_path, urls, backends, runtime, marker)
    finally:
        try:
            await asyncio.wait_for(runtime.aclose(), timeout=30)
        finally:
            await backends.aclose()
        left = processes_with(marker)
        assert not left, f"processes left behind: {left}"


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with local_harness(tmp_path) as harness:
        yield harness
