"""A PostgreSQL cluster of one test's own, on a free loopback port: a server the test may crash.

Never the shared server at 5432: other tests (and other people) use it. ``initdb`` refuses to run
as root, so as root the cluster belongs to the ``postgres`` user (``runuser -u postgres --``), in a
folder of its own under ``/tmp`` (a test's ``tmp_path`` is not reachable by that user). The server
keeps PostgreSQL's durable defaults (``fsync``, ``synchronous_commit``); trust authentication on
loopback only. A missing ``initdb`` skips the test, or fails it under ``CI``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from tests.servers.databases import unreachable
from tests.servers.private_redis import _free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:
        unreachable("postgres", "a private cluster", FileNotFoundError(f"{name} is not on PATH"))
    return str(found)


@dataclasses.dataclass
class PrivatePostgres:
    """The running cluster: its data folder and port."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        _run(_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.data.parent / "log"), "-w", *args, timeout=timeout)

    def restart_immediate(self) -> None:
        """``pg_ctl restart -m immediate``: the server quits without a checkpoint and recovers from its WAL."""
        self.pg_ctl("-m", "immediate", "restart")


def _run(*argv: str, timeout: float = 60) -> None:
    command = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"


async def _wait_up(server: PrivatePostgres) -> None:
    for _ in range(200):  # up within 10 s
        try:
            conn = await asyncpg.connect(server.url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        await conn.close()
        return
    raise AssertionError(f"the private PostgreSQL on port {server.port} did not start")


@contextlib.asynccontextmanager
async def private_postgres(port: int | None = None) -> AsyncIterator[PrivatePostgres]:
    """``initdb`` and start a cluster; stop it (immediately) and remove its folder afterwards.

    ``port`` (a free one by default) lets a test start a process on the server's address before the server.
    """
    initdb = _binary("initdb")
    folder = Path(tempfile.mkdtemp(prefix="cortex-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        server = PrivatePostgres(folder / "data", port or _free_port())
        await asyncio.to_thread(_run, initdb, "-D", str(server.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={folder}"
        await asyncio.to_thread(server.pg_ctl, "-o", options, "start")
        try:
            await _wait_up(server)
            yield server
        finally:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                await asyncio.to_thread(server.pg_ctl, "-m", "immediate", "stop", timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
