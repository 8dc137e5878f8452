"""Processes for end-to-end tests: gateways, dequeuers and a stdlib user server, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cortex.backends import BackendUrls, open_backends
from tests.helpers import api_yaml, deploy

USER_SERVER = Path(__file__).with_name("user_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


@dataclasses.dataclass
class Processes:
    """Starts the project's processes on one state directory and kills whatever is left at the end."""

    state_dir: Path
    logs: Path
    started: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    #: added to every gateway and dequeuer command line (e.g. --queue/--store/--blobs URLs)
    backend_args: list[str] = dataclasses.field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}-{len(self.started)}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "CORTEX_LOG_LEVEL": "INFO", **(env or {})}
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.started.append(proc)
        return proc

    def gateway(self, port: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "cortex", "gateway", "--state-dir", str(self.state_dir), "--port", str(port)]
        proc = self._spawn("gateway", argv + self.backend_args)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return proc

    def dequeuer(
        self, api: str, user_port: int, *, lease_seconds: float = 2.0, admin_port: int | None = None
    ) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "cortex", "dequeuer", "--state-dir", str(self.state_dir), "--api", api]
        argv += ["--user-port", str(user_port), "--lease-seconds", str(lease_seconds), "--grace-period", "5"]
        if admin_port is not None:
            argv += ["--admin-port", str(admin_port)]
        return self._spawn("dequeuer", argv + self.backend_args)

    def user_server(
        self, port: int, script: Path = USER_SERVER, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = self._spawn("user", [sys.executable, str(script), str(port)], env)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(tmp_path / "state", logs)
    try:
        yield procs
    finally:
        procs.kill_all()


async def deploy_to(state_dir: Path, yaml_text: str) -> None:
    backends = await open_backends(BackendUrls.for_state_dir(state_dir))
    try:
        await deploy(backends.catalog, yaml_text)
    finally:
        await backends.aclose()


async def wait_status(
    client: httpx.AsyncClient, url: str, statuses: tuple[str, ...], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = (await client.get(url)).json()
        if data.get("status") in statuses:
            return data
        assert time.monotonic() < deadline, f"{url} still {data.get('status')} after {timeout}s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


__all__ = ["Processes", "api_yaml", "deploy_to", "free_port", "wait_status"]
