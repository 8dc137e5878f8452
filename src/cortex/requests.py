"""The request record, its statuses and their legal transitions (the one place they are defined).

A request moves ``in_queue -> in_progress -> completed | failed | cancelled``; ``in_progress``
may be entered again (a worker died and the request was leased once more), and a request can
fail or be cancelled straight from the queue. A terminal status never changes.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any


class Status(enum.StrEnum):
    """Status of a request, as served by ``GET /<api>/<id>``."""

    IN_QUEUE = "in_queue"  #: accepted and waiting for a replica
    IN_PROGRESS = "in_progress"  #: a replica is running it
    COMPLETED = "completed"  #: the user server answered with JSON; ``result`` is set
    FAILED = "failed"  #: it ended without a result; ``error`` says why
    CANCELLED = "cancelled"  #: cancelled by a client (extension)

    @property
    def terminal(self) -> bool:
        """Whether the status is final."""
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.IN_QUEUE: frozenset({Status.IN_PROGRESS, Status.FAILED, Status.CANCELLED}),
    Status.IN_PROGRESS: frozenset({Status.IN_PROGRESS, *TERMINAL}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def can_transition(old: Status, new: Status) -> bool:
    """Whether a request in status ``old`` may move to ``new``."""
    return new in _ALLOWED[old]


def sources_of(new: Status) -> tuple[Status, ...]:
    """Every status from which ``new`` may be entered (what a guarded UPDATE lists)."""
    return tuple(old for old in Status if can_transition(old, new))


class ErrorKind(enum.StrEnum):
    """Why a request failed; served as ``error.kind``."""

    HTTP_STATUS = "http_status"  #: the user server answered with a status other than 2xx
    CONTENT_TYPE = "content_type"  #: the answer was not declared as JSON
    INVALID_JSON = "invalid_json"  #: the answer was declared JSON but did not parse
    UNREACHABLE = "unreachable"  #: the user server refused or dropped the connection
    TIMEOUT = "timeout"  #: the answer took longer than ``async.request_timeout``
    MAX_ATTEMPTS = "max_attempts"  #: workers died holding it ``async.max_attempts`` times
    PAYLOAD_LOST = "payload_lost"  #: the stored payload could not be read
    INTERNAL = "internal"  #: cortex itself failed while handling it
    API_DELETED = "api_deleted"  #: its API was deleted while it waited (the request is ``cancelled``)
    PURGED = "purged"  #: its API's queue was purged while it waited (the request is ``cancelled``)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestError:
    """The reason a request failed."""

    kind: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class NewRequest:
    """What the gateway stores for a submitted request.

    The payload is either ``payload`` (small bodies, kept with the record) or ``payload_ref``
    (the key of a blob that already holds the body).
    """

    id: str
    api: str
    created_at: float
    expires_at: float
    headers: tuple[tuple[str, str], ...]
    payload: bytes | None = None
    payload_ref: str | None = None
    #: the client's ``Idempotency-Key``: unique per API among unexpired requests
    idempotency_key: str | None = None
    #: a digest of the body, to tell a retry of the same request from a reuse of its key
    body_digest: str | None = None
    #: where this request's events are pushed (``X-Cortex-Webhook-URL``)
    webhook_url: str | None = None
    #: ``X-Cortex-Priority`` (0-9, higher taken first), when the client sent it; unset counts as 0
    priority: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Duplicate:
    """An unexpired request already holds the ``Idempotency-Key`` of a new one."""

    id: str
    body_digest: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """A request as kept by the store."""

    id: str
    api: str
    status: Status
    created_at: float
    expires_at: float
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: bytes | None = None  #: the user server's JSON answer, as the bytes it sent
    error: RequestError | None = None
    headers: tuple[tuple[str, str], ...] = ()
    payload: bytes | None = None
    payload_ref: str | None = None
    webhook_url: str | None = None
    #: the delivery of its webhook: ``{"status", "attempts", "last_error"}``, once one was tried
    webhook: dict[str, Any] | None = None
    #: ``X-Cortex-Priority``, when the client sent it (unset counts as 0)
    priority: int | None = None
    #: the latest progress the user server reported while running it (any JSON value), and when
    progress: Any = None
    progress_at: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended, as the dequeuer reports it to the store."""

    status: Status
    result: bytes | None = None
    error: RequestError | None = None
    #: the user server's status code, when it answered (what a retry policy looks at)
    http_status: int | None = None

    @classmethod
    def completed(cls, result: bytes) -> Outcome:
        """A run that produced ``result`` (JSON bytes)."""
        return cls(Status.COMPLETED, result=result)

    @classmethod
    def failed(cls, kind: ErrorKind, message: str, *, http_status: int | None = None) -> Outcome:
        """A run that ended without a result."""
        return cls(Status.FAILED, error=RequestError(kind.value, message), http_status=http_status)


def rfc3339(ts: float, *, millis: bool = True) -> str:
    """Format a Unix time as RFC 3339 UTC (``2021-08-03T17:28:45Z``, with milliseconds by default)."""
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def now() -> float:
    """The current Unix time (one place, so tests and stores agree)."""
    return time.time()


def status_values(statuses: Iterable[Status]) -> tuple[str, ...]:
    """The string values of ``statuses`` (for SQL parameters)."""
    return tuple(s.value for s in statuses)
