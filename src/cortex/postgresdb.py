"""One asyncpg pool per PostgreSQL server, shared by the queue and record store of a process.

A URL names the server, the database and, optionally, the schema that holds cortex's tables:
``postgresql://user@host:5432/db?schema=cortex`` (``postgres://`` too). The schema defaults to
``cortex`` and is created, with the tables, on first open (``IF NOT EXISTS``, under an advisory
lock, so processes starting together do not race). ``command_timeout`` (seconds, default
:data:`COMMAND_TIMEOUT_S`) bounds each statement, so a stalled server fails a request with a
:class:`~cortex.errors.BackendError` instead of hanging it. The other query parameters are asyncpg's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from cortex.backends import Resources
from cortex.cancellation import raise_if_cancelling
from cortex.errors import BackendError

DEFAULT_SCHEMA = "cortex"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
#: connections per pool; a dequeuer's leases, renewals and acks share them
POOL_SIZE = 10
#: seconds to wait for a new connection (the driver would wait 60)
CONNECT_TIMEOUT_S = 10.0
#: seconds one statement may take before it fails (``?command_timeout=`` in the URL)
COMMAND_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class PostgresServer:
    """A shared pool and the schema one URL names."""

    pool: asyncpg.Pool
    dsn: str  #: asyncpg's URL (without ``schema``), for connections outside the pool
    schema: str  #: a plain lower-case identifier, safe to splice into SQL
    url: str  #: the URL without credentials, for messages
    #: seconds one statement may take
    command_timeout: float = COMMAND_TIMEOUT_S

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
    """asyncpg's URL (without ``schema`` and ``command_timeout``) and the schema of ``url``."""
    dsn, schema, _ = parse_url(url)
    return dsn, schema


def parse_url(url: str) -> tuple[str, str, float]:
    """asyncpg's URL (without cortex's own parameters), the schema and the command timeout of ``url``."""
    parts = urlsplit(url)
    schema = DEFAULT_SCHEMA
    timeout = COMMAND_TIMEOUT_S
    rest = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "schema":
            schema = value
        elif name == "command_timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not 0 < timeout < 86400:
                raise BackendError(f"invalid command_timeout {value!r} in {redact(url)}: give seconds, above 0")
        else:
            rest.append((name, value))
    if not _SCHEMA_RE.match(schema):
        raise BackendError(
            f"invalid schema {schema!r} in {redact(url)}: use lower-case letters, digits and _ (at most 41)"
        )
    return urlunsplit(parts._replace(query=urlencode(rest))), schema, timeout


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


@contextlib.contextmanager
def wrap_errors(action: str, url: str) -> Iterator[None]:
    """Turn driver and socket errors into :class:`BackendError` (the driver's error as ``__cause__``).

    A cancel the driver dropped is raised again on the way out (:mod:`cortex.cancellation`).
    """
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:  # OSError: TimeoutError too
        raise BackendError(f"PostgreSQL {action} failed at {url}: {exc}") from exc
    else:
        raise_if_cancelling()


async def open_server(
    url: str, resources: Resources, ddl: str, *, migrations: Sequence[str] = (), versions: str = ""
) -> PostgresServer:
    """The process's pool for the server of ``url``, with ``ddl`` (``{s}`` = the schema) applied once.

    ``migrations`` are versioned: the table ``{s}.<versions>`` records how many were applied, and
    only the later ones run (each in the same transaction as the update of that count).

    Raises:
        BackendError: the URL is invalid, the server does not answer, or the schema cannot be created.
    """
    dsn, schema, command_timeout = parse_url(url)
    shown = redact(dsn)

    async def create() -> asyncpg.Pool:
        try:
            with wrap_errors("connect", shown):
                pool = await asyncpg.create_pool(
                    dsn,
                    min_size=1,
                    max_size=POOL_SIZE,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=command_timeout,
                    reset=_reset,
                )
        except BackendError as exc:
            raise BackendError(f"{exc} (is the server running? the URL is {shown})") from exc.__cause__
        except ValueError as exc:
            raise BackendError(f"invalid PostgreSQL URL {shown}: {exc}") from exc
        return pool

    async def close(pool: asyncpg.Pool) -> None:
        await pool.close()

    pool = await resources.get(f"postgres:{dsn}:{command_timeout}", create, close)
    server = PostgresServer(pool=pool, dsn=dsn, schema=schema, url=shown, command_timeout=command_timeout)
    with wrap_errors(f"creating the tables in schema {schema}", shown):
        async with pool.acquire() as conn, conn.transaction():
            # CREATE ... IF NOT EXISTS still races with itself in concurrent transactions
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"cortex-schema:{schema}")
            await conn.execute(server.sql("CREATE SCHEMA IF NOT EXISTS {s};\n" + ddl))
            if migrations:
                await _migrate(conn, server, migrations, versions)
    return server


async def _migrate(conn: Any, server: PostgresServer, migrations: Sequence[str], versions: str) -> None:
    table = server.sql(f"{{s}}.{versions}")
    await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
    version = await conn.fetchval(f"SELECT max(version) FROM {table}") or 0
    for number, ddl in enumerate(migrations[version:], start=version + 1):
        await conn.execute(server.sql(ddl))
        await conn.execute(f"INSERT INTO {table} (version) VALUES ($1)", number)
