"""The real Redis and PostgreSQL servers the tests use, with an isolated namespace per test.

Each test gets a fresh Redis key prefix (its keys are deleted afterwards) or a fresh PostgreSQL
schema (dropped afterwards) on the local servers. A server that does not answer skips the test,
except when ``CI`` is set: then the test fails, since CI must run every backend.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cortex.backends import BackendUrls

CI = bool(os.environ.get("CI"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_COMMANDS = {
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
    " --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
}


def unreachable(name: str, url: str, exc: BaseException) -> NoReturn:
    """Skip the test, or fail it under ``CI``: the server ``name`` does not answer at ``url``."""
    message = f"{name} is not reachable at {url} ({exc}); start it with: {START_COMMANDS[name]}"
    if CI:
        pytest.fail(f"{message} (CI is set, so a missing server fails instead of skipping)", pytrace=False)
    pytest.skip(message)


@contextlib.asynccontextmanager
async def redis_namespace() -> AsyncIterator[str]:
    """A Redis URL with a key prefix of its own; its keys are deleted afterwards."""
    prefix = f"cortex-test-{secrets.token_hex(6)}"
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            unreachable("redis", REDIS_URL, exc)
        yield f"{REDIS_URL}?prefix={prefix}"
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def postgres_namespace() -> AsyncIterator[str]:
    """A PostgreSQL URL with a schema of its own; the schema is dropped afterwards."""
    schema = f"test_{secrets.token_hex(6)}"
    try:
        conn = await asyncpg.connect(POSTGRES_URL)
    except (asyncpg.PostgresError, OSError) as exc:
        unreachable("postgres", POSTGRES_URL, exc)
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def urls_for(name: str, tmp_path: Path) -> AsyncIterator[BackendUrls]:
    """The URLs of backend ``name`` for one test; blobs stay files under ``tmp_path``."""
    if name == "sqlite":
        yield BackendUrls.for_state_dir(tmp_path)
        return
    blobs = f"file:///{tmp_path.resolve() / 'blobs'}"
    namespaces = {"redis": redis_namespace, "postgres": postgres_namespace}
    if name not in namespaces:
        raise AssertionError(f"unknown backend {name}")
    async with namespaces[name]() as url:
        yield BackendUrls(queue=url, store=url, blobs=blobs)
