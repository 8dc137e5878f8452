"""A redis-server of one test's own, on a free loopback port: a server the test may freeze (SIGSTOP).

Never the shared server at 6379: other tests (and other people) use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.servers.databases import unreachable


@dataclasses.dataclass
class PrivateRedis:
    """The running server."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        """Stop the server process (it keeps its sockets; clients' commands wait in its buffers)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def private_redis(folder: Path) -> AsyncIterator[PrivateRedis]:
    """Start ``redis-server`` (no persistence) in ``folder``; stop it afterwards, thawed first."""
    binary = shutil.which("redis-server")
    if binary is None:
        unreachable("redis", "a private redis-server", FileNotFoundError("redis-server is not on PATH"))
    port = _free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = PrivateRedis(process, port)
    try:
        client = aioredis.Redis.from_url(server.url)
        try:
            for _ in range(100):  # up within 5 s
                try:
                    await client.ping()
                    break
                except (RedisError, OSError):
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the private redis-server on port {port} did not start")
        finally:
            await client.aclose()
        yield server
    finally:
        server.thaw()
        process.terminate()
        process.wait(timeout=10)
