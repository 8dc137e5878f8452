"""The webhook delivery loop: its own loop, never on a worker's path (DESIGN §1).

Deliveries wait in the ``_webhooks`` queue, so they are as durable as requests and survive a
restart. Each is POSTed with the request's record as its body (the JSON of ``GET /<api>/<id>``),
signed with the API's ``whsec_`` secret; a 2xx answer delivers it. Anything else is retried with
exponential backoff and jitter (about 5 s, then doubling, at most an hour apart) until the API's
``async.webhook.max_age`` (24 h) has passed since the event. A receiver that is down or slow only
delays its own deliveries: workers never wait on it.

Redirects are not followed (a 3xx is a failed attempt). With ``refuse_private``, a receiver that
is or resolves to a non-public address is not called, whatever the gateway checked when the
request was submitted (:mod:`cortex.webhooks.targets`).

A deleted API's deliveries go on, with the spec and the secret its catalog entry had when it was
deleted (:meth:`cortex.store.base.Catalog.get_retired_api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import aiohttp
import yarl

from cortex.backends import Backends
from cortex.errors import BackendError, SpecError
from cortex.metrics import OperatorMetrics
from cortex.queue.base import Lease
from cortex.recordanswer import render_record
from cortex.requests import Status, now
from cortex.spec import ApiSpec
from cortex.webhooks.events import PROGRESS_EVENT, WEBHOOK_QUEUE, parse_delivery_id, target
from cortex.webhooks.signing import headers
from cortex.webhooks.targets import HINT, PublicOnlyResolver, literal_problem

log = logging.getLogger(__name__)

#: how long a delivery is retried when its API no longer says (deleted since)
DEFAULT_MAX_AGE = 86400.0
#: the longest pause between two attempts
MAX_BACKOFF = 3600.0


def backoff(attempts: int, first: float) -> float:
    """Seconds before attempt ``attempts + 1``: ``first``, doubling, ±20 % jitter, at most an hour."""
    base = min(first * 2 ** max(0, attempts - 1), MAX_BACKOFF)
    return float(base * random.uniform(0.8, 1.2))


class WebhookDispatcher:
    """Delivers queued webhook events until stopped."""

    def __init__(
        self,
        backends: Backends,
        *,
        concurrency: int = 32,
        first_retry: float = 5.0,
        timeout: float = 10.0,
        visibility: float = 60.0,
        metrics: OperatorMetrics | None = None,
        refuse_private: bool = False,
    ) -> None:
        self.backends = backends
        self.refuse_private = refuse_private
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self.concurrency = concurrency
        self.first_retry = first_retry
        self.timeout = timeout
        self.visibility = visibility
        self._running: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; deliveries under way are finished (bounded by ``timeout``)."""
        connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver()) if self.refuse_private else None
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), connector=connector
        ) as session:
            try:
                await self._loop(session, stop)
                if self._running:  # let deliveries under way finish (each bounded by the timeout)
                    await asyncio.wait(self._running, timeout=self.timeout + 1)
            finally:  # cancelled, or past the wait: unfinished leases lapse and are retried
                for task in self._running:
                    task.cancel()
                if self._running:
                    await asyncio.wait(self._running)

    async def _loop(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._freed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._freed.wait()
                continue
            try:
                leases = await self.backends.queue.wait_lease(
                    WEBHOOK_QUEUE, visibility=self.visibility, limit=free, timeout=1.0
                )
            except BackendError as exc:
                log.error("could not read the webhook queue (retrying): %s", exc)
                await asyncio.sleep(1.0)
                continue
            for lease in leases:
                task = asyncio.create_task(self._deliver(session, lease))
                self._running.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery crashed", exc_info=task.exception())

    async def _deliver(self, session: aiohttp.ClientSession, lease: Lease) -> None:
        queue, records = self.backends.queue, self.backends.records
        try:
            api, request_id, event = parse_delivery_id(lease.id)
        except ValueError:
            log.error("dropping malformed webhook item %r", lease.id)
            await queue.ack(lease)
            return
        try:
            record = await records.get(api, request_id, now=now())
            catalog = self.backends.catalog
            # a deleted API's requests are still told (the cancelled its deletion sends, earlier events'
            # retries), with the spec and the secret it had
            entry = await catalog.get_api(api) or await catalog.get_retired_api(api)
            if record is None:  # expired or never stored: nothing to say
                await queue.ack(lease)
                return
            if event == PROGRESS_EVENT:
                if record.status != Status.IN_PROGRESS:  # it ended: its end has its own delivery
                    await queue.ack(lease)
                    return
            elif event != Status.IN_PROGRESS.value and record.status.value != event:
                if record.status.terminal:  # it ended another way; that event has its own delivery
                    await queue.ack(lease)
                else:  # queued just before the status was written: look again shortly, uncounted
                    await queue.release(lease, delay=1.0)
                return
            spec = _spec(entry.spec if entry is not None else None)
            url = target(spec, record.webhook_url, event)
            secret = entry.meta.get("webhook_secret") if entry is not None else None
            if url is None or secret is None:
                await queue.ack(lease)
                return
            message = lease.id
            if event == PROGRESS_EVENT:  # each progress delivery is its own message: a receiver dedupes on it
                message += f"/{round((record.progress_at or 0) * 1000)}"
            error = await self._post(session, url, secret, message, render_record(record))
            max_age = spec.async_.webhook.max_age if spec and spec.async_.webhook else DEFAULT_MAX_AGE
            await self._settle(
                lease, api, request_id, error, since=record.finished_at or record.created_at, max_age=max_age
            )
        except BackendError as exc:
            log.warning("webhook %s: store unavailable, the delivery will be retried: %s", lease.id, exc)

    async def _post(self, session: aiohttp.ClientSession, url: str, secret: str, item: str, body: bytes) -> str | None:
        """POST one delivery; None if it was accepted, else why not."""
        message_id = "msg_" + item.replace("/", "_")  # the same across retries, so receivers can dedupe
        if self.refuse_private:  # names are checked by the resolver; literal addresses never reach it
            refused = literal_problem(yarl.URL(url).raw_host or "")
            if refused is not None:
                return f"refused: {refused}"
        try:
            async with session.post(
                url, data=body, headers=headers(secret, message_id, int(time.time()), body), allow_redirects=False
            ) as answer:
                await answer.read()
                if 200 <= answer.status < 300:
                    return None
                return f"the receiver answered {answer.status}"
        except TimeoutError:
            return f"the receiver did not answer within {self.timeout:g}s"
        except aiohttp.ClientConnectorDNSError as exc:
            return (
                f"refused: {exc.os_error}"
                if self.refuse_private and _refusal(exc)
                else f"could not reach the receiver: {exc}"
            )
        except aiohttp.ClientError as exc:
            return f"could not reach the receiver: {exc}"

    async def _settle(
        self, lease: Lease, api: str, request_id: str, error: str | None, *, since: float, max_age: float
    ) -> None:
        queue, records = self.backends.queue, self.backends.records
        state: dict[str, Any] = {"status": "delivered", "attempts": lease.attempts, "last_error": None}
        if error is None:
            await queue.ack(lease)
            log.info("webhook %s delivered (attempt %d)", lease.id, lease.attempts)
        elif now() - since > max_age:
            state.update(status="failed", last_error=error)
            await queue.ack(lease)
            log.warning("webhook %s given up after %d attempts: %s", lease.id, lease.attempts, error)
        else:
            delay = backoff(lease.attempts, self.first_retry)
            state.update(status="retrying", last_error=error)
            await queue.release(lease, delay=delay, attempted=True)
            log.info("webhook %s attempt %d failed (%s); next in %.1fs", lease.id, lease.attempts, error, delay)
        self.metrics.delivery(api, state["status"])
        await records.set_webhook(api, request_id, state)


def _refusal(exc: aiohttp.ClientConnectorDNSError) -> bool:
    """Whether the lookup failed because :class:`PublicOnlyResolver` refused the addresses."""
    return HINT in str(exc.os_error)


def _spec(data: dict[str, Any] | None) -> ApiSpec | None:
    if data is None:
        return None
    try:
        return ApiSpec.from_dict(data)
    except SpecError:
        return None
