"""The local runtime with a container engine: an API whose containers have images runs each replica as a pod.

An API runs in pods when one of its containers has an ``image`` and no ``command`` (it can only
run from its image), or for every API when the cluster was started with ``--containers always``;
then each of its containers runs from its image (``command``/``args`` override the entrypoint, as
on Kubernetes). Other APIs run as host processes, as on :class:`LocalRuntime`.

Each replica is a pod, as on Kubernetes: one network namespace (the server listens on ``pod.port``
as configured, several replicas each on 8080), ``/mnt`` a folder private to the replica shared by
its containers and removed with it, ``compute`` turned into the engine's limits, and the
``CORTEX_*`` variables of the worker contract, the gateway and the ``cli.yaml`` reachable from
inside. The dequeuer stays a host process, as for the process runtime, and reaches the pod through
``pod.port`` published on a free port of 127.0.0.1: the same dequeuer, probes, drain and logs for
both kinds of replica, and no cortex-async image to build or pull.

The supervised process of a container is the engine's attached ``run`` client: the container's
output is its log file (``cortex logs``), its exit is the container's (crash restarts with
backoff), and SIGTERM to it is SIGTERM to the container (drain, ``pre_stop`` first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import os
import urllib.parse
from pathlib import Path
from typing import Literal, TypeVar

import yaml

from cortex.backends import BackendUrls
from cortex.errors import CortexError
from cortex.runtime.engine import REPLICA_LABEL, STATE_LABEL, Engine, Resources, RunSpec, run_engine
from cortex.runtime.expansion import expand, expand_env
from cortex.runtime.local import ClusterEnv, LocalRuntime, LocalSettings, _Api
from cortex.runtime.plan import ContainerPlan, ReplicaPlan, check_runnable, parent_env
from cortex.runtime.pods import Pod
from cortex.spec import ApiSpec, Container, PreStop, Probe

#: where the replica's private folder is mounted in each of its containers (Kubernetes' emptyDir)
MNT = "/mnt"
#: where the pod's ``cli.yaml`` is mounted (``CORTEX_CLI_CONFIG_DIR``)
CLI_DIR = "/cortex/cli"
#: ``--containers``: ``auto`` runs only what has no command from its image; ``always`` every container with an image
ContainerMode = Literal["auto", "always"]

_Handler = TypeVar("_Handler", Probe, PreStop)


def runs_in_pod(spec: ApiSpec, mode: ContainerMode) -> bool:
    """Whether ``spec``'s replicas are pods: some container can only run from its image, or ``always``."""
    containers = spec.pod.containers
    if mode == "always":
        return any(c.image for c in containers)
    return any(c.image and not c.command for c in containers)


def check_pod(spec: ApiSpec) -> None:
    """Raise :class:`CortexError` naming the API and container unless ``spec`` can run as a pod."""
    for container in spec.pod.containers:
        if not container.image:
            raise CortexError(
                f"api {spec.name}, container {container.name}: no image; the API runs in a pod (another of its"
                " containers runs from its image), so every container needs one"
            )
        probes = (("readiness_probe", container.readiness_probe), ("liveness_probe", container.liveness_probe))
        for kind, probe in probes:
            target = None if probe is None else probe.http_get or probe.tcp_socket
            if target is not None and target.port != spec.pod.port:
                raise CortexError(
                    f"api {spec.name}, container {container.name}: {kind} on port {target.port}: on one machine"
                    f" only pod.port ({spec.pod.port}) is published from the pod; probe that port"
                )


