"""RQ: the no-op job and the client side."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import redis
from rq import Queue
from rq.job import Job

from bench.diy import PAYLOAD, QUEUE, REDIS_URL


def noop(payload: dict[str, Any]) -> dict[str, Any]:
    """The no-op job."""
    return {}


class RqStack:
    """RQ with ``SimpleWorker`` (no fork per job)."""

    name = "rq"
    worker_argv: ClassVar[list[str]] = [
        sys.executable, "-m", "rq.cli", "worker", "-u", REDIS_URL, "-w", "rq.worker.SimpleWorker",
        "--logging_level", "WARNING", QUEUE,
    ]  # fmt: skip

    def __init__(self) -> None:
        self._redis = redis.Redis.from_url(REDIS_URL)
        self._queue = Queue(QUEUE, connection=self._redis)

    async def submit(self) -> object:
        return self._queue.enqueue(noop, PAYLOAD)

    async def visible(self, handle: object) -> bool:
        assert isinstance(handle, Job)
        return handle.latest_result() is not None

    async def submit_many(self, count: int) -> None:
        for _ in range(count):
            self._queue.enqueue(noop, PAYLOAD)

    async def flush(self) -> None:
        self._redis.flushdb()

    async def aclose(self) -> None:
        pass
