"""A PostgreSQL statement cut off fails at its deadline: the driver's cancel of it is not waited for.

asyncpg cancels a statement past ``command_timeout`` over a new connection, and its pool waits for
that cancel before taking the connection back, up to one more deadline on a server cut off. The
shared server is seen through a loopback proxy of the test's own (:mod:`tests.servers.cutter`),
which the test blackholes; the server itself is never touched.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from cortex.backends import Resources
from cortex.errors import BackendError
from cortex.postgresdb import open_server, wrap_errors
from tests.gateway.test_deadlines import _through
from tests.servers.cutter import cutter
from tests.servers.databases import POSTGRES_URL, postgres_namespace


async def test_a_statement_cut_off_fails_while_its_connection_goes_back_in_the_background() -> None:
    server = urlsplit(POSTGRES_URL)
    async with postgres_namespace() as url, cutter(server.hostname or "127.0.0.1", server.port or 0) as proxy:
        resources = Resources()
        try:
            deadlines = "command_timeout=1&connect_timeout=1"
            opened = await open_server(f"{_through(url, proxy.port)}&{deadlines}", resources, "")
            assert await opened.pool.fetchrow("SELECT 1 AS one") is not None
            proxy.blackhole()
            with pytest.raises(BackendError, match="no answer within the deadline"), wrap_errors("test", opened.url):
                await opened.pool.fetchrow("SELECT 1 AS one")
            # the caller has its answer; the driver's cancel (and the release after it) goes on without it
            assert opened.pool.releasing == 1
            proxy.heal()
            await opened.pool.settle(10)
            assert opened.pool.releasing == 0
            assert await opened.pool.fetchrow("SELECT 1 AS one") is not None
        finally:
            await resources.aclose()
