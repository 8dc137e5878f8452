"""What a replica of the local runtime runs: its processes, their environment, ports and folders.

A container gets the parent's environment (so ``PATH``, ``HOME`` and ``VIRTUAL_ENV`` work), then its
own ``env``, then the ``CORTEX_*`` variables of the worker contract (DESIGN §3); its ``command`` and
``args`` are ``$(VAR)``-expanded against that environment and run without a shell.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import string
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Protocol

from cortex.errors import CortexError
from cortex.runtime.expansion import expand, expand_env
from cortex.runtime.process import ProcessPlan
from cortex.spec import ApiSpec, Container, PreStop, Probe


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerPlan:
    """One container of a replica: its process, and what the kubelet would run against it."""

    process: ProcessPlan
    liveness_probe: Probe | None = None
    pre_stop: PreStop | None = None
    #: returns once the container runs (an engine's container exists a moment after its client starts);
    #: its liveness probe starts then, as the kubelet's does
    started: Callable[[], Awaitable[None]] | None = None


class SandboxError(CortexError):
    """A replica's sandbox could not be made; ``reason`` is Kubernetes' word for it (``ErrImagePull``)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class Sandbox(Protocol):
    """What a replica's containers run inside, made before they start and removed after they stop (a pod)."""

    async def prepare(self, report: Callable[[str], None]) -> None:
        """Make the sandbox (pull images, create the pod), saying what it does through ``report``.

        Raises:
            SandboxError: It cannot be made now; the replica tries again with backoff.
        """

    async def remove(self) -> None:
        """Remove the sandbox and whatever is left in it; never raises."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaPlan:
    """Everything one replica runs, fully resolved (ports chosen, commands expanded).

    Attributes:
        id: ``<api>-<deployment id[:6]>-<5 random letters>``.
        api: The API's name.
        deployment_id: The deployment this replica belongs to.
        revision: The runtime's count of the API's spec changes this replica runs; an older one is out of date.
        pod_port: ``pod.port``: probes and hooks aimed at it reach ``user_port``.
        user_port: The replica's ``CORTEX_PORT``.
        admin_port: Where its dequeuer serves ``/healthz`` and ``/status``.
        folder: The replica's private folder (holding ``CORTEX_MNT``), removed when it stops.
        containers: The user's containers.
        dequeuer: The dequeuer process.
        grace_period: Seconds to drain, for the dequeuer and then for each container.
        restart_backoff_max: The longest wait before restarting a crashed process.
        health_interval: Seconds between two questions to the dequeuer's ``/healthz``.
        sandbox: What the containers run in (a pod), if anything: made before they start.
    """

    id: str
    api: str
    deployment_id: str
    revision: int
    pod_port: int
    user_port: int
    admin_port: int
    folder: Path
    containers: tuple[ContainerPlan, ...]
    dequeuer: ProcessPlan
    grace_period: float = 30.0
    restart_backoff_max: float = 30.0
    health_interval: float = 0.5
    sandbox: Sandbox | None = None


def check_runnable(spec: ApiSpec, config_dir: Path, *, why_no_engine: str = "") -> None:
    """Raise :class:`CortexError` unless every container of ``spec`` can run as a local process.

    ``why_no_engine`` says why an image cannot run instead (no engine found, or it does not work).
    """
    for container in spec.pod.containers:
        if not container.command:
            raise CortexError(
                f"api {spec.name}, container {container.name}: no command to run, and its image"
                f" {container.image} cannot run here: {why_no_engine or 'no container engine'} (install podman or"
                " docker and start the cluster again, see docs/containers.md; or give the container a command)"
            )
    if not config_dir.is_dir():
        raise CortexError(f"api {spec.name}: the configuration folder {config_dir} does not exist")


#: the cluster's secrets, which its children are not given (replicas get their own ``CORTEX_API_KEY``)
SECRET_VARIABLES = frozenset({"CORTEX_API_KEYS", "CORTEX_OPERATOR_TOKEN", "CORTEX_GATEWAY_INTERNAL_KEYS"})


def parent_env() -> dict[str, str]:
    """This process's environment less its secrets: the base of every child's (``CORTEX_LOG_LEVEL`` default INFO)."""
    env = {key: value for key, value in os.environ.items() if key not in SECRET_VARIABLES}
    env.setdefault("CORTEX_LOG_LEVEL", "INFO")
    # `python` and `cortex` in a container's command mean the cluster's own interpreter and CLI, as the
    # image's would on Kubernetes, even when the cluster was started as .venv/bin/cortex without activating
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir)])
    return env


def container_plan(
    container: Container,
    *,
    parent: Mapping[str, str],
    cortex: Mapping[str, str],
    cwd: Path,
    log_dir: Path,
    pid_dir: Path | None = None,
) -> ContainerPlan:
    """One container's process: environment ``parent`` + its ``env`` + ``cortex``, argv expanded against it."""
    own = expand_env(container.env, {**parent, **cortex})
    env = {**parent, **own, **cortex}
    argv = tuple(expand(arg, env) for arg in [*(container.command or []), *(container.args or [])])
    process = ProcessPlan(container.name, argv, env, cwd, log_dir / f"{container.name}.log", pid_dir)
    return ContainerPlan(process, container.liveness_probe, container.pre_stop)


def new_replica_id(api: str, deployment_id: str, taken: Collection[str]) -> str:
    """``<api>-<deployment_id[:6]>-<5 random lowercase letters>``, not one of ``taken``."""
    while True:
        suffix = "".join(secrets.choice(string.ascii_lowercase) for _ in range(5))
        replica_id = f"{api}-{deployment_id[:6]}-{suffix}"
        if replica_id not in taken:
            return replica_id


def free_port(in_use: Collection[int]) -> int:
    """A port free on 127.0.0.1 now (the kernel picks it), not one of ``in_use``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in in_use:
            return port
