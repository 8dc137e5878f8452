"""Opening the backends of a process whose server may not be up yet.

A gateway or a dequeuer can start before its database does: a cluster's pods start together, and
a database restarts on its own schedule. Exiting would leave the restart to the runtime, and on
Kubernetes a container that keeps exiting waits up to 5 minutes (CrashLoopBackOff) after the
database is back. So an open that failed for want of an answer is retried, with a capped backoff,
and the process serves meanwhile (its readiness says it is waiting).

What a retry cannot fix fails at once, with the backend's message: an unknown scheme, an invalid
URL, a driver not installed, a wrong password or user, a database that does not exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cortex.errors import BackendError, BackendUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: seconds before the first retry of an open; each later wait doubles, up to :data:`RETRY_CAP`
RETRY_FIRST = 0.5
#: the longest wait between two tries (a backend back is reached within this)
RETRY_CAP = 5.0

#: driver errors (by class name, so that no optional driver is imported here) a retry cannot fix:
#: redis-py's refused credentials, asyncpg's wrong password, unknown role and unknown database
_FINAL = frozenset(
    {
        "AuthenticationError",
        "AuthenticationWrongNumberOfArgsError",
        "AuthorizationError",
        "InvalidPasswordError",
        "InvalidAuthorizationSpecificationError",
        "InvalidCatalogNameError",
    }
)
#: driver errors that mean "no answer now": redis-py's lost or refused connection, a server still
#: loading its data, asyncpg's server starting up or full of connections, or a connection dropped
_PASSING = frozenset(
    {
        "ConnectionError",
        "TimeoutError",
        "BusyLoadingError",
        "CannotConnectNowError",
        "TooManyConnectionsError",
        "ConnectionDoesNotExistError",
    }
)


def can_retry(exc: BaseException) -> bool:
    """Whether ``exc`` (an open that failed) may pass by itself: the server did not answer, or not yet.

    A socket error (refused, reset, timed out, a host name not resolved yet) or a driver's error of
    the same kind can pass; a :class:`BackendError` with no such cause (a URL refused before any
    connection was tried) or with a refused login cannot.
    """
    if isinstance(exc, BackendUnavailable):
        return False
    cause: BaseException | None = exc
    while cause is not None:
        names = {cls.__name__ for cls in type(cause).__mro__}
        if names & _FINAL:
            return False
        if names & _PASSING or isinstance(cause, OSError):
            return True
        cause = cause.__cause__
    return False


async def open_when_reachable(
    open_: Callable[[], Awaitable[T]],
    *,
    role: str,
    first: float = RETRY_FIRST,
    cap: float = RETRY_CAP,
    failing: bool = False,
) -> T:
    """``open_()``, tried again while it fails with an error :func:`can_retry` accepts.

    Logs one line when the backend cannot be reached and one when it is (``role`` names the
    process in them), never one per try; ``failing`` says a first failure was logged already (tries
    then begin after ``first`` seconds).

    Raises:
        BackendError: an error a retry cannot fix, at once (tried already, a later one too).
    """
    wait = first
    if failing:
        await asyncio.sleep(wait)
        wait = min(wait * 2, cap)
    while True:
        try:
            opened = await open_()
        except BackendError as exc:
            if not can_retry(exc):
                raise
            if not failing:
                log.error("the %s cannot reach its backend yet (trying again, up to every %gs): %s", role, cap, exc)
                failing = True
            await asyncio.sleep(wait)
            wait = min(wait * 2, cap)
            continue
        if failing:
            log.warning("the %s reached its backend", role)
        return opened
