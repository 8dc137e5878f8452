"""One asyncpg pool per PostgreSQL server, shared by the queue and record store of a process.

A URL names the server, the database and, optionally, the schema that holds cortex's tables:
``postgresql://user@host:5432/db?schema=cortex`` (``postgres://`` too). The schema defaults to
``cortex`` and is created, with the tables, on first open (``IF NOT EXISTS``, under an advisory
lock, so processes starting together do not race). The other query parameters are asyncpg's
(``application_name=...`` names the sessions in ``pg_stat_activity``).

Every call has a deadline: ``command_timeout`` (seconds, default :data:`COMMAND_TIMEOUT_S`) bounds
each statement and ``connect_timeout`` (default :data:`CONNECT_TIMEOUT_S`) each new connection, so
a server cut off or frozen fails a call with a :class:`~cortex.errors.BackendError` instead of
hanging it. A caller waiting for a free connection of the pool waits for one of those to end, so
at most ``command_timeout + connect_timeout``. Closing the pool waits :data:`CLOSE_TIMEOUT_S` for
the statements under way, then drops the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from cortex.backends import Resources
from cortex.cancellation import raise_if_cancelling
from cortex.errors import BackendError
from cortex.postgrespool import DeadlinePool
from cortex.reaching import can_retry

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "cortex"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
#: connections per pool; a dequeuer's leases, renewals and acks share them
POOL_SIZE = 10
#: seconds to wait for a new connection (the driver would wait 60; ``?connect_timeout=`` in the URL)
CONNECT_TIMEOUT_S = 10.0
#: seconds one statement may take before it fails (``?command_timeout=`` in the URL)
COMMAND_TIMEOUT_S = 10.0
#: seconds closing the pool waits for the statements under way before it drops the connections
CLOSE_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class PostgresServer:
    """A shared pool and the schema one URL names."""

    pool: DeadlinePool
    dsn: str  #: asyncpg's URL (without ``schema``), for connections outside the pool
    schema: str  #: a plain lower-case identifier, safe to splice into SQL
    url: str  #: the URL without credentials, for messages
    #: seconds one statement may take
    command_timeout: float = COMMAND_TIMEOUT_S
    #: seconds a new connection may take
    connect_timeout: float = CONNECT_TIMEOUT_S

    def sql(self, text: str) -> str:
        """``text`` with ``{s}`` replaced by the quoted schema."""
        return text.replace("{s}", f'"{self.schema}"')


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool: only a rollback, if it is left in a transaction.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release, a second round trip for every statement. Cortex's pooled connections keep no
    session state (no LISTEN: that has its own connection; advisory locks only per transaction).
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def split_url(url: str) -> tuple[str, str]:
    """asyncpg's URL (without ``schema`` and the timeouts) and the schema of ``url``."""
    dsn, schema, _, _ = parse_url(url)
    return dsn, schema


def parse_url(url: str) -> tuple[str, str, float, float]:
    """asyncpg's URL (without cortex's own parameters), the schema, the command and the connect timeouts of ``url``."""
    parts = urlsplit(url)
    schema = DEFAULT_SCHEMA
    timeouts = {"command_timeout": COMMAND_TIMEOUT_S, "connect_timeout": CONNECT_TIMEOUT_S}
    rest = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "schema":
            schema = value
        elif name in timeouts:
            try:
                timeouts[name] = float(value)
            except ValueError:
                timeouts[name] = -1.0
            if not 0 < timeouts[name] < 86400:
                raise BackendError(f"invalid {name} {value!r} in {redact(url)}: give seconds, above 0")
        else:
            rest.append((name, value))
    if not _SCHEMA_RE.match(schema):
        raise BackendError(
            f"invalid schema {schema!r} in {redact(url)}: use lower-case letters, digits and _ (at most 41)"
        )
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    return dsn, schema, timeouts["command_timeout"], timeouts["connect_timeout"]


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


#: what the driver raises when a call fails: a server error, a connection lost or refused, a deadline
#: passed (``TimeoutError`` is an ``OSError``), or the driver's own state broken by a lost connection
#: (``InternalClientError``, seen when a server restarts under a pool)
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


@contextlib.contextmanager
def wrap_errors(action: str, url: str) -> Iterator[None]:
    """Turn driver and socket errors into :class:`BackendError` (the driver's error as ``__cause__``).

    A cancel the driver dropped is raised again on the way out (:mod:`cortex.cancellation`).
    """
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise BackendError(f"PostgreSQL {action} failed at {url}: {_described(exc)}") from exc
    else:
        raise_if_cancelling()


def _described(exc: BaseException) -> str:
    """The driver's message, or what happened when it has none (a deadline passed)."""
    if str(exc):
        return str(exc)
    return "no answer within the deadline" if isinstance(exc, TimeoutError) else type(exc).__name__


