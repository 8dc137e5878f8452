"""A Deployment controller: the Deployment and ReplicaSet controllers of kube-controller-manager, folded into one.

No ReplicaSets are stored: pods are owned by their Deployment directly (``metadata.ownerReferences``), and the
``pod-template-hash`` label tells a pod of the current template from an older one. What is emulated:

- scale-out creates pods named ``<deployment>-<hash>-<5 letters>`` from the template;
- scale-in deletes pods in the order of Kubernetes' ``ActivePodsWithRanks`` (pkg/controller/controller_utils.go),
  reduced to what the emulator models: pending before running, not ready before ready, lower
  ``controller.kubernetes.io/pod-deletion-cost`` first, then the newest (the "ready for the shortest time" and
  "most restarts" rules are folded into "newest": every container starts at once and never restarts);
- a rolling update creates pods of the new template while all pods number at most replicas + maxSurge, and deletes
  old pods (not-ready ones first, at any time) while at least replicas - maxUnavailable pods stay ready;
  ``Recreate`` deletes every old pod and waits until they are gone before it creates new ones;
- ``status`` (``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``,
  ``unavailableReplicas`` left out when 0, as the API server does, ``observedGeneration``, and the ``Available``
  and ``Progressing`` conditions); ``minReadySeconds`` is ignored (ready means available);
- garbage collection: pods whose Deployment is gone are deleted (``propagationPolicy`` is not read).

The rollout decision is the pure function :func:`plan`; :class:`DeploymentController` applies it to the cluster.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube.cluster import Cluster, is_ready, is_terminating
from tests.kube.resources import DEPLOYMENT, POD

HASH_LABEL = "pod-template-hash"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_RANK = {"Pending": 0, "Unknown": 1}

Pod = dict[str, Any]


def template_hash(template: dict[str, Any]) -> str:
    """A short, stable hash of a pod template (its JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def scaled(value: int | str | None, replicas: int, *, round_up: bool, default: str = "25%") -> int:
    """An int-or-percent field (``maxSurge``, ``maxUnavailable``) as a number of pods."""
    value = default if value is None else value
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        return int(value)
    exact = replicas * int(value[:-1]) / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def rolling_bounds(spec: dict[str, Any], replicas: int) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` in pods; both 0 counts as 0 and 1, as Kubernetes does."""
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    surge = scaled(rolling.get("maxSurge"), replicas, round_up=True)
    unavailable = scaled(rolling.get("maxUnavailable"), replicas, round_up=False)
    return surge, 1 if surge == 0 and unavailable == 0 else unavailable


def deletion_order(pods: list[Pod], born: Callable[[Pod], int]) -> list[Pod]:
    """``pods`` in the order a ReplicaSet deletes them (see the module docstring)."""

    def rank(pod: Pod) -> tuple[int, bool, int, int]:
        try:
            cost = int(pod["metadata"].get("annotations", {}).get(DELETION_COST, "0"))
        except ValueError:
            cost = 0
        return _PHASE_RANK.get(pod.get("status", {}).get("phase", "Pending"), 2), is_ready(pod), cost, -born(pod)

    return sorted(pods, key=rank)


@dataclass(frozen=True)
class Plan:
    """What one reconciliation of a Deployment does: create ``create`` new pods, delete the pods ``delete``."""

    create: int = 0
    delete: tuple[Pod, ...] = ()


def plan(replicas: int, spec: dict[str, Any], new: list[Pod], old: list[Pod], old_lingering: bool) -> Plan:
    """The next step towards ``replicas`` pods of the current template.

    Args:
        replicas: the desired number of pods.
        spec: the Deployment's ``spec`` (for its strategy).
        new: the live pods of the current template, in deletion order.
        old: the live pods of older templates, in deletion order.
        old_lingering: whether pods of older templates are still terminating.
    """
    if not old and not (old_lingering and spec.get("strategy", {}).get("type") == "Recreate"):
        if len(new) > replicas:
            return Plan(delete=tuple(new[: len(new) - replicas]))
        return Plan(create=replicas - len(new))
    if spec.get("strategy", {}).get("type") == "Recreate":
        return Plan(delete=tuple(old))
    surge, unavailable = rolling_bounds(spec, replicas)
    create = max(0, min(replicas - len(new), replicas + surge - len(new) - len(old)))
    doomed = new[: max(0, len(new) - replicas)]
    budget = sum(map(is_ready, new + old)) - (replicas - unavailable)
    for pod in old:
        if not is_ready(pod):
            doomed.append(pod)
        elif budget > 0:
            doomed.append(pod)
            budget -= 1
    return Plan(create=create, delete=tuple(doomed))


def _condition(old: list[dict[str, Any]], kind: str, ok: bool, reason: str, now: str) -> dict[str, Any]:
    """A Deployment condition, keeping its times while its status and reason stay the same."""
    status = "True" if ok else "False"
    previous = next((c for c in old if c.get("type") == kind), {})
    if (previous.get("status"), previous.get("reason")) == (status, reason):
        return dict(previous)
    return {"type": kind, "status": status, "reason": reason, "lastUpdateTime": now, "lastTransitionTime": now}


class DeploymentController:
    """Reconciles every Deployment of a :class:`Cluster`; call it for one round, it says whether it changed anything."""

    def __init__(self, cluster: Cluster, rng: random.Random | None = None) -> None:
        self.cluster = cluster
        self._rng = rng or random.Random()

    def __call__(self) -> bool:
        changed = self._collect_garbage()
        for deployment in self.cluster.select(DEPLOYMENT):
            changed = self._sync(deployment) or changed
        return changed

    def _collect_garbage(self) -> bool:
        owners = {d["metadata"]["uid"] for d in self.cluster.select(DEPLOYMENT)}
        orphans = [
            pod
            for pod in self.cluster.select(POD)
            if not is_terminating(pod)
            and any(
                ref.get("kind") == "Deployment" and ref.get("uid") not in owners
                for ref in pod["metadata"].get("ownerReferences", [])
            )
        ]
        for pod in orphans:
            self.cluster.delete(POD, pod)
        return bool(orphans)

    def _sync(self, deployment: dict[str, Any]) -> bool:
        spec = deployment.get("spec", {})
        replicas, current = spec.get("replicas", 1), template_hash(spec.get("template", {}))
        owned = self._owned(deployment)
        live = deletion_order([p for p in owned if not is_terminating(p)], self.cluster.born)
        new = [p for p in live if p["metadata"].get("labels", {}).get(HASH_LABEL) == current]
        old = [p for p in live if p["metadata"].get("labels", {}).get(HASH_LABEL) != current]
        step = plan(replicas, spec, new, old, old_lingering=len(owned) > len(live))
        for _ in range(step.create):
            self.cluster.insert(POD, self._new_pod(deployment, current))
        for pod in step.delete:
            self.cluster.delete(POD, pod)
        changed = bool(step.create or step.delete)
        updated = copy.deepcopy(deployment)
        updated["status"] = self._status(deployment, current)
        return self.cluster.replace(DEPLOYMENT, deployment, updated) is not deployment or changed

    def _owned(self, deployment: dict[str, Any]) -> list[Pod]:
        """The pods ``deployment`` owns, terminating ones included."""
        meta = deployment["metadata"]
        return [
            pod
            for pod in self.cluster.select(POD, meta["namespace"])
            if any(ref.get("uid") == meta["uid"] for ref in pod["metadata"].get("ownerReferences", []))
        ]

    def _new_pod(self, deployment: dict[str, Any], current: str) -> Pod:
        meta, template = deployment["metadata"], deployment["spec"].get("template", {})
        while True:
            suffix = "".join(self._rng.choices(string.ascii_lowercase, k=5))
            name = f"{meta['name']}-{current}-{suffix}"
            if self.cluster.find(POD, meta["namespace"], name) is None:
                break
        labels = {**template.get("metadata", {}).get("labels", {}), HASH_LABEL: current}
        pod_meta: dict[str, Any] = {
            "name": name,
            "generateName": f"{meta['name']}-{current}-",
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": DEPLOYMENT.api_version,
                    "kind": DEPLOYMENT.kind,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        if annotations := template.get("metadata", {}).get("annotations"):
            pod_meta["annotations"] = dict(annotations)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec", {})),
        }

    def _status(self, deployment: dict[str, Any], current: str) -> dict[str, Any]:
        spec = deployment.get("spec", {})
        replicas = spec.get("replicas", 1)
        live = [pod for pod in self._owned(deployment) if not is_terminating(pod)]
        updated = [p for p in live if p["metadata"].get("labels", {}).get(HASH_LABEL) == current]
        ready = sum(map(is_ready, live))
        _, unavailable = rolling_bounds(spec, replicas)
        counts = {
            "replicas": len(live),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, replicas - ready),
        }
        complete = len(updated) == len(live) == replicas and sum(map(is_ready, updated)) == replicas
        old, now = deployment.get("status", {}).get("conditions", []), self.cluster.timestamp()
        available = ready >= replicas - unavailable
        conditions = [
            _condition(
                old, "Available", available, f"MinimumReplicas{'Available' if available else 'Unavailable'}", now
            ),
            _condition(old, "Progressing", True, "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated", now),
        ]
        return {
            "observedGeneration": deployment["metadata"]["generation"],
            **{name: count for name, count in counts.items() if count},
            "conditions": conditions,
        }
