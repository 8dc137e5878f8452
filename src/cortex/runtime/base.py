"""The runtime interface: what the operator and the autoscaler ask of wherever replicas run.

A replica is the user's containers plus one dequeuer. A runtime keeps, per API, a requested
replica count and a deployment id; replicas of an older deployment id are out of date and are
replaced one by one (start a new one, wait until it is ready, drain an old one).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self

from cortex.spec import ApiSpec


class ReplicaState(enum.StrEnum):
    """Where a replica is in its life (the states ``cortex describe`` counts, as Cortex's)."""

    PENDING = "pending"  #: requested, nothing started yet
    CREATING = "creating"  #: processes starting
    NOT_READY = "not_ready"  #: running, readiness probes not passing yet
    READY = "ready"  #: taking requests
    READY_OUT_OF_DATE = "ready_out_of_date"  #: taking requests, from an older deployment
    TERMINATING = "terminating"  #: draining, then stopping
    FAILED = "failed"  #: a container keeps crashing (restarting with backoff)
    ERR_IMAGE_PULL = "err_image_pull"  #: an image cannot be pulled (Cortex's replica_counts key; retried with backoff)


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One replica as the runtime sees it."""

    id: str
    api: str
    state: ReplicaState
    deployment_id: str
    started_at: float
    restarts: int = 0  #: container restarts after crashes or failed liveness probes
    detail: str = ""  #: why it is not ready or failing, in words


class Runtime(abc.ABC):
    """Runs replicas; every method returns promptly and the work proceeds in the background."""

    @abc.abstractmethod
    async def apply(self, spec: ApiSpec, *, deployment_id: str, config_dir: Path, replicas: int) -> None:
        """Run ``spec`` at ``replicas`` replicas of ``deployment_id``.

        A new API starts ``replicas`` replicas. For a known API with another ``deployment_id``,
        replicas are replaced one at a time without losing a request. ``config_dir`` is the folder
        of the configuration file: the local runtime runs commands there.
        """

    def check(self, spec: ApiSpec, config_dir: Path) -> None:
        """Raise :class:`~cortex.errors.CortexError` if ``spec`` cannot run here, naming the API and container.

        Called before a deploy stores anything, so that a configuration that cannot run is refused whole.
        """
        return None  # every API runs (Kubernetes): nothing to refuse

    @abc.abstractmethod
    async def scale(self, api: str, replicas: int) -> None:
        """Set ``api``'s requested replicas; removing prefers idle replicas and drains them."""

    @abc.abstractmethod
    async def delete(self, api: str) -> None:
        """Drain and stop every replica of ``api``; returns once they are gone."""

    @abc.abstractmethod
    def replicas(self, api: str) -> list[ReplicaStatus]:
        """The replicas of ``api`` now (empty for an unknown API)."""

    @abc.abstractmethod
    def requested(self, api: str) -> int:
        """The replica count last asked for (0 for an unknown API)."""

    async def loads(self, api: str) -> dict[str, int | None]:
        """Requests each replica of ``api`` runs now, by replica id; None where its dequeuer did not say.

        By default nothing is known. Runtimes ask each dequeuer (``GET /status`` on its admin port),
        as they do to remove idle replicas first.
        """
        return {replica.id: None for replica in self.replicas(api)}

    @abc.abstractmethod
    def logs(
        self,
        api: str,
        *,
        follow: bool,
        tail: int | None = None,
        request_id: str | None = None,
        replica: str | None = None,
    ) -> AsyncIterator[str]:
        """Log lines of every container and dequeuer of ``api``, each prefixed ``[<replica> <container>]``.

        With ``request_id``, only the lines that mention it, the gateway's included where the runtime has them.
        With ``replica``, only that replica's lines (``tail`` then counts its lines only).
        """

    def notes(self, spec: ApiSpec) -> list[str]:
        """What this runtime leaves out of ``spec``, in words for ``cortex deploy``'s output (none: all of it).

        Only Kubernetes schedules pods, so every other runtime ignores the ``kubernetes`` section.
        """
        if spec.kubernetes.is_default():
            return []
        return ["its kubernetes section (scheduling, GPU resource names) applies only on Kubernetes: ignored here"]

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Drain and stop everything this runtime started; leave no process behind."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
