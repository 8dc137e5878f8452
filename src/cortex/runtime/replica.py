"""One replica of the local runtime: the user's containers and a dequeuer, as supervised host processes.

A replica's readiness is its dequeuer's: the dequeuer runs the readiness probes and answers
``/healthz`` 200 once they all pass (reference §5.1). Stopping drains: the dequeuer stops leasing
and finishes what it holds, then each container's ``pre_stop`` hook runs, then the containers get
SIGTERM, and SIGKILL after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import time
from collections.abc import Awaitable, Callable

import aiohttp

from cortex.runtime.base import ReplicaState, ReplicaStatus
from cortex.runtime.hooks import run_pre_stop
from cortex.runtime.liveness import watch_liveness
from cortex.runtime.plan import ContainerPlan, ReplicaPlan, SandboxError
from cortex.runtime.supervisor import Supervised, backoff_delay

log = logging.getLogger(__name__)

#: the dequeuer gets this much longer than its grace period to drain before it is killed
DEQUEUER_EXTRA_GRACE = 5.0
#: a health or status question to a dequeuer must be answered within this many seconds
ADMIN_TIMEOUT = 1.0


async def _after(started: Callable[[], Awaitable[None]] | None, watch: Callable[[], Awaitable[str]]) -> str:
    """Run ``watch`` once ``started`` returns (at once without one)."""
    if started is not None:
        await started()
    return await watch()


class Replica:
    """One replica's processes, their supervision, and its readiness as its dequeuer reports it."""

    def __init__(self, plan: ReplicaPlan) -> None:
        self.plan = plan
        self.started_at = time.time()
        ports = (plan.pod_port, plan.user_port)
        self._containers = [
            Supervised(
                c.process,
                label=f"container {c.process.name}",
                where=plan.id,
                backoff_max=plan.restart_backoff_max,
                watch=None
                if c.liveness_probe is None
                else functools.partial(
                    _after,
                    c.started,
                    functools.partial(
                        watch_liveness,
                        c.liveness_probe,
                        name=f"{c.process.name}:liveness",
                        ports=ports,
                        env=c.process.env,
                        cwd=c.process.cwd,
                    ),
                ),
            )
            for c in plan.containers
        ]
        self._dequeuer = Supervised(
            plan.dequeuer, label="dequeuer", where=plan.id, backoff_max=plan.restart_backoff_max
        )
        self._started = False
        self._launch: asyncio.Task[None] | None = None
        #: why the sandbox could not be made (Kubernetes' reason, detail); None when it was, or is being made
        self._sandbox_failure: tuple[str, str] | None = None
        self._sandbox_detail = "creating the pod"
        #: the dequeuer's last answer: None before its first, then whether it said healthy
        self._healthy: bool | None = None
        self._health_detail = "waiting for the dequeuer to answer"
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        """The replica's id."""
        return self.plan.id

    @property
    def ready(self) -> bool:
        """Whether it takes requests: running, every process up, and its dequeuer healthy."""
        return bool(self._healthy) and self._stopping is None and not self._failures()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping is not None

    def start(self) -> None:
        """Make the sandbox if there is one, then start every process and the readiness polling, in the background."""
        (self.plan.folder / "mnt").mkdir(parents=True, exist_ok=True)
        if self.plan.sandbox is None:
            self._start_processes()
        else:
            self._launch = asyncio.create_task(self._prepare_then_start(), name=f"launch {self.id}")

    def _start_processes(self) -> None:
        for process in [*self._containers, self._dequeuer]:
            process.start()
        self._poller = asyncio.create_task(self._poll_health(), name=f"health {self.id}")
        self._started = True
        log.info("%s: started (port %d, admin port %d)", self.id, self.plan.user_port, self.plan.admin_port)

    async def _prepare_then_start(self) -> None:
        """Make the sandbox, trying again with the kubelet's backoff (ImagePullBackOff), then start."""
        sandbox = self.plan.sandbox
        assert sandbox is not None
        failures = 0

        def report(detail: str) -> None:
            self._sandbox_detail = detail

        while True:
            try:
                await sandbox.prepare(report)
                break
            except SandboxError as exc:
                failures += 1
                delay = backoff_delay(failures, self.plan.restart_backoff_max)
                self._sandbox_failure = (exc.reason, f"{exc}; trying again in {delay:g}s")
                log.warning("%s: %s; trying again in %gs", self.id, exc, delay)
                await asyncio.sleep(delay)
        self._sandbox_failure = None
        self._start_processes()

    def status(self, revision: int) -> ReplicaStatus:
        """The replica now; ready ones of an older ``revision`` than the API's are out of date."""
        state, detail = self._state(revision)
        return ReplicaStatus(
            id=self.id,
            api=self.plan.api,
            state=state,
            deployment_id=self.plan.deployment_id,
            started_at=self.started_at,
            restarts=sum(p.restarts for p in [*self._containers, self._dequeuer]),
            detail=detail,
        )

    def pids(self) -> list[int]:
        """The ids of the replica's running processes (each leads a process group)."""
        return [pid for p in [*self._containers, self._dequeuer] if (pid := p.pid) is not None]

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the replica is ready; False if ``timeout`` passes first or it is being stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready:
            if self.stopping or loop.time() >= deadline:
                return False
            await asyncio.sleep(min(self.plan.health_interval, max(0.0, deadline - loop.time())))
        return True

    async def in_flight(self) -> int | None:
        """Requests its dequeuer is running now; None if it does not answer."""
        body = await self._admin_json("/status")
        value = body.get("in_flight") if body is not None else None
        return value if isinstance(value, int) else None

    def begin_stop(self) -> asyncio.Task[None]:
        """Start draining and stopping (see :meth:`stop`) in the background; the replica is stopping from now on."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop(), name=f"stop {self.id}")
        return self._stopping

    async def stop(self) -> None:
        """Drain and stop every process, then remove the replica's folder; safe to call again.

        The stop runs to its end even if the caller is cancelled.
        """
        await asyncio.shield(self.begin_stop())

    def _state(self, revision: int) -> tuple[ReplicaState, str]:
        if self._stopping is not None:
            return ReplicaState.TERMINATING, "draining, then stopping"
        if self._sandbox_failure is not None:
            reason, detail = self._sandbox_failure
            state = ReplicaState.ERR_IMAGE_PULL if reason == "ErrImagePull" else ReplicaState.FAILED
            return state, f"{reason}: {detail}" if reason else detail
        if failures := self._failures():
            return ReplicaState.FAILED, "; ".join(failures)
        if self._launch is not None and not self._started:
            return ReplicaState.CREATING, self._sandbox_detail
        if not self._started:
            return ReplicaState.PENDING, "not started yet"
        if self._healthy is None:
            return ReplicaState.CREATING, self._health_detail
        if not self._healthy:
            return ReplicaState.NOT_READY, self._health_detail
        if revision != self.plan.revision:
            return ReplicaState.READY_OUT_OF_DATE, "runs an older version of the API"
        return ReplicaState.READY, ""

    def _failures(self) -> list[str]:
        return [p.failure for p in [*self._containers, self._dequeuer] if p.failure is not None]

    async def _stop(self) -> None:
        log.info("%s: stopping", self.id)
        grace = self.plan.grace_period
        if self._launch is not None:
            self._launch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._launch
        try:
            # The dequeuer first: it stops leasing and finishes its requests while the containers still serve them.
            await self._dequeuer.stop(grace + DEQUEUER_EXTRA_GRACE)
        finally:
            await asyncio.gather(
                *(
                    self._stop_container(plan, process)
                    for plan, process in zip(self.plan.containers, self._containers, strict=True)
                )
            )
            if self._poller is not None:
                self._poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._poller
            if self.plan.sandbox is not None:
                await self.plan.sandbox.remove()
            await asyncio.to_thread(shutil.rmtree, self.plan.folder, ignore_errors=True)
            log.info("%s: stopped", self.id)

    async def _stop_container(self, plan: ContainerPlan, process: Supervised) -> None:
        hook = plan.pre_stop
        before = None
        if hook is not None:
            before = functools.partial(
                run_pre_stop,
                hook,
                name=f"{self.id}: container {plan.process.name}",
                ports=(self.plan.pod_port, self.plan.user_port),
                env=plan.process.env,
                cwd=plan.process.cwd,
                timeout=self.plan.grace_period,
            )
        await process.stop(self.plan.grace_period, before=before)

    async def _poll_health(self) -> None:
        # A fresh connection each time: the dequeuer restarts after a crash, and a pooled one would go stale.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            self._session = session
            try:
                while True:
                    await self._check_health(session)
                    await asyncio.sleep(self.plan.health_interval)
            finally:
                self._session = None

    async def _check_health(self, session: aiohttp.ClientSession) -> None:
        url = f"http://127.0.0.1:{self.plan.admin_port}/healthz"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT)) as response:
                healthy = response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if self._healthy is not None:  # before its first answer, the dequeuer is still starting
                self._healthy, self._health_detail = (
                    False,
                    f"the dequeuer does not answer ({exc or type(exc).__name__})",
                )
            return
        if healthy:
            self._healthy, self._health_detail = True, ""
        else:
            self._healthy, self._health_detail = False, await self._probe_detail()

    async def _probe_detail(self) -> str:
        """Which readiness probes fail and why, from the dequeuer's ``/status``."""
        body = await self._admin_json("/status")
        probes = body.get("probes") if body is not None else None
        if not isinstance(probes, dict):
            return "readiness probes not passing"
        failing = [
            f"{name}: {state.get('detail', '?')}"
            for name, state in probes.items()
            if isinstance(state, dict) and not state.get("ready")
        ]
        return "readiness probes not passing: " + "; ".join(failing) if failing else "readiness probes not passing"

    async def _admin_json(self, path: str) -> dict[str, object] | None:
        session = self._session
        if session is None or session.closed:
            return None
        url = f"http://127.0.0.1:{self.plan.admin_port}{path}"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT)) as response:
                if response.status != 200:
                    return None
                body = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, RuntimeError):
            return None
        return body if isinstance(body, dict) else None
