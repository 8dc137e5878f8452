"""Where a drain's time goes (scenario f): CPU per process, the database server's work, samples of a dequeuer.

:class:`Accounting` is free to take, so it covers every measured drain: the CPU time (user + system, from
``/proc/<pid>/stat``) each kind of process spent, and the machine's busy cores (``/proc/stat``), over the
drain; and the database server's counters (PostgreSQL: commits in the database and log flushes, of every
session: the server is shared; Redis: commands processed). :func:`sampled` attaches py-spy to one
dequeuer, which costs CPU on a shared machine: the harness runs it over an extra drain, not measured.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

_TICK = os.sysconf("SC_CLK_TCK")
#: py-spy samples per second
RATE = 200
#: a sample whose only Python frame running is the loop's: uvloop's own C code (I/O, callbacks, syscalls)
LOOP = "event loop (uvloop's C code: sockets, syscalls)"
#: where a sample's time goes: the first of these found walking its stack from the leaf (the code running)
CATEGORIES = (
    ("asyncpg (PostgreSQL driver)", "asyncpg/"),
    ("redis-py (Redis driver)", "redis/"),
    ("aiohttp (calls to the user server)", "aiohttp/"),
    ("logging", "logging/"),
    ("json", "json/"),
    ("cortex", "cortex/"),
    ("asyncio (Python side)", "asyncio/"),
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def busy_seconds() -> tuple[float, float]:
    """The machine's busy and total CPU seconds since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def by_name(comm: str) -> list[int]:
    """Pids whose command name is ``comm`` (``postgres``, ``redis-server``)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(entry.path, "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
    return found


def with_env(needle: str) -> list[int]:
    """Pids whose environment holds ``needle`` (``NAME=value``)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle.encode() in Path(entry.path, "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


class Accounting:
    """CPU seconds per kind of process and the server's counters, between :meth:`start` and :meth:`stop`."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], counters: Callable[[], dict[str, float]]) -> None:
        self._groups = groups
        self._counters = counters
        self._before: dict[str, dict[int, float]] = {}
        self._busy = (0.0, 0.0)
        self._server: dict[str, float] = {}
        self._started = 0.0

    def start(self) -> None:
        self._before = {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self._groups.items()}
        self._server = self._counters()
        self._busy = busy_seconds()
        self._started = time.monotonic()

    def stop(self, completions: int) -> dict[str, Any]:
        """Per completion: CPU milliseconds of each kind of process, and the server's counters."""
        elapsed = time.monotonic() - self._started
        busy, total = busy_seconds()
        server = self._counters()
        cpu = {}
        for name, before in self._before.items():
            # a process started during the drain counts from 0; one that ended is lost (none should)
            spent = sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in set(before) | set(self._groups[name]()))
            cpu[name] = 1000 * spent / completions
        return {
            "cpu_ms_per_completion": cpu,
            "machine_busy_cores": (busy - self._busy[0]) / elapsed,
            "machine_cores": (total - self._busy[1]) / elapsed,
            "server_per_completion": {key: (server[key] - self._server.get(key, 0.0)) / completions for key in server},
        }


def postgres_counters(base: str) -> Callable[[], dict[str, float]]:
    """Commits in the database of ``base`` and the server's log flushes so far (every session's)."""

    async def read() -> dict[str, float]:
        import asyncpg

        conn = await asyncpg.connect(base)
        try:
            commits = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            row = await conn.fetchrow("SELECT wal_write, wal_sync FROM pg_stat_wal")
        finally:
            await conn.close()
        assert row is not None, "pg_stat_wal has one row"
        return {"commits": float(commits), "log writes": float(row[0]), "log flushes (fsync)": float(row[1])}

    return lambda: uvloop.run(read())


def redis_counters(base: str) -> Callable[[], dict[str, float]]:
    """Commands the Redis server of ``base`` processed so far (every client's)."""

    async def read() -> dict[str, float]:
        import redis.asyncio as redis

        client = redis.Redis.from_url(base)
        try:
            stats = await client.info("stats")
        finally:
            await client.aclose()
        return {"commands": float(stats["total_commands_processed"])}

    return lambda: uvloop.run(read())


def no_counters() -> dict[str, float]:
    return {}


@contextlib.contextmanager
def sampled(pid: int, out: Path) -> Iterator[dict[str, Any]]:
    """py-spy attached to ``pid`` for the block; the summary of its samples fills the yielded dict."""
    summary: dict[str, Any] = {}
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        summary["error"] = "py-spy is not installed"
        yield summary
        return
    argv = [spy, "record", "--nonblocking", "-r", str(RATE), "--format", "raw", "-o", str(out), "-p", str(pid)]
    log = out.with_suffix(".log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        yield summary
    finally:
        elapsed = time.monotonic() - started
        proc.send_signal(2)  # py-spy writes what it sampled on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        summary.update(summarize(out, elapsed) if out.exists() else {"error": f"py-spy wrote nothing ({argv})"})


def summarize(raw: Path, seconds: float) -> dict[str, Any]:
    """Shares of the samples of a raw (collapsed) py-spy profile: by category, and the top functions by own time."""
    categories: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaves[_short(frames[-1])] += count
        categories[_category(frames)] += count
    share = {name: count / total for name, count in categories.most_common()} if total else {}
    return {
        "samples": total,
        "busy_fraction": total / (RATE * seconds) if seconds else 0.0,
        "categories": share,
        "top_functions": [(name, count / total) for name, count in leaves.most_common(10)] if total else [],
    }


def _category(frames: list[str]) -> str:
    if "asyncio/runners.py" in frames[-1]:
        return LOOP
    for frame in reversed(frames):
        where = frame.partition(" (")[2]
        for name, part in CATEGORIES:
            if where.startswith(part) or f"/{part}" in where:
                return name
    return "other"


def _short(frame: str) -> str:
    """``func (.../site-packages/pkg/mod.py:12)`` as ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})"


def postgres_round_trips(url: str, count: int = 200) -> dict[str, float]:
    """Median milliseconds, on one connection to the server of ``url``: a round trip that writes nothing
    (``SELECT 1``), and a one-row insert in its own transaction (its commit waits for the log's flush).

    The table goes in the schema ``url`` names, which the harness drops afterwards.
    """

    async def run() -> dict[str, float]:
        import asyncpg

        base, _, query = url.partition("?")
        schema = dict(part.split("=", 1) for part in query.split("&") if "=" in part).get("schema", "cortex")
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".bench_commit_probe (n INTEGER)')
            insert = f'INSERT INTO "{schema}".bench_commit_probe (n) VALUES ($1)'
            reads, commits = [], []
            for n in range(count):
                began = time.perf_counter()
                await conn.fetchval("SELECT 1")
                reads.append(time.perf_counter() - began)
                began = time.perf_counter()
                await conn.execute(insert, n)
                commits.append(time.perf_counter() - began)
        finally:
            await conn.close()
        reads.sort()
        commits.sort()
        return {"read_ms": 1000 * reads[len(reads) // 2], "commit_ms": 1000 * commits[len(commits) // 2]}

    return uvloop.run(run())
