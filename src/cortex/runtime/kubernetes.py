"""The Kubernetes runtime: each API a Deployment, replicas set through its scale subresource.

The runtime applies what :mod:`cortex.runtime.kubeobjects` renders (server-side apply, field
manager ``cortex``) and keeps a watch on the APIs' Deployments and pods, so ``replicas`` and
``requested`` answer from memory as the local runtime's do. Kubernetes does the rest: the rolling
update of a changed API follows its ``update_strategy``, and a removed pod gets SIGTERM, on which
its dequeuer stops leasing and drains within the grace period.

Scaling in, the runtime first asks each pod's dequeuer how many requests it holds and marks the
pods with ``controller.kubernetes.io/pod-deletion-cost`` (idle lowest), so the ReplicaSet
controller removes idle pods before busy ones (DESIGN §4).

Closing the runtime leaves the APIs running: they belong to the cluster, not to the operator's
process, and an operator that restarts picks them up again. ``delete`` removes an API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from cortex.errors import CortexError
from cortex.exposition import fetch_all
from cortex.runtime.base import ReplicaState, ReplicaStatus, Runtime
from cortex.runtime.kubelogs import ApiLogs
from cortex.runtime.kubeobjects import (
    ADMIN_PORT,
    API_LABEL,
    API_NAME,
    DELETION_COST,
    DEPLOYMENT_ID,
    KubeSettings,
    api_objects,
    check_images,
    deployment_name,
)
from cortex.runtime.kubepods import deletion_cost, replica_status
from cortex.runtime.logs import only_mentioning
from cortex.spec import ApiSpec

log = logging.getLogger(__name__)

#: what the runtime's writes are recorded as (server-side apply's field manager)
FIELD_MANAGER = "cortex"
#: the longest wait for the first list of Deployments and pods
SYNC_TIMEOUT = 30.0
#: how long ``delete`` waits past the grace period for the pods to go
DELETE_MARGIN = 30.0

#: ``(pod) -> requests its dequeuer holds`` (None: unknown); the default asks the dequeuer's ``/status``
PodLoads = Callable[[list[dict[str, Any]]], Awaitable[dict[str, int | None]]]

T = TypeVar("T")


def connect(namespace: str, *, kubeconfig: str | None = None, context: str | None = None) -> AsyncClient:
    """A client for ``namespace``: from ``kubeconfig`` if given, else the pod's service account, else ``$KUBECONFIG``.

    Raises:
        CortexError: no configuration was found, or it has no such context.
    """
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        return AsyncClient(config=config.get(context_name=context), namespace=namespace)
    except ConfigError as exc:
        where = kubeconfig or "the service account, $KUBECONFIG or ~/.kube/config"
        raise CortexError(f"no Kubernetes configuration in {where}: {exc}") from exc


async def dequeuer_loads(pods: list[dict[str, Any]], *, port: int = ADMIN_PORT) -> dict[str, int | None]:
    """Each pod's in-flight count, from its dequeuer's ``GET :15000/status`` (None where it did not answer)."""
    urls = {_name(pod): f"http://{ip}:{port}/status" for pod in pods if (ip := _pod_ip(pod))}
    loads: dict[str, int | None] = {_name(pod): None for pod in pods}
    for name, text in await fetch_all(urls):
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            loads[name] = int(json.loads(text).get("in_flight"))
    return loads


class KubernetesRuntime(Runtime):
    """Runs APIs as Deployments in ``settings.namespace`` through ``client``.

    Call :meth:`start` before use: it lists the Deployments and pods and keeps watching them.
    """

    def __init__(
        self,
        client: AsyncClient,
        settings: KubeSettings,
        *,
        pod_loads: PodLoads = dequeuer_loads,
        sync_timeout: float = SYNC_TIMEOUT,
    ) -> None:
        self.client = client
        self.settings = settings
        self.pod_loads = pod_loads
        self.sync_timeout = sync_timeout
        self._deployments: dict[str, dict[str, Any]] = {}  # by API name
        self._pods: dict[str, dict[str, Any]] = {}  # by pod name
        self._requested: dict[str, int] = {}
        self._changed = asyncio.Event()  # set on every watch event, for waits
        self._watches: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """List the APIs' Deployments and pods, and keep them current from a watch.

        Raises:
            CortexError: the Kubernetes API did not answer within ``sync_timeout`` seconds.
        """
        synced = [asyncio.Event(), asyncio.Event()]
        self._watches = [
            asyncio.create_task(self._watch(Deployment, self._on_deployment, synced[0])),
            asyncio.create_task(self._watch(Pod, self._on_pod, synced[1])),
        ]
        try:
            async with asyncio.timeout(self.sync_timeout):
                await asyncio.gather(*(event.wait() for event in synced))
        except TimeoutError:
            await self.aclose()
            raise CortexError(
                f"the Kubernetes API did not list the namespace {self.settings.namespace}'s deployments and pods"
                f" within {self.sync_timeout:g}s (check the kubeconfig or the operator's service account)"
            ) from None

    # -- Runtime -----------------------------------------------------------------------------------

    async def apply(self, spec: ApiSpec, *, deployment_id: str, config_dir: Path, replicas: int) -> None:
        """Apply ``spec``'s objects; Kubernetes rolls the pods when ``deployment_id`` changed.

        An API applied again with its current deployment id keeps its replica count: an operator
        that restarts must not undo the autoscaler's last decision.
        """
        check_images(spec)
        current = self._deployments.get(spec.name)
        if current is not None and _template_label(current, DEPLOYMENT_ID) == deployment_id:
            replicas = int((current.get("spec") or {}).get("replicas") or 0)
        objects = api_objects(spec, deployment_id=deployment_id, replicas=replicas, settings=self.settings)
        for obj in objects:
            await self._call(
                self.client.patch(
                    Deployment,
                    obj["metadata"]["name"],
                    obj,
                    namespace=self.settings.namespace,
                    patch_type=PatchType.APPLY,
                    field_manager=FIELD_MANAGER,
                    force=True,
                )
            )
        self._requested[spec.name] = replicas

    async def scale(self, api: str, replicas: int) -> None:
        """Set the replicas through the scale subresource, marking idle pods to go first when it shrinks."""
        if replicas < self.requested(api):
            await self._mark_deletion_costs(api)
        await self._call(
            self.client.patch(
                Deployment.Scale,
                deployment_name(api),
                {"spec": {"replicas": replicas}},
                namespace=self.settings.namespace,
                patch_type=PatchType.MERGE,
                field_manager=FIELD_MANAGER,
            )
        )
        self._requested[api] = replicas

    async def delete(self, api: str) -> None:
        """Delete the Deployment; return once its pods have drained and gone (or the grace period is over)."""
        try:
            await self.client.delete(Deployment, deployment_name(api), namespace=self.settings.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise kube_error(exc) from exc
        except httpx2.HTTPError as exc:
            raise kube_error(exc) from exc
        self._requested.pop(api, None)
        deadline = self.settings.grace_period + DELETE_MARGIN
        with contextlib.suppress(TimeoutError):
            await self._wait_until(lambda: not self._api_pods(api), deadline)

    def replicas(self, api: str) -> list[ReplicaStatus]:
        """The pods of ``api`` as replicas, oldest first."""
        deployment_id = _template_label(self._deployments.get(api) or {}, DEPLOYMENT_ID)
        statuses = [replica_status(pod, deployment_id) for pod in self._api_pods(api)]
        return sorted(statuses, key=lambda status: (status.started_at, status.id))

    async def loads(self, api: str) -> dict[str, int | None]:
        """What each pod's dequeuer says it runs (``GET :15000/status``), by pod name."""
        return await self.pod_loads(self._api_pods(api))

    def requested(self, api: str) -> int:
        """The replicas last set, by this runtime or anyone else (``kubectl scale``)."""
        return self._requested.get(api, 0)

    def notes(self, spec: ApiSpec) -> list[str]:
        """Nothing: Kubernetes applies the whole spec, its ``kubernetes`` section included."""
        return []

    def metrics_urls(self) -> dict[str, str]:
        """Each running pod's dequeuer ``/metrics`` URL, by pod name (every API's)."""
        return {
            _name(pod): f"http://{ip}:{ADMIN_PORT}/metrics"
            for pod in self._pods.values()
            if (ip := _pod_ip(pod)) and not (pod.get("metadata") or {}).get("deletionTimestamp")
        }

    def logs(
        self,
        api: str,
        *,
        follow: bool,
        tail: int | None = None,
        request_id: str | None = None,
        replica: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """Every container's lines, ``[<pod> <container>] `` first, merged in time order (:mod:`.kubelogs`).

        With ``follow``, lines are merged as they come, and the containers of pods that start later
        (scale-out, a rolling update) are followed from their first line, until the consumer stops.
        """

        def pods() -> list[dict[str, Any]]:
            return [pod for pod in self._api_pods(api) if replica is None or _name(pod) == replica]

        logs = ApiLogs(self.client, self.settings.namespace, pods)
        return only_mentioning(logs.follow(tail) if follow else logs.read(tail), request_id)

    async def aclose(self) -> None:
        """Stop watching; the APIs keep running (see the module's docstring)."""
        watches, self._watches = self._watches, []
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await self.client.aclose()

    # -- scale-in ----------------------------------------------------------------------------------

    async def _mark_deletion_costs(self, api: str) -> None:
        """Give each ready pod of ``api`` the deletion cost its load calls for (idle first to go)."""
        pods = [pod for pod in self._api_pods(api) if replica_status(pod, "").state != ReplicaState.TERMINATING]
        loads = await self.pod_loads(pods)
        for pod in pods:
            name = _name(pod)
            cost = str(deletion_cost(loads.get(name)))
            if ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST) == cost:
                continue
            patch = {"metadata": {"annotations": {DELETION_COST: cost}}}
            try:
                await self.client.patch(Pod, name, patch, namespace=self.settings.namespace, patch_type=PatchType.MERGE)
            except ApiError as exc:
                if exc.status.code != 404:  # a pod that went meanwhile needs no mark
                    raise kube_error(exc) from exc
            except httpx2.HTTPError as exc:
                raise kube_error(exc) from exc

    # -- the watches -------------------------------------------------------------------------------

    async def _watch(
        self, kind: type[Deployment] | type[Pod], on_event: Callable[[str, dict[str, Any]], None], synced: asyncio.Event
    ) -> None:
        """List, then watch from the list's version; list again whenever the watch breaks (an informer)."""
        labels: dict[str, Any] = {API_LABEL: "true"}
        namespace = self.settings.namespace
        backoff = 0.5
        while True:
            try:
                listing = self.client.list(kind, namespace=namespace, labels=labels)
                items = [item.to_dict() async for item in listing]
                on_event("SYNC", {"items": items})
                synced.set()
                backoff = 0.5
                async for event, obj in self.client.watch(
                    kind, namespace=namespace, labels=labels, resource_version=listing.resourceVersion
                ):
                    on_event(event, obj.to_dict())
            except asyncio.CancelledError:
                raise
            except (ApiError, httpx2.HTTPError, ValueError) as exc:
                log.warning("watching %s in %s: %s; listing again in %gs", kind.__name__, namespace, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_deployment(self, event: str, obj: dict[str, Any]) -> None:
        if event == "SYNC":
            self._deployments = {}
            for item in obj["items"]:
                self._on_deployment("ADDED", item)
            return
        api = ((obj.get("metadata") or {}).get("labels") or {}).get(API_NAME)
        if not api:
            return
        if event == "DELETED":
            self._deployments.pop(api, None)
            self._requested.pop(api, None)
        else:
            self._deployments[api] = obj
            self._requested[api] = int((obj.get("spec") or {}).get("replicas") or 0)
        self._changed.set()

    def _on_pod(self, event: str, obj: dict[str, Any]) -> None:
        if event == "SYNC":
            self._pods = {_name(item): item for item in obj["items"]}
        elif event == "DELETED":
            self._pods.pop(_name(obj), None)
        else:
            self._pods[_name(obj)] = obj
        self._changed.set()

    def _api_pods(self, api: str) -> list[dict[str, Any]]:
        return [pod for pod in self._pods.values() if _label(pod, API_NAME) == api]

    async def _wait_until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (ApiError, httpx2.HTTPError) as exc:
            raise kube_error(exc) from exc


def kube_error(exc: Exception) -> CortexError:
    """A lightkube or HTTP error as a :class:`CortexError` that says what the cluster answered."""
    if isinstance(exc, ApiError):
        return CortexError(f"kubernetes: {exc.status.message} ({exc.status.code} {exc.status.reason})")
    return CortexError(f"cannot reach the Kubernetes API: {exc}")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _label(obj: Mapping[str, Any], key: str) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(key, ""))


def _template_label(deployment: Mapping[str, Any], key: str) -> str:
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return str((template.get("labels") or {}).get(key, ""))


def _pod_ip(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")
