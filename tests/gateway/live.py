"""A real gateway process (``cortex gateway``) on loopback, over a state directory with deployed APIs.

In-process tests (``httpx.ASGITransport``) skip the HTTP parser; what only the server sees (header
limits, malformed requests, connections cut or stalled mid-request) is tested against this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.conftest import deploy_to, free_port


@contextlib.contextmanager
def live_gateway(state_dir: Path, apis: list[str], *options: str) -> Iterator[str]:
    """Deploy ``apis`` (YAML texts) under ``state_dir``, serve the gateway there, yield its base URL."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for text in apis:
        asyncio.run(deploy_to(state_dir, text))
    port = free_port()
    argv = [sys.executable, "-m", "cortex", "gateway", "--state-dir", str(state_dir), "--port", str(port), *options]
    with open(state_dir / "gateway.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the gateway exited with {proc.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, f"the gateway at {url} did not answer within {timeout}s"
        time.sleep(0.05)


def exchange(url: str, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes on a new connection; everything the gateway answers until it closes (or ``wait`` passes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
        return read_until_closed(sock, wait)


def read_until_closed(sock: socket.socket, wait: float) -> bytes:
    """What arrives on ``sock`` until the peer closes it; raises TimeoutError if it is still open after ``wait``."""
    sock.settimeout(wait)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
