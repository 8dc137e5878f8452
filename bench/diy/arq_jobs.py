"""arq: the no-op job, its worker settings and the client side."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job

from bench.diy import PAYLOAD, QUEUE, REDIS_DB
from bench.roundtrip import POLL

SETTINGS = RedisSettings(host="127.0.0.1", port=6379, database=REDIS_DB)


async def noop(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The no-op job."""
    return {}


class WorkerSettings:
    """``arq bench.diy.arq_jobs.WorkerSettings``."""

    functions: ClassVar[list[Any]] = [noop]
    redis_settings = SETTINGS
    queue_name = QUEUE
    poll_delay = 0.001
    log_results = False


class ArqStack:
    """arq with ``poll_delay`` 1 ms."""

    name = "arq"
    #: an asyncio client: many submissions at once
    concurrent_submits = True
    worker_argv: ClassVar[list[str]] = [sys.executable, "-m", "arq", "bench.diy.arq_jobs.WorkerSettings"]

    def __init__(self) -> None:
        self._pool: ArqRedis | None = None

    async def _redis(self) -> ArqRedis:
        if self._pool is None:
            self._pool = await create_pool(SETTINGS, default_queue_name=QUEUE)
        return self._pool

    async def submit(self) -> object:
        return await (await self._redis()).enqueue_job("noop", PAYLOAD)

    async def visible(self, handle: object) -> bool:
        assert isinstance(handle, Job)
        return await handle.result_info() is not None

    async def wait(self, handle: object, timeout: float) -> None:
        assert isinstance(handle, Job)
        # arq's blocking wait polls the result key; at the worker's 1 ms rather than its 0.5 s default
        await handle.result(timeout=timeout, poll_delay=POLL)

    async def submit_many(self, count: int, clients: int) -> None:
        pool = await self._redis()
        left = count

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await pool.enqueue_job("noop", PAYLOAD)

        await asyncio.gather(*(client() for _ in range(clients)))

    async def flush(self) -> None:
        await (await self._redis()).flushdb()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
