"""The local runtime: every replica is the user's containers and a dequeuer, run as host processes.

A container runs from its ``command`` and ``args`` (``$(VAR)`` expanded, no shell) in the folder of
the configuration file, with the parent's environment, its own ``env`` and the ``CORTEX_*``
variables of the worker contract (DESIGN §3). Each replica gets its own port as ``CORTEX_PORT``,
its own ``CORTEX_MNT`` folder, and its own log files under ``<state>/logs/<api>/<replica>/``.

Per API the runtime keeps the spec, the deployment id and the requested replica count. Scaling in
removes not-ready replicas first, then idle ones, then the least busy. A new deployment rolls in
the background: start a new replica, wait until it is ready, drain an old one, repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

from cortex.backends import BackendUrls
from cortex.errors import CortexError, NotFound
from cortex.runtime.base import ReplicaStatus, Runtime
from cortex.runtime.logs import read_logs
from cortex.runtime.plan import ReplicaPlan, check_runnable, container_plan, free_port, new_replica_id, parent_env
from cortex.runtime.process import ProcessPlan
from cortex.runtime.removal import Candidate, removal_order
from cortex.runtime.replica import Replica
from cortex.spec import ApiSpec

log = logging.getLogger(__name__)

#: how long a roll waits for a new replica to be ready before it replaces an old one anyway
ROLL_READY_TIMEOUT = 600.0
#: the folder of the state directory where every running process is recorded (:mod:`cortex.runtime.orphans`)
PID_DIR = "pids"


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterEnv:
    """What every container is told about its cluster.

    Attributes:
        gateway_url: ``CORTEX_GATEWAY_URL``, for chaining (``POST $CORTEX_GATEWAY_URL/<api>``).
        cli_config_dir: ``CORTEX_CLI_CONFIG_DIR``, a folder whose ``cli.yaml`` the cluster writes.
        version: ``CORTEX_VERSION``.
        api_key: ``CORTEX_API_KEY``, the key the gateway accepts from replicas (chaining), if any.
    """

    gateway_url: str
    cli_config_dir: Path
    version: str
    api_key: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class LocalSettings:
    """Tuning of the local runtime; times in seconds.

    Attributes:
        lease_seconds: Passed to each dequeuer.
        grace_period: Drain time of a replica being stopped: its dequeuer's, then each container's.
        restart_backoff_max: The longest wait before restarting a crashed process.
        health_interval: How often each replica's readiness (its dequeuer's ``/healthz``) is polled.
        python: The interpreter that runs ``python -m cortex.dequeuer``.
    """

    lease_seconds: float = 30.0
    grace_period: float = 30.0
    restart_backoff_max: float = 30.0
    health_interval: float = 0.5
    python: str = sys.executable


@dataclasses.dataclass(slots=True)
class _Api:
    spec: ApiSpec
    deployment_id: str
    config_dir: Path
    requested: int
    #: bumped by every apply that changes the spec; replicas of an older revision are out of date
    revision: int = 0
    replicas: dict[str, Replica] = dataclasses.field(default_factory=dict)
    #: the replica a roll has started and waits for; not counted until it is ready
    surge: Replica | None = None
    roll: asyncio.Task[None] | None = None
    #: held while deciding which replicas to start or stop, so two decisions never pick the same one
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    #: set by delete: from then on nothing starts for this API
    deleted: bool = False

    def counted(self) -> list[Replica]:
        """The replicas that count toward ``requested``: not stopping, not a roll's unready newcomer."""
        return [r for r in self.replicas.values() if not r.stopping and r is not self.surge]

    def out_of_date(self) -> list[Replica]:
        return [r for r in self.counted() if r.plan.revision != self.revision]


