"""Readiness probes run by the dequeuer itself, with the kubelet's semantics.

For an AsyncAPI the user's readiness probes are not on the container spec: the dequeuer runs them
and takes no message from the queue while any of them fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from typing import Literal

import aiohttp

logger = logging.getLogger(__name__)

USER_AGENT = "kube-probe/cortex"
#: seconds between two checks of a probe that has not passed once yet. A fresh replica (woken from
#: zero, say) is then taken into service within a moment of its server answering, not up to a whole
#: ``period`` later: what a Kubernetes startup probe with a short period gives. From its first
#: success on, a probe is checked every ``period``, so its thresholds keep their meaning.
STARTUP_PERIOD = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeConfig:
    """One readiness probe, as in a Kubernetes ``Probe``; times are in seconds.

    Attributes:
        name: Names the probe in logs and :meth:`Prober.status`, e.g. ``"api:readiness"``.
        kind: ``"http_get"`` (GET ``http://host:port/path``) or ``"tcp_socket"`` (a connect).
        initial_delay: Time after :meth:`Prober.run` starts before the first check.
        timeout: Time one check may take before it counts as a failure.
        period: Time between the starts of two checks.
        success_threshold: Consecutive successes that make the probe ready.
        failure_threshold: Consecutive failures that make the probe not ready.
    """

    name: str
    kind: Literal["http_get", "tcp_socket"]
    port: int
    host: str = "127.0.0.1"
    path: str = "/"
    initial_delay: float = 0.0
    timeout: float = 1.0
    period: float = 10.0
    success_threshold: int = 1
    failure_threshold: int = 3

    def __post_init__(self) -> None:
        if self.kind not in ("http_get", "tcp_socket") or not 0 < self.port < 65536:
            raise ValueError(f"probe {self.name}: unknown kind {self.kind!r} or port {self.port} out of 1-65535")
        if (
            min(self.timeout, self.period) <= 0
            or self.initial_delay < 0
            or min(self.success_threshold, self.failure_threshold) < 1
        ):
            raise ValueError(f"probe {self.name}: timeout and period must be > 0, initial_delay >= 0, thresholds >= 1")


async def check_once(probe: ProbeConfig, session: aiohttp.ClientSession) -> tuple[bool, str]:
    """Runs one check of `probe`, bounded by its timeout; never raises, except when cancelled.

    ``http_get`` passes on a status in 200-399 (redirects are not followed: a 3xx itself passes);
    ``tcp_socket`` passes once a connection opens, which is closed at once.

    Args:
        probe: The probe to check.
        session: The client for ``http_get`` checks.

    Returns:
        ``(ok, detail)``: the status (``"HTTP 500"``) or a plain reason (``"connection refused"``).
    """
    try:
        if probe.kind == "http_get":
            host = f"[{probe.host}]" if ":" in probe.host else probe.host
            path = probe.path if probe.path.startswith("/") else f"/{probe.path}"
            async with session.get(
                f"http://{host}:{probe.port}{path}",
                headers={"User-Agent": USER_AGENT},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=probe.timeout),
            ) as response:
                return 200 <= response.status < 400, f"HTTP {response.status}"
        async with asyncio.timeout(probe.timeout):
            _, writer = await asyncio.open_connection(probe.host, probe.port)
        writer.close()
        with contextlib.suppress(OSError):  # the port accepted a connection, which is all a TCP probe asks
            await writer.wait_closed()
        return True, "connected"
    except Exception as exc:  # the contract: any failure is a failed check, never an error
        return False, _reason(exc, probe)


def _reason(exc: Exception, probe: ProbeConfig) -> str:
    cause: BaseException = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, TimeoutError):
        return f"timed out after {probe.timeout:g}s"
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno).lower()  # "connection refused", "connection reset by peer"
    return str(cause) or type(cause).__name__


@dataclasses.dataclass(slots=True)
class _State:
    ready: bool = False
    detail: str = "not probed yet"
    successes: int = 0
    failures: int = 0


class Prober:
    """Runs a set of probes with the kubelet's semantics and tells whether all are passing.

    Every probe starts not ready. It is first checked `initial_delay` seconds after :meth:`run`
    starts, then every :data:`STARTUP_PERIOD` (at most `period`) until its first success, then
    every `period` seconds, start to start (a slow check delays nothing: checks of one probe never
    overlap, and ticks missed meanwhile are skipped). `success_threshold` consecutive
    successes make it ready, `failure_threshold` consecutive failures make it not ready, and in
    between its state holds. When :meth:`run` ends, every probe is not ready again.
    """

    def __init__(self, probes: Sequence[ProbeConfig]) -> None:
        """Prepares the probes; none runs until :meth:`run`.

        Args:
            probes: The probes to run; their names must be distinct.

        Raises:
            ValueError: Two probes share a name.
        """
        self._probes = tuple(probes)
        self._states = {p.name: _State() for p in self._probes}
        if len(self._states) != len(self._probes):
            raise ValueError("probe names must be distinct")
        self._changed = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Whether every probe is passing (with no probes, True)."""
        return all(state.ready for state in self._states.values())

    def status(self) -> dict[str, dict[str, object]]:
        """Each probe's ``ready``, ``detail`` (of its last check) and consecutive successes and failures."""
        return {
            name: {
                "ready": s.ready,
                "detail": s.detail,
                "consecutive_successes": s.successes,
                "consecutive_failures": s.failures,
            }
            for name, s in self._states.items()
        }

    def changed(self) -> asyncio.Event:
        """An event set at the next change of :attr:`ready`.

        Each event fires once and is never cleared; call again for the change after it. Take the
        event before reading :attr:`ready`, so a change in between is not missed.
        """
        return self._changed

    async def wait_ready(self, timeout: float) -> bool:
        """Waits until every probe passes.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            True once ready (at once if ready now), False if the deadline passes first.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self.changed()
                    if self.ready:
                        return True
                    await event.wait()
        except TimeoutError:
            return False

    async def run(self) -> None:
        """Runs every probe, each in its own task, until cancelled."""
        # A fresh connection per check, as the kubelet does: a pooled keep-alive connection would
        # hide a server that stopped accepting, and could go stale between checks.
        connector = aiohttp.TCPConnector(force_close=True)
        try:
            async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as tasks:
                for probe in self._probes:
                    tasks.create_task(self._run_probe(probe, session), name=f"probe {probe.name}")
                if not self._probes:
                    await asyncio.get_running_loop().create_future()  # nothing to run; wait to be cancelled
        finally:
            # Nothing vouches for the user's server once the probes stop.
            was_ready = self.ready
            self._states = {p.name: _State(detail="not running") for p in self._probes}
            self._notify(was_ready)

    async def _run_probe(self, probe: ProbeConfig, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + probe.initial_delay
        period = min(probe.period, STARTUP_PERIOD)
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            ok, detail = await check_once(probe, session)
            self._record(probe, ok, detail)
            if ok:
                period = probe.period
            # Start to start, like a ticker that drops the ticks a slow check overran.
            next_at += period * max(1, math.ceil((loop.time() - next_at) / period))

    def _record(self, probe: ProbeConfig, ok: bool, detail: str) -> None:
        was_ready = self.ready
        state = self._states[probe.name]
        state.detail = detail
        if ok:
            state.successes, state.failures = state.successes + 1, 0
            if not state.ready and state.successes >= probe.success_threshold:
                state.ready = True
                logger.info("probe %s ready", probe.name)
        else:
            state.successes, state.failures = 0, state.failures + 1
            if state.ready and state.failures >= probe.failure_threshold:
                state.ready = False
                logger.info("probe %s failing: %s", probe.name, detail)
            else:
                logger.debug("probe %s check failed: %s", probe.name, detail)
        self._notify(was_ready)

    def _notify(self, was_ready: bool) -> None:
        if self.ready != was_ready:
            self._changed.set()
            self._changed = asyncio.Event()
