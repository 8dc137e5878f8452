"""A redis-server of one test's own, on a free loopback port: a server the test may freeze or kill.

With ``durable=True`` it keeps an append-only file fsynced on every write (``appendfsync always``:
an acknowledged write is on disk), so it can be killed with SIGKILL and restarted on the same port
and folder without losing what it answered.

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
from tests.servers.netns import Host


@dataclasses.dataclass
class PrivateRedis:
    """The running server."""

    process: subprocess.Popen[bytes]
    port: int
    argv: list[str]
    address: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def freeze(self) -> None:
        """Stop the server process (it keeps its sockets; clients' commands wait in its buffers)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server and reap it: its port is free, its append-only file as it was."""
        self.process.kill()
        self.process.wait(timeout=10)

    async def restart(self) -> None:
        """Start the server again on the same port and folder (it replays its append-only file)."""
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await _wait_up(self)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_up(server: PrivateRedis) -> None:
    client = aioredis.Redis.from_url(server.url)
    try:
        for _ in range(200):  # up within 10 s (a durable one replays its file first)
            try:
                await client.ping()
                return
            except (RedisError, OSError):
                await asyncio.sleep(0.05)
        raise AssertionError(f"the private redis-server on port {server.port} did not start")
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def private_redis(
    folder: Path, *, durable: bool = False, netns: Host | None = None, port: int | None = None
) -> AsyncIterator[PrivateRedis]:
    """Start ``redis-server`` in ``folder`` (AOF fsynced always if ``durable``); stop it afterwards, thawed first.

    With ``netns`` it runs inside that namespace, listening on its addresses only. ``port`` (a free
    one by default) lets a test start a process on a server's address before the server itself.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        unreachable("redis", "a private redis-server", FileNotFoundError("redis-server is not on PATH"))
    port = port or _free_port()
    address = "127.0.0.1" if netns is None else netns.address
    argv = [
        *(netns.argv() if netns else ()),
        binary,
        "--port",
        str(port),
        "--bind",
        *(netns.addresses if netns else [address]),
        # reached from this namespace, not its own loopback: only the test's namespaces can reach it
        *(("--protected-mode", "no") if netns else ()),
        "--save",
        "",
        *(("--appendonly", "yes", "--appendfsync", "always") if durable else ("--appendonly", "no")),
        "--dir",
        str(folder),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = PrivateRedis(process, port, argv, address)
    try:
        await _wait_up(server)
        yield server
    finally:
        if server.process.poll() is None:
            server.thaw()
            server.process.terminate()
            server.process.wait(timeout=10)
