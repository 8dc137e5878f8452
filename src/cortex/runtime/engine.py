"""A container engine, Podman or Docker, driven through its command line.

The engine's CLI, not its REST API: both engines ship one with the same verbs (``run``, ``rm``,
``ps``, ``logs``, ``exec``), it needs no client library and no socket permissions beyond the
CLI's own, and what it runs can be shown to the user as a command line (``cortex describe``,
the tests of the Docker arguments, which run where no Docker engine is).

A replica is a pod as on Kubernetes: Podman's own pods; on Docker, an infrastructure container
whose network namespace the replica's containers join (``--network container:<infra>``). Every
object carries the label :data:`STATE_LABEL` with the cluster's state directory, so a cluster
removes exactly its own, and ``cortex cluster down`` or a restart after ``kill -9`` finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import resource
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from cortex.errors import CortexError

#: the label naming the state directory of the cluster an object belongs to
STATE_LABEL = "dev.cortex-async.state-dir"
#: the label naming the replica an object belongs to
REPLICA_LABEL = "dev.cortex-async.replica"
#: Docker: the label of the infrastructure container that stands for a pod
INFRA_LABEL = "dev.cortex-async.infra"
#: what ``pod.port`` of a replica is published on, on this machine
PUBLISH_HOST = "127.0.0.1"
#: where the host's loopback is reached from inside a pod (slirp4netns' ``allow_host_loopback``)
HOST_LOOPBACK_IN_POD = "10.0.2.2"
#: engines known, in the order a cluster picks the first one found
ENGINES = ("podman", "docker")


class EngineError(CortexError):
    """The container engine is missing, or failed a command."""


@dataclasses.dataclass(frozen=True, slots=True)
class Resources:
    """A container's ``compute``, in the engine's terms (None: no limit)."""

    cpus: float | None = None  #: the CPUs requested (a relative weight, as Kubernetes' request)
    memory: int | None = None
    shm: int | None = None
    gpus: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class RunSpec:
    """One container of a pod, ready to be run.

    Attributes:
        name: The engine's name of the container (unique on the machine).
        image: The image.
        command: Overrides the image's entrypoint (Kubernetes' ``command``); None keeps it.
        args: Overrides the image's command (Kubernetes' ``args``); None keeps it.
        env_file: A file of ``KEY=value`` lines: the container's environment (not on the command line).
        mounts: Host folder -> folder in the container.
        resources: Limits.
        labels: Labels of the container.
    """

    name: str
    image: str
    command: Sequence[str] | None
    args: Sequence[str] | None
    env_file: Path
    mounts: Mapping[Path, str]
    resources: Resources
    labels: Mapping[str, str]


class Engine:
    """Podman's command line; :class:`Docker` differs where the engines do.

    Args:
        binary: The engine's program.
    """

    name = "podman"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    @property
    def gateway_host(self) -> str:
        """The address of this machine's loopback, as seen from inside a pod."""
        return HOST_LOOPBACK_IN_POD

    def pod_create(self, pod: str, *, publish: Mapping[int, int], labels: Mapping[str, str], image: str) -> list[str]:
        """The command creating ``pod``: ``publish`` maps ports of the pod to ports on 127.0.0.1.

        ``image`` is the pod's first container's (Docker runs its infrastructure container from it).
        """
        argv = [self.binary, "pod", "create", "--name", pod, *_labels(labels)]
        # slirp4netns: the pod reaches this machine's loopback (the gateway, the operator) as 10.0.2.2
        argv += ["--network", "slirp4netns:allow_host_loopback=true"]
        for pod_port, host_port in sorted(publish.items()):
            argv += ["--publish", f"{PUBLISH_HOST}:{host_port}:{pod_port}"]
        return argv

    def run(self, pod: str, spec: RunSpec) -> list[str]:
        """The command running ``spec`` in ``pod``, attached (it exits when the container does)."""
        argv = [self.binary, "run", "--rm", "--replace", "--pod", pod, *self._common(spec)]
        return [*argv, *self._image_and_command(spec)]

    def pod_remove(self, pod: str) -> list[str]:
        """The command removing ``pod`` and its containers at once (they were drained before)."""
        return [self.binary, "pod", "rm", "--force", "--ignore", "--time", "0", pod]

    def exec(self, container: str, command: Sequence[str]) -> list[str]:
        """The command running ``command`` inside ``container`` (exec probes and hooks)."""
        return [self.binary, "exec", container, *command]

    def running(self, container: str) -> list[str]:
        """The command printing ``true`` once ``container`` runs."""
        return [self.binary, "container", "inspect", "--format", "{{.State.Running}}", container]

    def image_exists(self, image: str) -> list[str]:
        """The command that succeeds when ``image`` is on this machine."""
        return [self.binary, "image", "exists", image]

    def pull(self, image: str) -> list[str]:
        """The command pulling ``image``."""
        return [self.binary, "pull", image]

    def list_pods(self, labels: Mapping[str, str]) -> list[str]:
        """The command printing the ids of the pods carrying ``labels``, one a line."""
        return [self.binary, "pod", "ps", "--quiet", *_filters(labels)]

    def list_containers(self, labels: Mapping[str, str]) -> list[str]:
        """The command printing the ids of the containers carrying ``labels``, running or not, one a line."""
        return [self.binary, "ps", "--all", "--quiet", *_filters(labels)]

    def remove_containers(self, ids: Sequence[str]) -> list[str]:
        """The command removing the containers ``ids`` at once."""
        return [self.binary, "rm", "--force", "--time", "0", *ids]

    def remove_pods(self, ids: Sequence[str]) -> list[str]:
        """The command removing the pods ``ids`` and their containers."""
        return [self.binary, "pod", "rm", "--force", "--time", "0", *ids]

    def _common(self, spec: RunSpec) -> list[str]:
        argv = ["--name", spec.name, "--env-file", str(spec.env_file), *_labels(spec.labels)]
        # signals reach the container: SIGTERM to this client is SIGTERM to the container's process
        argv += ["--sig-proxy=true", "--init=false"]
        for host, inside in spec.mounts.items():
            argv += ["--volume", f"{host}:{inside}:z"]
        limits = spec.resources
        if limits.cpus is not None:
            # compute.cpu is a request on Kubernetes, not a cap: a share of the CPUs when they are contended
            argv += ["--cpu-shares", str(max(2, round(limits.cpus * 1024)))]
        if limits.memory is not None:
            argv += ["--memory", str(limits.memory)]
        if limits.shm is not None:
            argv += ["--shm-size", str(limits.shm)]
        argv += self._gpus(limits.gpus)
        return argv

    def _gpus(self, count: int) -> list[str]:
        # Podman's documented way: CDI devices (nvidia-ctk cdi generate), one per GPU
        return [arg for index in range(count) for arg in ("--device", f"nvidia.com/gpu={index}")]

    def _image_and_command(self, spec: RunSpec) -> list[str]:
        argv: list[str] = []
        if spec.command:
            # an entrypoint of one word, the rest before the args: Kubernetes' command, then args
            argv += ["--entrypoint", spec.command[0], spec.image, *spec.command[1:]]
            argv += list(spec.args or [])
        else:
            argv += [spec.image, *(spec.args or [])]
        return argv


