"""``pod.containers[]``: what runs, with which resources, and how cortex checks on it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from cortex.spec.durations import parse_cpu, parse_memory
from cortex.spec.fields import Command, ContainerName, Cpu, Env, Memory, Port, Section, Shm, spec_error

_STRICT = ConfigDict(extra="forbid", frozen=True)


class HttpGet(BaseModel):
    """An HTTP GET on the container; any 2xx or 3xx status passes."""

    model_config = _STRICT

    port: Port
    path: StrictStr = "/"

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f'must start with "/" (got "{value}")')
        return value


class TcpSocket(BaseModel):
    """A TCP connect to the container; passes when the port accepts a connection."""

    model_config = _STRICT

    port: Port


class ExecAction(BaseModel):
    """A command run inside the container, without a shell; exit status 0 passes."""

    model_config = _STRICT

    command: Annotated[Command, Field(min_length=1)]


class Probe(BaseModel):
    """A readiness or liveness probe: one handler plus Kubernetes' timing fields.

    Unlike Cortex, the timeout, period and thresholds must be at least 1: Cortex accepted 0, and
    its dequeuer's ticker panicked on a zero period.
    """

    model_config = _STRICT

    http_get: HttpGet | None = None
    tcp_socket: TcpSocket | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: Annotated[StrictInt, Field(ge=0)] = 0
    timeout_seconds: Annotated[StrictInt, Field(ge=1)] = 1
    period_seconds: Annotated[StrictInt, Field(ge=1)] = 10
    success_threshold: Annotated[StrictInt, Field(ge=1)] = 1
    failure_threshold: Annotated[StrictInt, Field(ge=1)] = 3

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        handlers = [name for name in ("http_get", "tcp_socket", "exec") if getattr(self, name) is not None]
        if len(handlers) != 1:
            got = "none" if not handlers else ", ".join(handlers)
            raise ValueError(f"must have exactly one of http_get, tcp_socket, exec (got {got})")
        return self


class PreStop(BaseModel):
    """A hook run before the container is stopped: an HTTP GET or a command, not both."""

    model_config = _STRICT

    http_get: HttpGet | None = None
    exec: ExecAction | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> PreStop:
        if (self.http_get is None) == (self.exec is None):
            got = "both" if self.http_get is not None else "none"
            raise ValueError(f"must have exactly one of http_get, exec (got {got})")
        return self


class Compute(BaseModel):
    """Resources requested for one container; quantities are kept as the user wrote them."""

    model_config = _STRICT

    cpu: Cpu | None = "200m"
    mem: Memory | None = None
    gpu: Annotated[StrictInt, Field(ge=0)] = 0
    inf: Annotated[StrictInt, Field(ge=0)] = 0
    shm: Shm | None = None

    @model_validator(mode="after")
    def _shm_fits(self) -> Compute:
        if self.shm is not None and self.mem is not None and parse_memory(self.shm) > parse_memory(self.mem):
            raise spec_error(f'must not exceed mem (got "{self.shm}" > "{self.mem}")', "shm")
        return self

    @property
    def cpu_millicores(self) -> int | None:
        """The CPU request in millicores, or None for no request."""
        return None if self.cpu is None else parse_cpu(self.cpu)

    @property
    def mem_bytes(self) -> int | None:
        """The memory request in bytes, or None for no request."""
        return None if self.mem is None else parse_memory(self.mem)

    @property
    def shm_bytes(self) -> int | None:
        """The size of ``/dev/shm`` in bytes, or None for the default."""
        return None if self.shm is None else parse_memory(self.shm)


class Container(BaseModel):
    """One container of the pod.

    ``image`` is what Kubernetes runs; ``command`` (with ``args``) is what the local runtime runs.
    Cortex required ``image``; here a container needs at least one of the two.
    """

    model_config = _STRICT

    name: ContainerName
    image: StrictStr | None = None
    command: Command | None = None
    args: Command | None = None
    env: Env = Field(default_factory=dict)
    compute: Annotated[Compute, Section] = Compute()
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    pre_stop: PreStop | None = None

    @field_validator("image")
    @classmethod
    def _image_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("readiness_probe", mode="before")
    @classmethod
    def _readiness_handlers(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        if value.get("exec") is not None:
            # The dequeuer, not the kubelet, runs AsyncAPI readiness probes, and it can't exec.
            raise spec_error("AsyncAPI readiness probes can't use exec; use http_get or tcp_socket", "exec")
        handlers = [name for name in ("http_get", "tcp_socket") if value.get(name) is not None]
        if len(handlers) != 1:
            got = "none" if not handlers else ", ".join(handlers)
            raise ValueError(f"must have exactly one of http_get, tcp_socket (got {got})")
        return value

    @model_validator(mode="after")
    def _runnable(self) -> Container:
        if self.image is None and not self.command:
            raise ValueError(
                "needs an image (run on Kubernetes) or a command (run by the local runtime); neither is set"
            )
        return self