async def open_server(
    url: str, resources: Resources, ddl: str, *, migrations: Sequence[str] = (), versions: str = ""
) -> PostgresServer:
    """The process's pool for the server of ``url``, with ``ddl`` (``{s}`` = the schema) applied once.

    ``migrations`` are versioned: the table ``{s}.<versions>`` records how many were applied, and
    only the later ones run (each in the same transaction as the update of that count).

    Raises:
        BackendError: the URL is invalid, the server does not answer, or the schema cannot be created.
    """
    dsn, schema, command_timeout, connect_timeout = parse_url(url)
    shown = redact(dsn)

    async def create() -> DeadlinePool:
        try:
            with wrap_errors("connect", shown):
                pool = await asyncpg.create_pool(
                    dsn,
                    min_size=1,
                    max_size=POOL_SIZE,
                    timeout=connect_timeout,
                    command_timeout=command_timeout,
                    reset=_reset,
                )
        except BackendError as exc:
            hint = f" (is the server running? the URL is {shown})" if can_retry(exc) else ""  # not for a login
            raise BackendError(f"{exc}{hint}") from exc.__cause__
        except ValueError as exc:
            raise BackendError(f"invalid PostgreSQL URL {shown}: {exc}") from exc
        return DeadlinePool(pool)

    pool = await resources.get(f"postgres:{dsn}:{command_timeout}:{connect_timeout}", create, close_pool)
    server = PostgresServer(
        pool=pool,
        dsn=dsn,
        schema=schema,
        url=shown,
        command_timeout=command_timeout,
        connect_timeout=connect_timeout,
    )
    digest = _digest(ddl, migrations, versions)
    with wrap_errors(f"creating the tables in schema {schema}", shown):
        async with pool.acquire() as conn:
            if await _applied(conn, server, digest):
                return server
            async with conn.transaction():
                # CREATE ... IF NOT EXISTS still races with itself in concurrent transactions
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"cortex-schema:{schema}")
                await conn.execute(server.sql("CREATE SCHEMA IF NOT EXISTS {s};\n" + ddl))
                if migrations:
                    await _migrate(conn, server, migrations, versions)
                await conn.execute(server.sql(f"CREATE TABLE IF NOT EXISTS {{s}}.{_APPLIED} (digest TEXT PRIMARY KEY)"))
                await conn.execute(
                    server.sql(f"INSERT INTO {{s}}.{_APPLIED} (digest) VALUES ($1) ON CONFLICT DO NOTHING"), digest
                )
    return server


#: the table of the schema texts already applied (by their digest), so a process that starts after
#: another one applied them (a replica's dequeuer, after the gateway and operator) checks them with
#: one read, without the schema lock and DDL (its ``CREATE OR REPLACE FUNCTION`` writes the catalog)
_APPLIED = "applied_ddl"


def _digest(ddl: str, migrations: Sequence[str], versions: str) -> str:
    """A digest of what :func:`open_server` applies: another text (another cortex version) applies again."""
    text = "\0".join((versions, ddl, *migrations))
    return hashlib.sha256(text.encode()).hexdigest()


async def _applied(conn: Any, server: PostgresServer, digest: str) -> bool:
    """Whether the schema text of ``digest`` was applied (committed with it, so its tables exist)."""
    try:
        found = await conn.fetchval(server.sql(f"SELECT 1 FROM {{s}}.{_APPLIED} WHERE digest = $1"), digest)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return False  # a schema older than the table, or none yet
    return found is not None


async def close_pool(pool: DeadlinePool) -> None:
    """Close every connection of ``pool``: gracefully within :data:`CLOSE_TIMEOUT_S`, else at once.

    A graceful close waits for the statements under way, and for nothing at all on a server that
    is cut off; the session must not outlive the process's use of it either way.
    """
    try:
        await pool.settle(CLOSE_TIMEOUT_S)
        await asyncio.wait_for(pool.inner.close(), CLOSE_TIMEOUT_S)
    except (TimeoutError, *DRIVER_ERRORS) as exc:
        log.warning("closing the PostgreSQL connections gracefully failed (dropping them): %s", exc)
        pool.inner.terminate()


async def _migrate(conn: Any, server: PostgresServer, migrations: Sequence[str], versions: str) -> None:
    table = server.sql(f"{{s}}.{versions}")
    await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
    version = await conn.fetchval(f"SELECT max(version) FROM {table}") or 0
    for number, ddl in enumerate(migrations[version:], start=version + 1):
        await conn.execute(server.sql(ddl))
        await conn.execute(f"INSERT INTO {table} (version) VALUES ($1)", number)