class Docker(Engine):
    """Docker's command line: no pods, so an infrastructure container holds each replica's network."""

    name = "docker"

    @property
    def gateway_host(self) -> str:
        # Docker's documented name of the host; the gateway must listen where the bridge reaches it
        return "host.docker.internal"

    def pod_create(self, pod: str, *, publish: Mapping[int, int], labels: Mapping[str, str], image: str) -> list[str]:
        """An infrastructure container named ``pod``, sleeping, whose network the pod's containers join."""
        argv = [self.binary, "run", "--detach", "--name", pod, *_labels({**labels, INFRA_LABEL: "true"})]
        argv += ["--add-host", "host.docker.internal:host-gateway", "--init"]
        for pod_port, host_port in sorted(publish.items()):
            argv += ["--publish", f"{PUBLISH_HOST}:{host_port}:{pod_port}"]
        return [*argv, "--entrypoint", "sleep", image, "infinity"]

    def run(self, pod: str, spec: RunSpec) -> list[str]:
        argv = [self.binary, "run", "--rm", "--network", f"container:{pod}", *self._common(spec)]
        return [*argv, *self._image_and_command(spec)]

    def pod_remove(self, pod: str) -> list[str]:
        return [self.binary, "rm", "--force", pod]

    def image_exists(self, image: str) -> list[str]:
        return [self.binary, "image", "inspect", "--format", "{{.Id}}", image]

    def list_pods(self, labels: Mapping[str, str]) -> list[str]:
        return self.list_containers({**labels, INFRA_LABEL: "true"})

    def remove_containers(self, ids: Sequence[str]) -> list[str]:
        return [self.binary, "rm", "--force", *ids]

    def remove_pods(self, ids: Sequence[str]) -> list[str]:
        return self.remove_containers(ids)

    def _gpus(self, count: int) -> list[str]:
        # Docker's documented way: --gpus with the NVIDIA container toolkit
        return ["--gpus", str(count)] if count else []


def _labels(labels: Mapping[str, str]) -> list[str]:
    return [arg for key, value in sorted(labels.items()) for arg in ("--label", f"{key}={value}")]


def _filters(labels: Mapping[str, str]) -> list[str]:
    return [arg for key, value in sorted(labels.items()) for arg in ("--filter", f"label={key}={value}")]


