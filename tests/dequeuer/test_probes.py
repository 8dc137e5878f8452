"""Readiness probes against a real user server on loopback: checks, thresholds, timing, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from cortex.dequeuer.probes import ProbeConfig, Prober, check_once


class UserServer:
    """The user's HTTP server; the test switches its answer. Every path answers the same."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.status = 200
        self.script: list[int] = []  # statuses for the next requests, then `status`
        self.delay = 0.0
        self.paths: list[str] = []
        self.user_agents: list[str] = []
        self.starts: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._hit = asyncio.Condition()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)

    async def listen(self) -> None:
        """Starts accepting on the reserved socket (until then, connections are refused)."""
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    async def close(self) -> None:
        await self._runner.cleanup()

    async def wait_hits(self, n: int, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout), self._hit:
            await self._hit.wait_for(lambda: len(self.paths) >= n)

    async def _handle(self, request: web.Request) -> web.Response:
        self.starts.append(asyncio.get_running_loop().time())
        self.paths.append(request.path)
        self.user_agents.append(request.headers.get("User-Agent", ""))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status = self.script.pop(0) if self.script else self.status
            await asyncio.sleep(self.delay)
            headers = {"Location": "/elsewhere"} if 300 <= status < 400 else None
            return web.Response(status=status, text=str(status), headers=headers)
        finally:
            self.in_flight -= 1
            async with self._hit:
                self._hit.notify_all()


@pytest.fixture
def reserved() -> Iterator[socket.socket]:
    """A loopback port that is bound but not listening, so connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
async def down(reserved: socket.socket) -> AsyncIterator[UserServer]:
    """The user server, not listening yet."""
    server = UserServer(reserved)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def server(down: UserServer) -> UserServer:
    """The user server, listening."""
    await down.listen()
    return down


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@contextlib.asynccontextmanager
async def running(prober: Prober) -> AsyncIterator[None]:
    task = asyncio.create_task(prober.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_change(prober: Prober, timeout: float = 2.0) -> bool:
    """The value of `ready` after its next change."""
    async with asyncio.timeout(timeout):
        await prober.changed().wait()
    return prober.ready


def http(
    port: int,
    *,
    timeout: float = 0.5,
    initial_delay: float = 0.0,
    success_threshold: int = 1,
    failure_threshold: int = 3,
) -> ProbeConfig:
    """The user's readiness probe, with a short period so that tests take well under a second."""
    return ProbeConfig(
        "api:readiness",
        "http_get",
        port,
        path="/healthz",
        initial_delay=initial_delay,
        timeout=timeout,
        period=0.05,
        success_threshold=success_threshold,
        failure_threshold=failure_threshold,
    )


def tcp(port: int, name: str = "implied-tcp") -> ProbeConfig:
    return ProbeConfig(name, "tcp_socket", port, timeout=0.5, period=0.05)


@pytest.mark.parametrize(
    ("status", "ok"), [(200, True), (204, True), (302, True), (399, True), (400, False), (404, False), (500, False)]
)
async def test_http_ok_iff_status_200_to_399(
    server: UserServer, session: aiohttp.ClientSession, status: int, ok: bool
) -> None:
    server.status = status
    assert await check_once(http(server.port), session) == (ok, f"HTTP {status}")


async def test_http_sends_kube_probe_agent_and_does_not_follow_redirects(
    server: UserServer, session: aiohttp.ClientSession
) -> None:
    server.status = 302
    await check_once(http(server.port), session)
    assert server.paths == ["/healthz"]
    assert server.user_agents == ["kube-probe/cortex"]


async def test_http_slower_than_timeout_fails(server: UserServer, session: aiohttp.ClientSession) -> None:
    server.delay = 1.0
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await check_once(http(server.port, timeout=0.2), session) == (False, "timed out after 0.2s")
    assert loop.time() - start < 0.6


async def test_http_refused_fails(down: UserServer, session: aiohttp.ClientSession) -> None:
    assert await check_once(http(down.port), session) == (False, "connection refused")


async def test_tcp_open_port_passes(server: UserServer, session: aiohttp.ClientSession) -> None:
    assert await check_once(ProbeConfig("implied-tcp", "tcp_socket", server.port), session) == (True, "connected")


async def test_tcp_closed_port_fails(down: UserServer, session: aiohttp.ClientSession) -> None:
    probe = ProbeConfig("implied-tcp", "tcp_socket", down.port)
    assert await check_once(probe, session) == (False, "connection refused")


