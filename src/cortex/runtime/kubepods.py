"""What a Kubernetes pod means to cortex: its replica state, and how much removing it would cost.

Pure functions of the pod objects as the API server returns them (dicts, camelCase keys), so the
Kubernetes runtime's decisions are tested by tables, like the autoscaler's policy.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from cortex.runtime.base import ReplicaState, ReplicaStatus
from cortex.runtime.kubeobjects import API_NAME, DEPLOYMENT_ID

#: a container waiting for one of these reasons will not start without a change (Cortex: Failed, ErrImagePull)
_FAILED_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
#: ``pod-deletion-cost`` of a pod whose dequeuer holds no request: removed before any other ready pod
IDLE_COST = -1
#: of a pod whose load could not be read: after the idle ones, before the busy ones
UNKNOWN_COST = 0


def replica_status(pod: Mapping[str, Any], deployment_id: str) -> ReplicaStatus:
    """The replica ``pod`` is, ``deployment_id`` being the API's current deployment."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]
    state, detail = _state(pod, statuses)
    labels = metadata.get("labels") or {}
    if state == ReplicaState.READY and labels.get(DEPLOYMENT_ID) != deployment_id:
        state = ReplicaState.READY_OUT_OF_DATE
    return ReplicaStatus(
        id=str(metadata.get("name", "")),
        api=str(labels.get(API_NAME, "")),
        state=state,
        deployment_id=str(labels.get(DEPLOYMENT_ID, "")),
        started_at=_seconds(status.get("startTime") or metadata.get("creationTimestamp")),
        restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
        detail=detail,
    )


def _state(pod: Mapping[str, Any], statuses: list[dict[str, Any]]) -> tuple[ReplicaState, str]:
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return ReplicaState.TERMINATING, ""
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _FAILED_REASONS:
            return ReplicaState.FAILED, _words(container.get("name"), waiting)
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        return ReplicaState.FAILED, str(status.get("reason") or status.get("message") or f"pod {phase.lower()}")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    if phase == "Pending" or phase is None:
        if scheduled.get("status") != "True":
            return ReplicaState.PENDING, str(scheduled.get("message") or "")
        return ReplicaState.CREATING, _first_waiting(statuses)
    if (conditions.get("Ready") or {}).get("status") == "True":
        return ReplicaState.READY, ""
    return ReplicaState.NOT_READY, _not_ready(statuses)


def _words(name: Any, waiting: Mapping[str, Any]) -> str:
    message = str(waiting.get("message") or "").strip()
    return f"{name}: {waiting.get('reason')}" + (f": {message}" if message else "")


def _first_waiting(statuses: list[dict[str, Any]]) -> str:
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return _words(container.get("name"), waiting)
    return ""


def _not_ready(statuses: list[dict[str, Any]]) -> str:
    waiting = [str(s.get("name")) for s in statuses if not s.get("ready")]
    last = [
        f"{s.get('name')}: last exit {term.get('reason') or term.get('exitCode')}"
        for s in statuses
        if (term := (s.get("lastState") or {}).get("terminated"))
    ]
    parts = [f"not ready: {', '.join(waiting)}"] if waiting else []
    return "; ".join(parts + last)


def _seconds(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def deletion_cost(in_flight: int | None) -> int:
    """The ``pod-deletion-cost`` of a pod with ``in_flight`` requests (None: unknown).

    Kubernetes removes, among ready pods, the lowest cost first: idle pods go before pods whose
    load is unknown, and those before busy ones, the busiest last.
    """
    if in_flight is None:
        return UNKNOWN_COST
    return IDLE_COST if in_flight <= 0 else in_flight