class LocalRuntime(Runtime):
    """Runs each API's replicas as host processes on this machine.

    Args:
        state_dir: The cluster's state folder: replicas' folders and logs go under it.
        urls: The cluster's backends, passed to every dequeuer.
        env: What containers are told about the cluster.
        settings: Tuning.
    """

    def __init__(
        self, state_dir: Path, urls: BackendUrls, env: ClusterEnv, settings: LocalSettings = LocalSettings()
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.urls = urls
        self.env = env
        self.settings = settings
        self._apis: dict[str, _Api] = {}
        self._ports: dict[str, tuple[int, int]] = {}  # replica id -> its ports, never handed out twice
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False
        #: why images cannot run here (no engine, or one that does not work): said when a deploy needs one
        self.engine_problem = "no container engine is used by this runtime"

    async def apply(self, spec: ApiSpec, *, deployment_id: str, config_dir: Path, replicas: int) -> None:
        """Run ``spec`` at ``replicas`` replicas of ``deployment_id``; a changed API rolls in the background.

        Raises:
            CortexError: A container has no command, or ``config_dir`` does not exist; nothing is started.
        """
        if self._closed:
            raise CortexError("the local runtime is closed")
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0 (got {replicas})")
        config_dir = config_dir.resolve()
        self.check(spec, config_dir)
        api = self._apis.get(spec.name)
        if api is None:
            api = self._apis[spec.name] = _Api(spec, deployment_id, config_dir, replicas)
        else:
            await self._cancel_roll(api)  # the newer apply decides what to roll
            same = deployment_id == api.deployment_id and config_dir == api.config_dir
            if not same or spec.spec_id() != api.spec.spec_id():
                api.spec, api.deployment_id, api.config_dir = spec, deployment_id, config_dir
                api.revision += 1
                log.info("api %s: rolling to deployment %s", spec.name, deployment_id)
        async with api.lock:
            api.requested = replicas
            await self._reconcile(api)
            if api.out_of_date():
                api.roll = asyncio.create_task(self._roll(api), name=f"roll {spec.name}")

    def check(self, spec: ApiSpec, config_dir: Path) -> None:
        """Raise :class:`CortexError` naming the API and container unless every container of ``spec`` can run here."""
        check_runnable(spec, config_dir, why_no_engine=self.engine_problem)

    async def scale(self, api: str, replicas: int) -> None:
        """Set ``api``'s requested replicas: start new ones, or drain the least useful ones in the background.

        Raises:
            NotFound: ``api`` is not running here.
        """
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0 (got {replicas})")
        state = self._api(api)
        async with state.lock:
            state.requested = replicas
            await self._reconcile(state)

    async def delete(self, api: str) -> None:
        """Drain and stop every replica of ``api`` (all at once) and forget it; unknown APIs are ignored."""
        state = self._apis.pop(api, None)
        if state is None:
            return
        state.deleted = True
        await self._cancel_roll(state)
        await asyncio.gather(*(self._retire(state, r) for r in list(state.replicas.values())))
        with contextlib.suppress(OSError):  # only if empty: another runtime may share the state folder
            (self.state_dir / "replicas" / api).rmdir()
        log.info("api %s: deleted", api)

    def replicas(self, api: str) -> list[ReplicaStatus]:
        """The replicas of ``api`` now, oldest first (empty for an unknown API)."""
        state = self._apis.get(api)
        return [] if state is None else [r.status(state.revision) for r in state.replicas.values()]

    async def loads(self, api: str) -> dict[str, int | None]:
        """What each replica's dequeuer says it runs (its ``/status``), asked of all at once."""
        state = self._apis.get(api)
        replicas = [] if state is None else list(state.replicas.values())
        found = await asyncio.gather(*(replica.in_flight() for replica in replicas))
        return {replica.id: load for replica, load in zip(replicas, found, strict=True)}

    def requested(self, api: str) -> int:
        """The replica count last asked for (0 for an unknown API)."""
        state = self._apis.get(api)
        return 0 if state is None else state.requested

    def metrics_urls(self) -> dict[str, str]:
        """Each running replica's dequeuer ``/metrics`` URL, by replica id (every API's)."""
        return {
            replica_id: f"http://127.0.0.1:{replica.plan.admin_port}/metrics"
            for state in self._apis.values()
            for replica_id, replica in state.replicas.items()
        }

    def pids(self, api: str) -> list[int]:
        """The ids of ``api``'s running processes, each the leader of its process group (for diagnostics)."""
        state = self._apis.get(api)
        return [] if state is None else [pid for r in state.replicas.values() for pid in r.pids()]

    def logs(
        self,
        api: str,
        *,
        follow: bool,
        tail: int | None = None,
        request_id: str | None = None,
        replica: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """Lines of every container and dequeuer log of ``api``, each prefixed ``[<replica> <name>]``.

        Replicas already stopped are included while their files remain. With ``follow``, lines
        appended later, and new replicas' files, are yielded until the consumer stops iterating.
        """
        logs = self.state_dir / "logs"
        if request_id is None:
            return read_logs(logs / api, follow=follow, tail=tail, replica=replica)
        # one request's lines: the gateway's too (its log is the cluster's, shared by every API)
        also = () if replica is not None else (logs / "gateway.log",)
        return read_logs(logs / api, follow=follow, tail=tail, also=also, mentioning=request_id, replica=replica)

    async def aclose(self) -> None:
        """Drain and stop every replica of every API at once; leave no process behind."""
        self._closed = True
        await asyncio.gather(*(self.delete(api) for api in list(self._apis)))
        while self._stopping:
            await asyncio.gather(*self._stopping)

    def _api(self, name: str) -> _Api:
        state = self._apis.get(name)
        if state is None:
            raise NotFound(f"api {name} is not running on the local runtime")
        return state

    async def _reconcile(self, api: _Api) -> None:
        """Start or drain replicas until as many count as requested; call with ``api.lock`` held."""
        if api.deleted:  # delete is stopping every replica; starting one now would leave it behind
            return
        counted = api.counted()
        for _ in range(api.requested - len(counted)):
            self._start_replica(api)
        if len(counted) > api.requested:
            for victim in await self._choose(counted, len(counted) - api.requested, api.revision):
                self._retire(api, victim)

    async def _choose(self, candidates: list[Replica], count: int, revision: int) -> list[Replica]:
        """The ``count`` replicas best removed (see :mod:`cortex.runtime.removal`)."""
        loads = await asyncio.gather(*(r.in_flight() for r in candidates))
        by_id = {r.id: r for r in candidates}
        order = removal_order(
            Candidate(r.id, r.ready, load, r.plan.revision == revision, r.started_at)
            for r, load in zip(candidates, loads, strict=True)
        )
        return [by_id[c.id] for c in order[:count]]

    def _start_replica(self, api: _Api) -> Replica:
        replica = Replica(self._plan(api))
        api.replicas[replica.id] = replica
        replica.start()
        return replica

    def _retire(self, api: _Api, replica: Replica) -> asyncio.Task[None]:
        """Begin draining ``replica`` (it stops counting at once); the task ends once it is gone."""
        stopping = replica.begin_stop()

        async def finish() -> None:
            try:
                await stopping
            except Exception:  # one replica's failure to stop must not stop the others from stopping
                log.exception("%s: stopping failed", replica.id)
            finally:
                if api.replicas.get(replica.id) is replica:
                    del api.replicas[replica.id]
                self._ports.pop(replica.id, None)

        task = asyncio.create_task(finish(), name=f"retire {replica.id}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return task

    async def _roll(self, api: _Api) -> None:
        """Replace out-of-date replicas one at a time: start one, wait until it is ready, drain an old one."""
        try:
            await self._replace_out_of_date(api)
        except Exception:  # nothing awaits this task: say why the roll stopped
            log.exception("api %s: the roll failed", api.spec.name)

    async def _replace_out_of_date(self, api: _Api) -> None:
        name = api.spec.name
        while True:
            async with api.lock:
                if api.deleted:
                    return
                old = api.out_of_date()
                if not old:
                    await self._reconcile(api)
                    log.info("api %s: roll to deployment %s done", name, api.deployment_id)
                    return
                if len(api.counted()) > api.requested:  # scaled in meanwhile: drain without replacing
                    self._retire(api, (await self._choose(old, 1, api.revision))[0])
                    continue
                surge = api.surge = self._start_replica(api)
            try:
                if not await surge.wait_ready(ROLL_READY_TIMEOUT) and not surge.stopping:
                    log.warning(
                        "api %s: new replica %s not ready after %gs (%s); replacing an old one anyway",
                        name,
                        surge.id,
                        ROLL_READY_TIMEOUT,
                        surge.status(api.revision).detail,
                    )
            finally:
                api.surge = None
            async with api.lock:
                if old := api.out_of_date():
                    self._retire(api, (await self._choose(old, 1, api.revision))[0])

    async def _cancel_roll(self, api: _Api) -> None:
        roll, api.roll = api.roll, None
        if roll is not None and not roll.done():
            roll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await roll

    def _plan(self, api: _Api) -> ReplicaPlan:
        spec, settings = api.spec, self.settings
        replica_id = new_replica_id(spec.name, api.deployment_id, api.replicas)
        user_port = free_port(self._ports_in_use())
        admin_port = free_port({user_port, *self._ports_in_use()})
        self._ports[replica_id] = (user_port, admin_port)
        folder = self.state_dir / "replicas" / spec.name / replica_id
        log_dir = self.state_dir / "logs" / spec.name / replica_id
        pid_dir = self.state_dir / PID_DIR
        parent = parent_env()
        cortex = {
            "CORTEX_PORT": str(user_port),
            "CORTEX_VERSION": self.env.version,
            "CORTEX_CLI_CONFIG_DIR": str(self.env.cli_config_dir),
            "CORTEX_GATEWAY_URL": self.env.gateway_url,
            # the replica's dequeuer, for progress reports (POST $CORTEX_DEQUEUER_URL/progress)
            "CORTEX_DEQUEUER_URL": f"http://127.0.0.1:{admin_port}",
            "CORTEX_MNT": str(folder / "mnt"),
            "CORTEX_API_NAME": spec.name,
            "CORTEX_REPLICA_ID": replica_id,
        }
        if self.env.api_key is not None:
            cortex["CORTEX_API_KEY"] = self.env.api_key
        options = {
            "--api": spec.name,
            "--user-port": str(user_port),
            "--admin-port": str(admin_port),
            "--queue": self.urls.queue,
            "--store": self.urls.store,
            "--blobs": self.urls.blobs,
            "--lease-seconds": str(settings.lease_seconds),
            "--grace-period": str(settings.grace_period),
        }
        dequeuer_argv = (settings.python, "-m", "cortex.dequeuer", *(x for item in options.items() for x in item))
        return ReplicaPlan(
            id=replica_id,
            api=spec.name,
            deployment_id=api.deployment_id,
            revision=api.revision,
            pod_port=spec.pod.port,
            user_port=user_port,
            admin_port=admin_port,
            folder=folder,
            containers=tuple(
                container_plan(c, parent=parent, cortex=cortex, cwd=api.config_dir, log_dir=log_dir, pid_dir=pid_dir)
                for c in spec.pod.containers
            ),
            # run in the state folder, not the user's: a "cortex" folder there must not shadow the package
            dequeuer=ProcessPlan(
                "dequeuer", dequeuer_argv, parent | cortex, self.state_dir, log_dir / "dequeuer.log", pid_dir
            ),
            grace_period=settings.grace_period,
            restart_backoff_max=settings.restart_backoff_max,
            health_interval=settings.health_interval,
        )

    def _ports_in_use(self) -> set[int]:
        return {port for ports in self._ports.values() for port in ports}