def find_engine(choice: str | None) -> Engine | None:
    """The engine named ``choice``, or the first of :data:`ENGINES` found on ``PATH`` (None: none is).

    Raises:
        EngineError: ``choice`` is unknown or not installed.
    """
    if choice is not None and choice not in ENGINES:
        raise EngineError(f"unknown container engine {choice!r} (choose {' or '.join(ENGINES)})")
    for name in [choice] if choice is not None else ENGINES:
        binary = shutil.which(name)
        if binary is not None:
            return Docker(binary) if name == "docker" else Engine(binary)
    if choice is not None:
        raise EngineError(f"container engine {choice} is not installed (not found on PATH)")
    return None


async def run_engine(argv: Sequence[str], *, timeout: float = 120.0) -> tuple[int, str]:
    """Run one engine command to its end; ``(exit code, output)``, the code -1 on timeout.

    Raises:
        EngineError: The engine's program could not be started.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        raise EngineError(f"could not run {argv[0]}: {exc.strerror or exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"{' '.join(argv[:3])} did not finish within {timeout:g}s"
    return process.returncode or 0, output.decode("utf-8", errors="replace").strip()


async def remove_labelled(engine: Engine, labels: Mapping[str, str]) -> int:
    """Remove every pod and container carrying ``labels``; the number of objects removed."""
    removed = 0
    for lister, remover in ((engine.list_pods, engine.remove_pods), (engine.list_containers, engine.remove_containers)):
        code, output = await run_engine(lister(labels))
        if code != 0:
            raise EngineError(f"{engine.name} could not list the cluster's objects: {output}")
        ids = output.split()
        if ids:
            code, output = await run_engine(remover(ids))
            if code != 0:
                raise EngineError(f"{engine.name} could not remove the cluster's objects: {output}")
            removed += len(ids)
    return removed


#: what an engine says on a machine like a sandbox with hybrid cgroups, and what to set there
_ADVICE = (
    (
        "cgroups in hybrid mode",
        "Debian's default OCI runtime, crun, cannot run on this machine's hybrid cgroups: install runc"
        ' (apt-get install runc) and set [engine] runtime = "runc" in /etc/containers/containers.conf',
    ),
    (
        "rlimit",
        "the engine raises the containers' open-file limit above this machine's hard limit: set"
        ' [containers] default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"] (at most `ulimit -Hn`)'
        " in /etc/containers/containers.conf",
    ),
    (
        "catatonit",
        "pods need catatonit as their infrastructure process: apt-get install catatonit",
    ),
)


def advice(output: str) -> str:
    """What to set, for an engine failure this machine is known to cause (empty when none is known)."""
    hints = [hint for marker, hint in _ADVICE if marker in output.lower()]
    return "".join(f" (hint: {hint})" for hint in hints)


#: the open-file limit Podman gives containers unless containers.conf says otherwise
PODMAN_DEFAULT_NOFILE = 1048576
#: where Podman reads containers.conf (as root; a user's own file is read too)
CONTAINERS_CONF = (
    Path("/usr/share/containers/containers.conf"),
    Path("/etc/containers/containers.conf"),
    Path.home() / ".config" / "containers" / "containers.conf",
)


def ulimits_problem(conf_files: Sequence[Path] = CONTAINERS_CONF) -> str:
    """Why Podman's containers cannot start here: its default open-file limit above this machine's hard limit.

    Empty when the hard limit allows it, or a containers.conf sets ``default_ulimits``.
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= PODMAN_DEFAULT_NOFILE:
        return ""
    for path in conf_files:
        with contextlib.suppress(OSError):
            if any(line.strip().startswith("default_ulimits") for line in path.read_text().splitlines()):
                return ""
    return f"podman raises containers' open files to {PODMAN_DEFAULT_NOFILE}, above this machine's {hard}" + advice(
        "rlimit"
    )


async def check_engine(engine: Engine) -> None:
    """Raise :class:`EngineError`, saying what to set, unless ``engine`` answers ``info``.

    On a machine with hybrid cgroups (``/sys/fs/cgroup/unified``) Podman's crun cannot start a
    container at all, and where the hard open-file limit is below Podman's default none starts
    either; both are told here, at ``cortex cluster up``, rather than at every replica.
    """
    code, output = await run_engine([engine.binary, "info"], timeout=60.0)
    if code != 0:
        raise EngineError(f"{engine.name} does not work here: `{engine.binary} info` failed: {output}{advice(output)}")
    if engine.name == "podman" and Path("/sys/fs/cgroup/unified").is_dir():
        _, runtime = await run_engine([engine.binary, "info", "--format", "{{.Host.OCIRuntime.Name}}"], timeout=60.0)
        if runtime.strip() == "crun":
            raise EngineError(f"podman cannot start containers here{advice('cgroups in hybrid mode')}")
    if engine.name == "podman" and (problem := ulimits_problem()):
        raise EngineError(f"podman cannot start containers here: {problem}")
