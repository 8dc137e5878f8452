"""``GET /readyz``: whether the gateway can reach its backend now, from a cheap ping cached briefly.

``/healthz`` says the process lives (a load balancer or kubelet restarts it when it does not);
``/readyz`` says whether to send it traffic. A burst of probes shares one ping: the answer is kept
:attr:`Readiness.interval` seconds, and concurrent probes wait for the same ping, which has a
deadline of its own, so a probe never hangs on a cut-off backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from cortex.errors import BackendError

log = logging.getLogger(__name__)

#: seconds a ping's answer is reused (a backend healed shows within this, plus one ping)
READY_INTERVAL = 1.0
#: seconds a ping may take before the backend counts as unreachable
PING_DEADLINE = 2.0


class Readiness:
    """Runs ``ping`` at most once per ``interval`` and remembers whether it passed."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[object]],
        *,
        interval: float = READY_INTERVAL,
        deadline: float = PING_DEADLINE,
    ) -> None:
        self._ping = ping
        self.interval = interval
        self.deadline = deadline
        self._checked_at = float("-inf")
        self._problem: str | None = "not checked yet"
        self._running: asyncio.Future[None] | None = None
        self._failing = False

    async def check(self) -> str | None:
        """None when the backend answered a ping lately, else what is wrong."""
        if time.monotonic() - self._checked_at < self.interval:
            return self._problem
        if self._running is None:
            self._running = asyncio.ensure_future(self._check())
        running = self._running
        try:
            await asyncio.shield(running)
        finally:
            if running.done() and self._running is running:
                self._running = None
        return self._problem

    async def _check(self) -> None:
        try:
            await asyncio.wait_for(self._ping(), self.deadline)
            problem = None
        except (BackendError, TimeoutError) as exc:
            problem = str(exc) or f"the backend did not answer within {self.deadline:g}s"
        if problem is not None and not self._failing:  # one line per outage, not one per probe
            log.error("not ready: %s", problem)
        elif problem is None and self._failing:
            log.warning("ready again: the backend answers")
        self._failing = problem is not None
        self._problem = problem
        self._checked_at = time.monotonic()
