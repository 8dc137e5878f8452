"""Steps asked for during one turn of the event loop, run together: one round trip and one commit for all.

What SQLite's group commit does for the embedded backends (:mod:`cortex.sqlitedb`), for a server:
concurrent finishes of one dequeuer share one statement, so the server flushes its log once for
all of them. A caller that gives up (is cancelled) does not stop the batch: its step may still happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the item of one call
O = TypeVar("O")  # noqa: E741 - its result

#: most steps in one statement
MAX_BATCH = 256


class TurnBatcher(Generic[I, O]):
    """Collects the calls of one turn of the event loop and hands them to ``run`` as one list.

    ``run`` returns one result per item, in order; should it raise, every call of the batch raises it.
    """

    def __init__(self, run: Callable[[list[I]], Awaitable[list[O]]]) -> None:
        self._run = run
        self._pending: list[tuple[I, asyncio.Future[O]]] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, item: I) -> O:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[O] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.create_task(self._run_batch(pending[start : start + MAX_BATCH]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def aclose(self) -> None:
        """Wait for the batches under way."""
        if self._running:
            await asyncio.wait(self._running)
