"""Cancellation that a driver lost: re-raised where our code regains control.

On CPython before 3.12, ``asyncio.wait_for`` returns the inner result, and drops the cancel, when
the inner call finishes in the same turn of the loop as the cancel arrives (CPython gh-86296).
redis-py and asyncpg wait that way inside every command, so a task cancelled while it waits on
Redis or PostgreSQL can go on as if nothing happened: the dequeuer's cancel watcher did, looping
forever, and the request it watched never finished. The task still knows it was asked to stop
(``Task.cancelling()``), so the backends' error wrappers call :func:`raise_if_cancelling` after
each call and the cancel goes on where the driver dropped it.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Raise :class:`asyncio.CancelledError` if the current task was asked to stop and still runs.

    A task that handles its cancel on purpose calls ``Task.uncancel()`` (as ``asyncio.timeout`` and
    ``TaskGroup`` do), which brings ``cancelling()`` back to zero, so they are not affected.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
