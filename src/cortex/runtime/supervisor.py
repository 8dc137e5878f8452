"""Keeping one process running: restart after any exit, with the kubelet's crash-loop backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from cortex.runtime import orphans
from cortex.runtime.process import ProcessPlan, describe_exit, last_lines, spawn, terminate, written

log = logging.getLogger(__name__)

#: a process that ran this long before exiting starts its backoff over, as the kubelet's does
BACKOFF_RESET_AFTER = 60.0
#: how long a process failing its liveness probe gets between SIGTERM and SIGKILL
LIVENESS_KILL_GRACE = 2.0

#: watches a running process; returns why it must be restarted (a failed liveness probe)
Watch = Callable[[], Coroutine[Any, Any, str]]


def backoff_delay(crashes: int, cap: float) -> float:
    """Seconds to wait before restarting after the ``crashes``-th crash in a row: 1, 2, 4, ... at most ``cap``."""
    return float(min(cap, 2.0 ** max(0, crashes - 1)))


class Supervised:
    """One process, restarted after any exit (or failed liveness check) until :meth:`stop`.

    Args:
        plan: What to run.
        label: Names the process in :attr:`failure` and logs, e.g. ``"container api"``.
        where: Where it runs, for logs, e.g. the replica id.
        backoff_max: The longest wait before a restart.
        watch: Optional liveness check, started with each process; when it returns, the process is
            killed and restarted like a crash.
    """

    def __init__(
        self, plan: ProcessPlan, *, label: str, where: str, backoff_max: float, watch: Watch | None = None
    ) -> None:
        self.plan = plan
        self.label = label
        self._where = where
        self.restarts = 0
        #: why the process is down while it waits to be restarted; None while it runs
        self.failure: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._backoff_max = backoff_max
        self._watch = watch
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._group_gone = False  # whether the current process's group has been killed after it ended

    def start(self) -> None:
        """Start the process and its supervision in the background."""
        self._task = asyncio.create_task(self._run(), name=f"supervise {self.plan.name}")

    @property
    def pid(self) -> int | None:
        """The running process's id, None while it is down."""
        process = self.process
        return process.pid if process is not None and process.returncode is None else None

    async def stop(self, grace: float, *, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop supervising, run ``before`` (a pre-stop hook) if the process is running, then terminate it.

        Args:
            grace: Seconds between SIGTERM and SIGKILL.
            before: Awaited while the process still runs, before it is signalled.
        """
        self._stopping.set()
        if self._task is not None:
            # The loop exits at its next step; it never kills a process on stop, that is left to here.
            try:
                await self._task
            except Exception:  # a bug in supervision must not leave the process running
                log.exception("%s: supervision of %s failed", self._where, self.label)
        process = self.process
        if process is None or self._group_gone:
            return  # down, and its group was cleaned up when it exited (its pid may be reused by now)
        if before is not None and process.returncode is None:
            await before()
        code = await terminate(process, grace, name=f"{self._where}: {self.label}")
        self._gone(process)
        await written(self.plan.log_path)  # its last lines in the log, and no stamper left when stop returns
        log.debug("%s: %s (pid %d) stopped: %s", self._where, self.label, process.pid, describe_exit(code))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        crashes = 0
        while not self._stopping.is_set():
            started = loop.time()
            try:
                process = await spawn(self.plan)
            except OSError as exc:
                reason = f"could not start {self.plan.argv[0]}: {exc.strerror or exc}"
            else:
                self.process, self.failure, self._group_gone = process, None, False
                if self.plan.pid_dir is not None:
                    orphans.record(self.plan.pid_dir, self.plan.name, process.pid)
                if self._stopping.is_set():
                    return
                reason = await self._wait(process)
                if self._stopping.is_set():
                    return
            crashes = 1 if loop.time() - started >= BACKOFF_RESET_AFTER else crashes + 1
            delay = backoff_delay(crashes, self._backoff_max)
            await written(self.plan.log_path)
            said = await asyncio.to_thread(last_lines, self.plan.log_path)
            self.failure = f"{self.label} {reason}; restarting in {delay:g}s"
            if said:
                self.failure += f"; its last lines: {said}"
            log.warning("%s: %s %s; restarting in %gs", self._where, self.label, reason, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if not self._stopping.is_set():
                self.restarts += 1

    async def _wait(self, process: asyncio.subprocess.Process) -> str:
        """Wait for ``process`` to exit, fail its liveness check, or be asked to stop; say why it ended."""
        waits: dict[asyncio.Task[Any], str] = {
            asyncio.create_task(process.wait()): "exit",
            asyncio.create_task(self._stopping.wait()): "stop",
        }
        if self._watch is not None:
            waits[asyncio.create_task(self._watch())] = "liveness"
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.wait(waits)
        first = next(task for task in waits if task in done)
        if waits[first] == "stop":
            return "stopped"
        if waits[first] == "liveness" and process.returncode is None:
            reason = f"failed its liveness probe ({first.result()})"
            log.warning("%s: %s (pid %d) %s; killing it", self._where, self.label, process.pid, reason)
            await terminate(process, LIVENESS_KILL_GRACE, name=f"{self._where}: {self.label}")
            self._gone(process)
            return reason
        # It exited: what is left of its group goes too, before a new one starts.
        code = await terminate(process, 0, name=f"{self._where}: {self.label}")
        self._gone(process)
        return describe_exit(code)

    def _gone(self, process: asyncio.subprocess.Process) -> None:
        """``process`` and its group are gone: its pid may be reused from now on."""
        self._group_gone = True
        if self.plan.pid_dir is not None:
            orphans.forget(self.plan.pid_dir, process.pid)
