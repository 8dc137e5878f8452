"""Which request events are pushed, and where (the one place that decides it)."""

from __future__ import annotations

from cortex.queue.base import Queue
from cortex.spec import ApiSpec

#: the queue that holds pending deliveries (one item per request event)
WEBHOOK_QUEUE = "_webhooks"
#: what a request's own ``X-Cortex-Webhook-URL`` gets when its API configures no events
DEFAULT_EVENTS = ("completed", "failed", "cancelled")
#: the request header that asks for a webhook
URL_HEADER = "x-cortex-webhook-url"
#: the event of a progress report (opt-in: only when the API's ``async.webhook.events`` lists it)
PROGRESS_EVENT = "progress"
#: seconds between two progress deliveries of one request, at least (and never two queued at once)
PROGRESS_EVERY = 5.0


def target(spec: ApiSpec | None, request_url: str | None, event: str) -> str | None:
    """Where ``event`` of a request goes: its own URL, else its API's; None if nowhere."""
    webhook = spec.async_.webhook if spec is not None else None
    events = tuple(webhook.events) if webhook is not None else DEFAULT_EVENTS
    if event not in events:
        return None
    if request_url:
        return request_url
    return webhook.url if webhook is not None else None


def delivery_id(api: str, request_id: str, event: str) -> str:
    """The queue item of one event: the same event of the same request is queued once.

    A progress event is queued again once its delivery is done: while one waits, later reports
    add nothing, and it carries the latest progress when it is sent.
    """
    return f"{api}/{request_id}/{event}"


def parse_delivery_id(item: str) -> tuple[str, str, str]:
    """``(api, request_id, event)`` of a queue item."""
    api, request_id, event = item.split("/")
    return api, request_id, event


async def schedule(queue: Queue, spec: ApiSpec | None, api: str, request_id: str, url: str | None, event: str) -> None:
    """Queue the delivery of ``event`` if anyone asked for it (durable once this returns)."""
    if target(spec, url, event) is not None:
        await queue.enqueue(WEBHOOK_QUEUE, delivery_id(api, request_id, event))
