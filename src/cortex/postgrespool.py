"""asyncpg's pool, with a statement past its deadline answered at its deadline, not one later.

When a statement passes ``command_timeout``, asyncpg cancels it on the server over a new connection
(itself bounded by ``command_timeout``), and the pool waits for that cancel before it takes the
connection back. On a server cut off, the caller would learn of the failure only after the second
deadline: a gateway's ``503`` in an outage would take two deadlines instead of one. Here the
caller gets the timeout at once, and the connection goes back to the pool in the background,
once asyncpg is done cancelling (or has dropped the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg


class DeadlinePool:
    """The statements cortex runs on a pool (``execute``, ``fetch``, ``fetchrow``), and ``acquire`` for the rest."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.inner = pool
        #: releases left to finish in the background (kept referenced until they do)
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def releasing(self) -> int:
        """Connections on their way back to the pool in the background."""
        return len(self._releasing)

    async def execute(self, query: str, *args: Any) -> str:
        result: str = await self._run("execute", query, args)
        return result

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        result: list[asyncpg.Record] = await self._run("fetch", query, args)
        return result

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        result: asyncpg.Record | None = await self._run("fetchrow", query, args)
        return result

    def acquire(self) -> Any:
        """A connection of the pool for several statements (``async with``): the driver's own wait applies."""
        return self.inner.acquire()

    async def _run(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        connection = await self.inner.acquire()
        try:
            result = await getattr(connection, method)(query, *args)
        except TimeoutError:
            task = asyncio.create_task(self._release(connection))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
            raise
        except BaseException:
            await self.inner.release(connection)
            raise
        await self.inner.release(connection)
        return result

    async def _release(self, connection: Any) -> None:
        with contextlib.suppress(Exception):  # the driver dropped it: the pool has it back already
            await self.inner.release(connection)

    async def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the releases left in the background (before closing the pool)."""
        if self._releasing:
            await asyncio.wait(set(self._releasing), timeout=timeout)