class ContainerRuntime(LocalRuntime):
    """A :class:`LocalRuntime` that runs APIs with images in pods on ``engine``.

    Args:
        state_dir: The cluster's state folder; its path labels every pod and container.
        urls: The cluster's backends, passed to every dequeuer.
        env: What containers are told about the cluster (loopback addresses become the pod's view of them).
        engine: Podman or Docker.
        mode: ``auto`` or ``always`` (see :func:`runs_in_pod`).
        settings: Tuning.
    """

    def __init__(
        self,
        state_dir: Path,
        urls: BackendUrls,
        env: ClusterEnv,
        engine: Engine,
        *,
        mode: ContainerMode = "auto",
        settings: LocalSettings | None = None,
    ) -> None:
        super().__init__(state_dir, urls, env, settings or LocalSettings())
        self.engine = engine
        self.mode: ContainerMode = mode
        #: every pod of this cluster carries it (``cortex cluster down`` and restarts remove by it)
        self.labels = {STATE_LABEL: str(self.state_dir)}
        self._prefix = "cx" + hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:8]

    def check(self, spec: ApiSpec, config_dir: Path) -> None:
        """Refuse what cannot run: a pod's container without an image, a probe on an unpublished port, no folder."""
        if not runs_in_pod(spec, self.mode):
            check_runnable(spec, config_dir)
            return
        check_pod(spec)
        if not config_dir.is_dir():
            raise CortexError(f"api {spec.name}: the configuration folder {config_dir} does not exist")

    def _plan(self, api: _Api) -> ReplicaPlan:
        plan = super()._plan(api)
        if not runs_in_pod(api.spec, self.mode):
            return plan
        spec = api.spec
        pod = f"{self._prefix}-{plan.id}"
        labels = {**self.labels, REPLICA_LABEL: plan.id}
        mnt = plan.folder / "mnt"
        cli = self._cli_dir(plan.folder)
        cortex = {
            "CORTEX_PORT": str(spec.pod.port),
            "CORTEX_VERSION": self.env.version,
            "CORTEX_CLI_CONFIG_DIR": CLI_DIR,
            "CORTEX_GATEWAY_URL": self._in_pod(self.env.gateway_url),
            # the dequeuer is a host process: its admin port on this machine's loopback, as seen from the pod
            "CORTEX_DEQUEUER_URL": self._in_pod(f"http://127.0.0.1:{plan.admin_port}"),
            "CORTEX_MNT": MNT,
            "CORTEX_API_NAME": spec.name,
            "CORTEX_REPLICA_ID": plan.id,
        }
        if self.env.api_key is not None:
            cortex["CORTEX_API_KEY"] = self.env.api_key
        host_env = parent_env()
        containers = []
        for container, process_plan in zip(spec.pod.containers, plan.containers, strict=True):
            name = f"{pod}-{container.name}"
            env = {**expand_env(container.env, cortex), **cortex}
            env_file = plan.folder / "env" / f"{container.name}.env"
            _write_env_file(env_file, env)
            assert container.image is not None  # check_pod refused a container without one
            run = RunSpec(
                name=name,
                image=container.image,
                command=[expand(a, env) for a in container.command] if container.command else None,
                args=[expand(a, env) for a in container.args] if container.args is not None else None,
                env_file=env_file,
                mounts={mnt: MNT, cli: CLI_DIR},
                resources=_resources(container),
                labels=labels,
            )
            process = dataclasses.replace(process_plan.process, argv=tuple(self.engine.run(pod, run)), env=host_env)
            containers.append(
                ContainerPlan(
                    process,
                    _inside(container.liveness_probe, self.engine, name),
                    _inside(container.pre_stop, self.engine, name),
                    started=functools.partial(_running, self.engine, name),
                )
            )
        sandbox = Pod(
            self.engine,
            pod,
            images=[c.image for c in spec.pod.containers if c.image],
            publish={spec.pod.port: plan.user_port},
            labels=labels,
        )
        return dataclasses.replace(plan, containers=tuple(containers), sandbox=sandbox)

    def _in_pod(self, url: str) -> str:
        """``url`` as seen from inside a pod: this machine's loopback is the engine's host address there."""
        parts = urllib.parse.urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
            return url
        netloc = self.engine.gateway_host + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def _cli_dir(self, folder: Path) -> Path:
        """A ``cli.yaml`` for the pod: the cluster's, its operator address as seen from inside."""
        target = folder / "cli"
        target.mkdir(parents=True, exist_ok=True)
        try:
            config = yaml.safe_load((self.env.cli_config_dir / "cli.yaml").read_text())
        except (OSError, yaml.YAMLError):
            config = None
        if isinstance(config, dict):
            for environment in config.get("environments") or []:
                if isinstance(environment, dict) and isinstance(environment.get("operator_endpoint"), str):
                    environment["operator_endpoint"] = self._in_pod(environment["operator_endpoint"])
            fd = os.open(target / "cli.yaml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(yaml.safe_dump(config, sort_keys=False))
        return target


#: how often a starting container is looked at
START_POLL = 0.2


async def _running(engine: Engine, container: str) -> None:
    """Return once ``container`` runs (its liveness probe starts then); its supervisor cancels this if it exits."""
    while True:
        code, output = await run_engine(engine.running(container), timeout=30.0)
        if code == 0 and output.strip() == "true":
            return
        await asyncio.sleep(START_POLL)


def _resources(container: Container) -> Resources:
    compute = container.compute
    millicores = compute.cpu_millicores
    return Resources(
        cpus=None if millicores is None else millicores / 1000,
        memory=compute.mem_bytes,
        shm=compute.shm_bytes,
        gpus=compute.gpu,
    )


def _inside(handler: _Handler | None, engine: Engine, container: str) -> _Handler | None:
    """``handler`` with its ``exec`` command run inside ``container`` (HTTP and TCP reach the published port)."""
    if handler is None or handler.exec is None:
        return handler
    command = engine.exec(container, handler.exec.command)
    return handler.model_copy(update={"exec": handler.exec.model_copy(update={"command": command})})


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    """``KEY=value`` lines, readable only by the cluster's user (it may hold the replicas' gateway key)."""
    for key, value in env.items():
        if "\n" in value:
            raise CortexError(f"environment variable {key}: a value with a line break cannot be passed to a container")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in env.items())
