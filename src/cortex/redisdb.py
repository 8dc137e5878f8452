"""One Redis client per server, shared by the Redis queue and record store of a process.

A URL names the server and, optionally, the prefix of every key cortex writes:
``redis://host:6379/0?prefix=cortex`` (``rediss://`` for TLS). The prefix defaults to ``cortex``;
a ``:`` is added after it. Everything else in the URL (password, database number, client
options) is redis-py's :func:`redis.asyncio.from_url` syntax.

Every call has a deadline: ``socket_timeout`` (seconds, default :data:`SOCKET_TIMEOUT_S`) bounds
each command's answer, ``socket_connect_timeout`` (default the same) each new connection, and a
caller waits at most ``socket_timeout`` for a free connection of the pool. A server cut off or
frozen then fails a call with a :class:`~cortex.errors.BackendError` within that time, never hangs
it. The blocking reads of the queue wait at most 1 s, well within it.

Keys are grouped per API under a hash tag (``<prefix>:q:{<api>}:due``) so that the keys one
script touches share a slot; the record store's sweep derives keys inside its script, so a
Redis Cluster is not supported: use one primary (with replicas and AOF persistence for no loss).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cortex.backends import Resources
from cortex.cancellation import raise_if_cancelling
from cortex.errors import BackendError
from cortex.reaching import can_retry

DEFAULT_PREFIX = "cortex"
#: connections per server and process; a blocked ``wait_lease`` holds one
POOL_SIZE = 64
#: seconds a command may wait for its answer, a new connection for the server, a caller for a
#: free connection (``?socket_timeout=`` and ``?socket_connect_timeout=`` in the URL)
SOCKET_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class RedisServer:
    """A shared client and the key prefix one URL names."""

    client: aioredis.Redis
    prefix: str  #: ends with ``:``
    url: str  #: the URL without credentials, for messages
    #: seconds a command may wait for its answer (a blocking read must ask the server for less)
    timeout: float = SOCKET_TIMEOUT_S

    def key(self, *parts: str) -> str:
        """``<prefix>:part:part...``."""
        return self.prefix + ":".join(parts)


def split_url(url: str) -> tuple[str, str]:
    """The redis-py URL (without ``prefix``) and the key prefix (ending in ``:``) of ``url``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest = []
    for name, value in query:
        if name == "prefix":
            prefix = value
        else:
            rest.append((name, value))
    if not prefix or any(c in prefix for c in "*?[]{} "):
        raise BackendError(f"invalid key prefix {prefix!r} in {redact(url)}: use letters, digits and ':-_.'")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix.rstrip(":") + ":"


def parse_url(url: str) -> tuple[str, str, float]:
    """:func:`split_url`, with the deadlines made explicit: the client URL, the prefix, the socket timeout.

    ``socket_timeout`` defaults to :data:`SOCKET_TIMEOUT_S`, ``socket_connect_timeout`` to ``socket_timeout``.

    Raises:
        BackendError: the prefix or a timeout is invalid.
    """
    client_url, prefix = split_url(url)
    parts = urlsplit(client_url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    timeouts: dict[str, float] = {}
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name not in query:
            continue
        try:
            timeouts[name] = float(query[name])
        except ValueError:
            timeouts[name] = -1.0
        if not 0 < timeouts[name] < 86400:
            raise BackendError(f"invalid {name} {query[name]!r} in {redact(url)}: give seconds, above 0")
    timeout = timeouts.get("socket_timeout", SOCKET_TIMEOUT_S)
    query["socket_timeout"] = f"{timeout:g}"
    query["socket_connect_timeout"] = f"{timeouts.get('socket_connect_timeout', timeout):g}"
    return urlunsplit(parts._replace(query=urlencode(query))), prefix, timeout


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def wrap_errors(action: str, url: str) -> Iterator[None]:
    """Turn driver and socket errors into :class:`BackendError` (the driver's error as ``__cause__``).

    A cancel the driver dropped is raised again on the way out (:mod:`cortex.cancellation`).
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BackendError(f"Redis {action} failed at {url}: {_described(exc)}") from exc
    else:
        raise_if_cancelling()


def _described(exc: BaseException) -> str:
    """The driver's message, or what happened when it has none (a deadline passed)."""
    if str(exc):
        return str(exc)
    return "no answer within the deadline" if isinstance(exc, TimeoutError) else type(exc).__name__


async def open_server(url: str, resources: Resources) -> RedisServer:
    """The process's client for the server of ``url`` (one pool per server), checked with a PING.

    Raises:
        BackendError: the URL is invalid or the server does not answer.
    """
    client_url, prefix, timeout = parse_url(url)
    shown = redact(client_url)

    async def create() -> aioredis.Redis:
        try:
            # a burst of requests waits for a free connection instead of failing, within the deadline
            pool = aioredis.BlockingConnectionPool.from_url(client_url, max_connections=POOL_SIZE, timeout=timeout)
            client = aioredis.Redis.from_pool(pool)
        except ValueError as exc:
            raise BackendError(f"invalid Redis URL {shown}: {exc}") from exc
        try:
            with wrap_errors("PING", shown):
                await client.ping()
        except BackendError as exc:
            await client.aclose()
            hint = f" (is redis-server running? the URL is {shown})" if can_retry(exc) else ""  # not for a login
            raise BackendError(f"{exc}{hint}") from exc.__cause__
        return client

    async def close(client: aioredis.Redis) -> None:
        await client.aclose()

    client = await resources.get(f"redis:{client_url}", create, close)
    return RedisServer(client=client, prefix=prefix, url=shown, timeout=timeout)