async def test_ready_after_success_threshold_and_unready_after_failure_threshold(
    server: UserServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cortex.dequeuer.probes")
    prober = Prober([http(server.port, success_threshold=3, failure_threshold=2)])
    async with running(prober):
        assert await next_change(prober) is True
        assert len(server.paths) == 3
        assert prober.status()["api:readiness"]["consecutive_successes"] == 3
        server.status = 500
        assert await next_change(prober) is False
        assert len(server.paths) == 5
        assert prober.status()["api:readiness"]["consecutive_failures"] == 2
    assert [r.getMessage() for r in caplog.records] == [
        "probe api:readiness ready",
        "probe api:readiness failing: HTTP 500",
    ]


async def test_state_holds_between_thresholds(server: UserServer) -> None:
    prober = Prober([http(server.port, success_threshold=2, failure_threshold=3)])
    async with running(prober):
        server.script = [200, 500, 200, 500, 200, 500]  # never 2 successes in a row: stays not ready
        await server.wait_hits(6)
        assert not prober.ready
        server.script = [200, 200, 500, 500, 200, 500, 500]  # ready, then never 3 failures in a row
        assert await next_change(prober) is True
        await server.wait_hits(13)
        assert prober.ready


async def test_initial_delay_is_respected(server: UserServer) -> None:
    prober = Prober([http(server.port, initial_delay=0.3)])
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with running(prober):
        await asyncio.sleep(0.2)
        assert not prober.ready
        assert server.paths == []
        assert await prober.wait_ready(1.0)
        assert loop.time() - start >= 0.3


async def test_checks_are_periodic_start_to_start(server: UserServer) -> None:
    server.delay = 0.03
    prober = Prober([ProbeConfig("api:readiness", "http_get", server.port, period=0.1)])
    async with running(prober):
        await server.wait_hits(6)
    # On a start-to-start grid lateness does not add up: 5 periods span 0.5 s (end-to-start: 0.65 s).
    assert 0.49 <= server.starts[5] - server.starts[0] < 0.58


async def test_slow_checks_never_overlap(server: UserServer) -> None:
    server.delay = 0.12
    prober = Prober([http(server.port)])
    async with running(prober):
        await server.wait_hits(4)
    assert server.max_in_flight == 1


async def test_wait_ready_true_when_server_comes_up_later(down: UserServer) -> None:
    prober = Prober([tcp(down.port)])
    async with running(prober):
        assert not await prober.wait_ready(0.2)
        await down.listen()
        assert await prober.wait_ready(1.5)


async def test_a_probe_that_never_passed_looks_again_soon_whatever_its_period(down: UserServer) -> None:
    """A fresh replica is taken into service once its server answers, not a whole period later."""
    prober = Prober([ProbeConfig("implied-tcp", "tcp_socket", down.port, timeout=0.5, period=3600)])
    async with running(prober):
        assert not await prober.wait_ready(0.2)  # checked at once: refused
        await down.listen()
        assert await prober.wait_ready(20)  # the next check comes long before the hour is up


async def test_after_its_first_success_a_probe_keeps_its_period(down: UserServer) -> None:
    """The quick checks end at the first success, so the success threshold still spans periods."""
    await down.listen()
    prober = Prober([ProbeConfig("api:readiness", "http_get", down.port, period=3600, success_threshold=2)])
    async with running(prober):
        await down.wait_hits(1)
        assert not await prober.wait_ready(0.5)
        assert len(down.paths) == 1


async def test_wait_ready_false_at_deadline(server: UserServer) -> None:
    server.status = 503
    prober = Prober([http(server.port)])
    loop = asyncio.get_running_loop()
    async with running(prober):
        start = loop.time()
        assert not await prober.wait_ready(0.3)
        assert 0.25 <= loop.time() - start < 1.0


async def test_no_probes_is_ready_and_run_waits_to_be_cancelled() -> None:
    prober = Prober([])
    assert prober.ready
    assert await prober.wait_ready(0)
    task = asyncio.create_task(prober.run())
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ready_needs_every_probe(server: UserServer) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    with closed:
        prober = Prober([http(server.port), tcp(closed.getsockname()[1], name="sidecar")])
        async with running(prober):
            await server.wait_hits(3)
            assert not prober.ready
            assert prober.status()["api:readiness"]["ready"] is True
            assert prober.status()["sidecar"]["ready"] is False


async def test_status_reports_each_probe(down: UserServer) -> None:
    prober = Prober([http(down.port)])
    not_probed = {"ready": False, "detail": "not probed yet", "consecutive_successes": 0, "consecutive_failures": 0}
    assert prober.status() == {"api:readiness": not_probed}
    async with running(prober):
        await asyncio.sleep(0.12)  # checks at 0, 0.05, 0.10
        status = prober.status()["api:readiness"]
        assert status["detail"] == "connection refused"
        assert status["consecutive_failures"] in (2, 3)
        await down.listen()
        assert await prober.wait_ready(1.0)
        assert prober.status()["api:readiness"] == {
            "ready": True,
            "detail": "HTTP 200",
            "consecutive_successes": 1,
            "consecutive_failures": 0,
        }
    assert prober.status()["api:readiness"]["ready"] is False  # nothing vouches for the server once stopped


async def test_invalid_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="period"):
        ProbeConfig("p", "tcp_socket", 8080, period=0)
    with pytest.raises(ValueError, match="thresholds"):
        ProbeConfig("p", "tcp_socket", 8080, failure_threshold=0)
    with pytest.raises(ValueError, match="distinct"):
        Prober([ProbeConfig("p", "tcp_socket", 8080), ProbeConfig("p", "tcp_socket", 8081)])
