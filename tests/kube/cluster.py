"""The state of the emulated cluster: objects, resource versions, watch events, a kubelet's pod status, and a clock.

What the API server would keep in etcd lives here, with the server-set metadata (``uid``, ``resourceVersion`` from
one global counter, ``creationTimestamp``, ``generation``). What a kubelet would do is reduced to: a new pod runs at
once with a fake IP, Ready unless :attr:`Cluster.hold_ready`; a deleted pod terminates after
:attr:`Cluster.pod_termination_delay` seconds on the cluster's clock, which tests move with :meth:`Cluster.advance`.
Controllers are callables run by :meth:`Cluster.reconcile` until none of them changes anything.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.kube.logs import PodLogs
from tests.kube.resources import POD, ResourceType, by_kind, by_plural

#: (plural, namespace or "" when cluster-scoped, name)
Key = tuple[str, str, str]
#: metadata only the server sets; writes cannot change it
SERVER_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
#: how many reconciliation rounds :meth:`Cluster.reconcile` runs before it gives up on a controller that never settles
MAX_ROUNDS = 200


@dataclass(frozen=True)
class Event:
    """One change, as a watch reports it; ``obj`` is a snapshot nobody mutates."""

    rv: int
    type: str
    plural: str
    obj: dict[str, Any]


class Gone(Exception):
    """The resource version a watch asked to resume from is older than the event history remembers."""


def key_of(resource: ResourceType, obj: dict[str, Any]) -> Key:
    """Where ``obj`` is stored."""
    meta = obj["metadata"]
    return resource.plural, meta.get("namespace", "") if resource.namespaced else "", meta["name"]


def is_ready(pod: dict[str, Any]) -> bool:
    """Whether the pod's ``Ready`` condition is ``"True"``."""
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def is_terminating(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` has a ``deletionTimestamp``."""
    return "deletionTimestamp" in obj.get("metadata", {})


class Cluster:
    """Objects by resource, namespace and name, with their change history and the tests' knobs."""

    def __init__(self, *, pod_termination_delay: float = 0.0, history: int = 1000) -> None:
        #: new pods start NotReady while this holds (until :meth:`make_ready`)
        self.hold_ready = False
        #: seconds between a pod's deletion and its removal (0: at once)
        self.pod_termination_delay = pod_termination_delay
        #: the name of every pod whose deletion started, in order
        self.deleted_pods: list[str] = []
        self.logs = PodLogs()
        self.controllers: list[Callable[[], bool]] = []
        self._objects: dict[Key, dict[str, Any]] = {}
        self._born: dict[Key, int] = {}
        self._deadlines: dict[Key, float] = {}
        self._rv = 0
        self._history: deque[Event] = deque(maxlen=history)
        self._forgotten = 0
        self._watchers: set[asyncio.Queue[Event | None]] = set()
        self._offset = 0.0
        self._started = 0

    # -- clock ---------------------------------------------------------------------------------------------------

    def now(self) -> float:
        """The cluster's clock: wall time plus whatever :meth:`advance` added."""
        return time.time() + self._offset

    def timestamp(self, at: float | None = None) -> str:
        """An RFC 3339 timestamp (whole seconds, UTC) of ``at``, by default now."""
        moment = datetime.fromtimestamp(self.now() if at is None else at, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        """Move the clock forward, and reconcile: pods whose termination delay has passed go away."""
        self._offset += seconds
        self.reconcile()

    # -- reading -------------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The newest resource version handed out."""
        return self._rv

    def find(self, resource: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object (not a copy: callers must not mutate it), or None."""
        return self._objects.get((resource.plural, namespace if resource.namespaced else "", name))

    def select(self, resource: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects of ``resource``, in ``namespace`` or all of them, ordered by namespace and name."""
        return [
            obj
            for (plural, ns, _), obj in sorted(self._objects.items())
            if plural == resource.plural and (namespace is None or not resource.namespaced or ns == namespace)
        ]

    def born(self, obj: dict[str, Any]) -> int:
        """When ``obj`` was created, as the resource version of its creation (a total order, unlike timestamps)."""
        return self._born.get(key_of(by_kind(obj["apiVersion"], obj["kind"]), obj), 0)

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the current objects of ``plural``, in ``namespace`` or in all namespaces."""
        return copy.deepcopy(self.select(by_plural(plural), namespace))

    def get(self, plural: str, name: str, namespace: str = "cortex") -> dict[str, Any] | None:
        """A deep copy of one object, or None."""
        return copy.deepcopy(self.find(by_plural(plural), namespace, name))

    # -- writing -------------------------------------------------------------------------------------------------

    def _bump(self, event: str, resource: ResourceType, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if len(self._history) == self._history.maxlen:
            self._forgotten = self._history[0].rv
        change = Event(self._rv, event, resource.plural, copy.deepcopy(obj))
        self._history.append(change)
        for watcher in self._watchers:
            watcher.put_nowait(change)

    def insert(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object (taking ownership of ``obj``), setting the server's metadata; an ``ADDED`` event."""
        meta = obj.setdefault("metadata", {})
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        if not resource.namespaced:
            meta.pop("namespace", None)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", self.timestamp())
        meta.setdefault("generation", 1)
        if resource is POD and "status" not in obj:
            obj["status"] = self._pod_status(obj, ready=not self.hold_ready)
        self._objects[key_of(resource, obj)] = obj
        self._bump("ADDED", resource, obj)
        self._born[key_of(resource, obj)] = self._rv
        return obj

    def replace(self, resource: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Store ``new`` in place of ``old`` keeping the server's metadata; a ``MODIFIED`` event unless nothing changed.

        ``generation`` goes up by one when ``spec`` changes.
        """
        meta = new.setdefault("metadata", {})
        for field in SERVER_FIELDS:
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        meta["name"] = old["metadata"]["name"]
        if resource.namespaced:
            meta["namespace"] = old["metadata"]["namespace"]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"].get("generation", 0) + 1
        if new == old:
            return old
        self._objects[key_of(resource, new)] = new
        self._bump("MODIFIED", resource, new)
        return new

    def remove(self, resource: ResourceType, obj: dict[str, Any]) -> None:
        """Forget ``obj`` at once; a ``DELETED`` event. A namespace takes its objects along, a pod its log streams."""
        key = key_of(resource, obj)
        del self._objects[key]
        self._born.pop(key, None)
        self._deadlines.pop(key, None)
        self._bump("DELETED", resource, obj)
        if resource is POD:
            self.logs.end(obj["metadata"]["name"])
        if resource.plural == "namespaces":
            for (plural, namespace, name), inner in list(self._objects.items()):
                if namespace == obj["metadata"]["name"] and (plural, namespace, name) in self._objects:
                    self.delete(by_plural(plural), inner, grace=0)

    def delete(self, resource: ResourceType, obj: dict[str, Any], grace: float | None = None) -> dict[str, Any]:
        """Delete ``obj``: pods terminate for ``grace`` (default :attr:`pod_termination_delay`) seconds first.

        Returns the object as deleted: with its ``deletionTimestamp`` when it lingers.
        """
        if resource is not POD:
            self.remove(resource, obj)
            return obj
        if is_terminating(obj):
            if grace == 0:  # a forced deletion of a terminating pod
                self.remove(resource, obj)
            return obj
        self.deleted_pods.append(obj["metadata"]["name"])
        delay = self.pod_termination_delay if grace is None else grace
        if delay <= 0:
            self.remove(resource, obj)
            return obj
        terminating = copy.deepcopy(obj)
        terminating["metadata"]["deletionTimestamp"] = self.timestamp(self.now() + delay)
        terminating["metadata"]["deletionGracePeriodSeconds"] = int(delay)
        key = key_of(resource, obj)
        self._deadlines[key] = self.now() + delay
        self._objects[key] = terminating
        self._bump("MODIFIED", resource, terminating)
        return terminating

    def reconcile(self) -> None:
        """Remove pods whose termination is over, then run the controllers, until nothing changes.

        Raises:
            RuntimeError: the controllers still change things after :data:`MAX_ROUNDS` rounds.
        """
        for _ in range(MAX_ROUNDS):
            changed = False
            for key, deadline in list(self._deadlines.items()):
                if deadline <= self.now():
                    self.remove(POD, self._objects[key])
                    changed = True
            for controller in self.controllers:
                changed = controller() or changed
            if not changed:
                return
        raise RuntimeError(f"the cluster did not settle in {MAX_ROUNDS} reconciliation rounds")

    # -- kubelet -------------------------------------------------------------------------------------------------

    def _pod_status(self, pod: dict[str, Any], *, ready: bool) -> dict[str, Any]:
        self._started += 1
        now, flag = self.timestamp(), "True" if ready else "False"
        containers = pod.get("spec", {}).get("containers", [])
        return {
            "phase": "Running",
            "hostIP": "192.168.0.10",
            "podIP": f"10.0.{self._started // 250}.{self._started % 250 + 1}",
            "startTime": now,
            "conditions": [
                {"type": kind, "status": "True" if kind == "PodScheduled" else flag, "lastTransitionTime": now}
                for kind in ("PodScheduled", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": ready,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for c in containers
            ],
        }

    def make_ready(self, pod_name: str) -> None:
        """Turn the pod named ``pod_name`` (any namespace) Ready, then reconcile.

        Raises:
            KeyError: there is no such pod.
        """
        pods = [pod for pod in self.select(POD) if pod["metadata"]["name"] == pod_name]
        if not pods:
            raise KeyError(f"no pod named {pod_name!r}")
        for pod in pods:
            ready = copy.deepcopy(pod)
            status = ready["status"]
            for condition in status.get("conditions", []):
                if condition["type"] in ("Ready", "ContainersReady"):
                    condition.update(status="True", lastTransitionTime=self.timestamp())
            for container in status.get("containerStatuses", []):
                container["ready"] = True
            self.replace(POD, pod, ready)
        self.reconcile()

    # -- watching ------------------------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Event | None]:
        """A queue that receives every later event, then None when the emulator stops."""
        watcher: asyncio.Queue[Event | None] = asyncio.Queue()
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: asyncio.Queue[Event | None]) -> None:
        """Stop feeding ``watcher``."""
        self._watchers.discard(watcher)

    def events_since(self, rv: int) -> list[Event]:
        """The remembered events newer than ``rv``.

        Raises:
            Gone: events newer than ``rv`` were already forgotten.
        """
        if rv < self._forgotten:
            raise Gone(f"too old resource version: {rv} ({self._forgotten + 1})")
        return [event for event in self._history if event.rv > rv]

    def end_streams(self) -> None:
        """End every watch and log stream (the emulator is stopping)."""
        for watcher in self._watchers:
            watcher.put_nowait(None)
        self.logs.end()
