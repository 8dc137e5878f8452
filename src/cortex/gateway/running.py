"""The gateway of one process, from its start to its stop: its backends opened, and its background tasks.

A gateway whose backend does not answer at start still starts (:mod:`cortex.reaching`): it answers
``/healthz``, fails ``/readyz``, and answers every API request 503 until its backends are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from cortex.backends import Backends
from cortex.errors import BackendError
from cortex.reaching import can_retry, open_when_reachable

if TYPE_CHECKING:
    from cortex.gateway.app import Gateway

log = logging.getLogger(__name__)

#: the names of the background tasks (a test tells the catalog's reads by the refresher from a request's)
CATALOG_TASK, SWEEP_TASK = "cortex-gateway-catalog", "cortex-gateway-sweep"


class BackendNotReached(BackendError):
    """The gateway has not opened its backends yet: they have not answered since it started."""


class Running:
    """The process's :class:`Gateway` once its backends are open, and the tasks that run beside it.

    :meth:`start` opens the backends (``open_backends``) or serves the ones given; a backend that
    does not answer is tried again in the background, a bad URL or a refused login fails at once.
    Beside the gateway run its retention sweep and the refresh of its catalog of APIs.
    """

    def __init__(
        self,
        make: Callable[[Backends], Gateway],
        *,
        backends: Backends | None = None,
        open_backends: Callable[[], Awaitable[Backends]] | None = None,
    ) -> None:
        self._make = make
        self._open_backends = open_backends
        self._gateway = make(backends) if backends is not None else None
        self._opened: Backends | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def gateway(self) -> Gateway:
        """The gateway.

        Raises:
            BackendNotReached: its backends are not open yet.
        """
        if self._gateway is None:
            raise BackendNotReached("the gateway has not reached its backend since it started")
        return self._gateway

    @property
    def started(self) -> bool:
        """Whether the gateway's backends are open."""
        return self._gateway is not None

    async def start(self) -> None:
        """Open the backends, or start trying again in the background when they do not answer yet.

        Raises:
            BackendError: a URL a retry cannot fix (unknown scheme, refused login, missing driver).
        """
        if self._open_backends is None:
            self._serve(self.gateway)
            return
        try:
            self._opened = await self._open_backends()
        except BackendError as exc:
            if not can_retry(exc):
                raise
            log.error("the gateway starts without its backend, answering 503 until it can reach it: %s", exc)
            self._spawn(self._open_later(self._open_backends), "cortex-gateway-open")
            return
        self._serve(self._make(self._opened))

    async def _open_later(self, open_backends: Callable[[], Awaitable[Backends]]) -> None:
        try:
            self._opened = await open_when_reachable(open_backends, role="gateway", failing=True)
        except BackendError as exc:  # reached, and refused (a login, a schema): a restart would not help either
            log.critical("the gateway reached its backend but cannot use it; answering 503: %s", exc)
            return
        self._serve(self._make(self._opened))

    def _serve(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._spawn(gateway.sweep_forever(), SWEEP_TASK)
        self._spawn(gateway.directory.refresh_forever(), CATALOG_TASK)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def stop(self) -> None:
        """Cancel the background tasks and close the backends this opened."""
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._opened is not None:
            await self._opened.aclose()
            self._opened = None
