"""What the operator does: deploy, get, describe, refresh, delete (reference §6.5, §8).

The catalog is the source of truth: a deploy writes the spec and a new deployment id there
first, then asks the runtime to converge. A restarted cluster re-applies every catalog entry.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from cortex.autoscaler.events import ScalingEvents
from cortex.errors import BackendError, CortexError, NotFound, SpecError
from cortex.operator.leftovers import cancel_leftovers
from cortex.operator.queue_summary import QueueSummary, summarize
from cortex.queue.base import Queue
from cortex.requests import now
from cortex.runtime.base import ReplicaState, ReplicaStatus, Runtime
from cortex.spec import ApiSpec, load_text
from cortex.store.base import ApiEntry, Catalog, RecordStore
from cortex.webhooks.events import schedule, target
from cortex.webhooks.signing import new_secret

log = logging.getLogger(__name__)

#: how many past versions ``cortex get <api>`` lists
HISTORY = 10

#: Cortex's ``replica_counts`` keys, in its order (``pkg/types/status/status.go``); a replica state
#: named like one of them is counted there, any other in ``unknown``
REPLICA_COUNT_KEYS = (
    "requested",
    "pending",
    "creating",
    "not_ready",
    "ready",
    "ready_out_of_date",
    "err_image_pull",
    "terminating",
    "failed",
    "killed",
    "killed_oom",
    "stalled",
    "unknown",
)


class Conflict(CortexError):
    """A deploy clashes with what is deployed (an endpoint already in use)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DeployResult:
    """One API's outcome of a deploy, as Cortex's CLI prints it."""

    api: dict[str, Any] | None
    message: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Cortex's ``DeployResult`` shape."""
        return {"api": self.api, "message": self.message, "error": self.error}


def _deployment_id() -> str:
    return secrets.token_hex(8)


class Operator:
    """Deployed APIs, kept in the catalog and run by the runtime."""

    def __init__(
        self,
        catalog: Catalog,
        runtime: Runtime,
        *,
        gateway_url: str,
        scaling_events: ScalingEvents | None = None,
        queue: Queue | None = None,
        records: RecordStore | None = None,
        on_deployed: Callable[[], object] = lambda: None,
    ) -> None:
        self.catalog = catalog
        self.runtime = runtime
        #: for webhook redelivery (an operator without them cannot redeliver)
        self.queue = queue
        self.records = records
        self.gateway_url = gateway_url.rstrip("/")
        #: written by the autoscaler loop, read by describe
        self.scaling_events = scaling_events if scaling_events is not None else ScalingEvents()
        #: called once a deploy has stored and applied its APIs (the autoscaler then ticks at once,
        #: so a new API at zero replicas is watched for its first request without waiting for a tick)
        self._on_deployed = on_deployed

    async def restore(self) -> None:
        """Run every API of the catalog (after a cluster restart)."""
        for entry in await self.catalog.list_apis():
            spec = ApiSpec.from_dict(entry.spec)
            replicas = entry.meta.get("replicas", spec.autoscaling.init_replicas)
            try:
                await self.runtime.apply(
                    spec,
                    deployment_id=entry.meta.get("deployment_id", _deployment_id()),
                    config_dir=Path(entry.meta.get("config_dir", ".")),
                    replicas=int(replicas),
                )
            except CortexError as exc:  # e.g. restarted without the engine its images need: the others still run
                log.error("api %s cannot run on this cluster now: %s", entry.name, exc)

    async def deploy(self, config: str, config_path: str) -> list[DeployResult]:
        """Validate a configuration file's text and create or update each of its APIs."""
        specs = load_text(config, Path(config_path).name)
        config_dir = str(Path(config_path).parent)
        deployed = {e.name: e for e in await self.catalog.list_apis()}
        for spec in specs:
            # refused whole, before anything is stored: never an API that is deployed but cannot run
            self.runtime.check(spec, Path(config_dir))
            for other in deployed.values():
                if other.name != spec.name and other.spec["networking"]["endpoint"] == spec.networking.endpoint:
                    raise Conflict(
                        f"api {spec.name}: endpoint {spec.networking.endpoint} is already used by api {other.name}"
                        " (set networking.endpoint to another path)"
                    )
        results = [await self._deploy_one(spec, deployed.get(spec.name), config_dir) for spec in specs]
        self._on_deployed()
        return results

    async def _deploy_one(self, spec: ApiSpec, old: ApiEntry | None, config_dir: str) -> DeployResult:
        spec_id = spec.spec_id()
        if old is not None and old.spec_id == spec_id and old.meta.get("config_dir") == config_dir:
            return DeployResult(self._api_summary(old), f"{spec.name} is up to date")
        if old is None:
            replicas = spec.autoscaling.init_replicas
            message = f"creating {spec.name} (AsyncAPI)"
            # before the catalog names the API: a new API of an old name starts with an empty queue
            await self._cancel_leftovers(
                spec.name, f"api {spec.name} was deleted before this request ran; it was not given to the new api"
            )
        else:
            current = self.runtime.requested(spec.name)
            replicas = min(max(current, spec.autoscaling.min_replicas), spec.autoscaling.max_replicas)
            message = f"updating {spec.name} (AsyncAPI)"
        entry = await self._save(spec, old, config_dir=config_dir, replicas=replicas)
        await self.runtime.apply(
            spec, deployment_id=entry.meta["deployment_id"], config_dir=Path(config_dir), replicas=replicas
        )
        message = "; ".join([message, *(f"note: {note}" for note in self.runtime.notes(spec))])
        log.info("%s", message)
        return DeployResult(self._api_summary(entry), message)

    async def _save(self, spec: ApiSpec, old: ApiEntry | None, *, config_dir: str, replicas: int) -> ApiEntry:
        stamp = now()
        spec_id = spec.spec_id()
        history = list(old.meta.get("api_versions", [])) if old is not None else []
        if not history or history[0]["api_id"] != spec_id:
            history.insert(0, {"api_id": spec_id, "last_updated": stamp})
        meta = {
            "deployment_id": _deployment_id(),
            "config_dir": config_dir,
            "replicas": replicas,
            "api_versions": history[:HISTORY],
            # kept across updates: receivers verify every delivery with it
            "webhook_secret": (old.meta.get("webhook_secret") if old is not None else None) or new_secret(),
        }
        return await self.catalog.put_api(spec.name, spec.to_dict(), spec_id, now=stamp, meta=meta)

    async def refresh(self, name: str) -> str:
        """Replace every replica of ``name`` (a new deployment id, same spec)."""
        entry = await self._entry(name)
        spec = ApiSpec.from_dict(entry.spec)
        replicas = self.runtime.requested(name)
        entry = await self._save(spec, entry, config_dir=entry.meta.get("config_dir", "."), replicas=replicas)
        await self.runtime.apply(
            spec,
            deployment_id=entry.meta["deployment_id"],
            config_dir=Path(entry.meta["config_dir"]),
            replicas=replicas,
        )
        return f"updating {name} (AsyncAPI)"

    async def delete(self, name: str) -> str:
        """Stop ``name``'s replicas and forget it; its requests stay readable until they expire.

        The replicas drain first (what they hold finishes or is handed back); then every request
        still queued is cancelled (:mod:`cortex.operator.leftovers`).
        """
        entry = await self._entry(name)
        await self.catalog.delete_api(name)  # kept as retired: its requests' webhooks are still signed with it
        await self.runtime.delete(name)
        cancelled = await self._cancel_leftovers(
            name, f"api {name} was deleted before this request ran", spec=_spec_of(entry)
        )
        if cancelled:
            log.info("deleted %s: cancelled %d queued requests", name, cancelled)
        return f"deleting {name}"

    async def _cancel_leftovers(self, name: str, reason: str, *, spec: ApiSpec | None = None) -> int:
        if self.queue is None or self.records is None:
            return 0
        return await cancel_leftovers(self.queue, self.records, name, spec, reason=reason)

    async def get_all(self) -> list[dict[str, Any]]:
        """Cortex's ``APIResponse`` for every API (without secrets)."""
        return [self.api_response(entry) for entry in await self.catalog.list_apis()]

    async def get(self, name: str, *, secrets: bool = False) -> dict[str, Any]:
        """Cortex's ``APIResponse`` for ``name``; with ``secrets``, its ``webhook_secret`` too.

        Beside Cortex's keys, ``queue``: the API's :meth:`queue_summary`, or None when this operator
        has no queue and record store or they did not answer (the rest still answers).
        """
        entry = await self._entry(name)
        response = self.api_response(entry, secrets=secrets)
        summary = None
        if self.queue is not None and self.records is not None:
            try:
                summary = (await self._summarize(entry)).to_json()
            except BackendError as exc:
                log.warning("api %s: no queue summary, the backend did not answer: %s", name, exc)
        response["queue"] = summary
        return response

    async def queue_summary(self, name: str) -> QueueSummary:
        """``name``'s requests by status, the wait of its oldest queued one, its replicas busy and idle.

        Raises:
            NotFound: the API is not deployed.
            CortexError: this operator has no queue or record store.
            BackendError: they did not answer.
        """
        return await self._summarize(await self._entry(name))

    async def _summarize(self, entry: ApiEntry) -> QueueSummary:
        if self.queue is None or self.records is None:
            raise CortexError("this operator cannot summarize queues (it has no queue or record store)")
        return await summarize(
            entry.name,
            retention=ApiSpec.from_dict(entry.spec).async_.retention,
            records=self.records,
            queue=self.queue,
            runtime=self.runtime,
            now=now(),
        )

    async def describe(self, name: str) -> dict[str, Any]:
        """The ``APIResponse``, each replica, the count of replicas in each state and the recent scaling events.

        The counts have every key of Cortex's ``replica_counts``, at the top and, as Cortex's
        ``describe`` had them, in the API's ``status``.
        """
        entry = await self._entry(name)
        replicas = self.runtime.replicas(name)
        counts = replica_counts(self.runtime.requested(name), replicas)
        api = self.api_response(entry)
        api["status"] = {**api["status"], "replica_counts": counts}
        return {
            "api": api,
            "replicas": [_replica_json(r) for r in replicas],
            "replica_counts": counts,
            "autoscaling_events": [event.to_json() for event in self.scaling_events.recent(name)],
        }

    async def logs(
        self, name: str, *, follow: bool, tail: int | None, request_id: str | None = None, replica: str | None = None
    ) -> AsyncIterator[str]:
        """Log lines of every replica of ``name`` (with ``request_id``, only those that mention it).

        With ``replica``, only that replica's lines (every container's and its dequeuer's), as
        Cortex's ``logs --random-pod`` streamed one pod.

        Raises:
            NotFound: the API is not deployed, or has no replica of that id.
        """
        await self._entry(name)
        if replica is not None and replica not in {r.id for r in self.runtime.replicas(name)}:
            raise NotFound(f"api {name} has no replica {replica} (see `cortex describe {name}`)")
        # the runtime picks the replica's lines itself, so that ``tail`` counts only them
        if replica is not None:
            return self.runtime.logs(name, follow=follow, tail=tail, request_id=request_id, replica=replica)
        if request_id is None:
            return self.runtime.logs(name, follow=follow, tail=tail)
        return self.runtime.logs(name, follow=follow, tail=tail, request_id=request_id)

    def api_response(self, entry: ApiEntry, *, secrets: bool = False) -> dict[str, Any]:
        """Cortex's ``APIResponse`` shape for one API; timestamps are whole unix seconds, as Cortex's.

        The webhook signing secret is left out unless ``secrets`` (what ``cortex get <api>
        --show-secrets`` asks for): listings end up in CI logs and on status pages.
        """
        deployment_id = entry.meta.get("deployment_id", "")
        replicas = self.runtime.replicas(entry.name)
        ready = sum(r.state in (ReplicaState.READY, ReplicaState.READY_OUT_OF_DATE) for r in replicas)
        up_to_date = sum(r.deployment_id == deployment_id and r.state != ReplicaState.TERMINATING for r in replicas)
        response = {
            **self._api_summary(entry),
            "metadata": {
                "name": entry.name,
                "kind": "AsyncAPI",
                "id": entry.spec_id,
                "deployment_id": deployment_id,
                "last_updated": int(entry.updated_at),
            },
            "status": {"ready": ready, "requested": self.runtime.requested(entry.name), "up_to_date": up_to_date},
            # why replicas are not serving, one line each (image missing, crash loop): `deploy --wait` stops on it
            "problems": problems(replicas),
            # what starting replicas are doing (pulling an image, waiting for probes): `deploy --wait` shows it
            "progress": [f"{r.id}: {r.detail}" for r in replicas if r.state in STARTING and r.detail],
            "dashboard_url": None,
            "api_versions": [
                {**version, "last_updated": int(version["last_updated"])}
                for version in entry.meta.get("api_versions", [])
            ],
        }
        if secrets:
            response["webhook_secret"] = entry.meta.get("webhook_secret")
        return response

    async def redeliver(self, name: str, request_id: str) -> str:
        """Queue the webhook of a finished request once more (its delivery state starts over)."""
        entry = await self._entry(name)
        if self.queue is None or self.records is None:
            raise CortexError("this operator cannot redeliver webhooks (it has no queue or record store)")
        record = await self.records.get(name, request_id, now=now())
        if record is None:
            raise NotFound(f"request {request_id} of api {name} not found (unknown or expired)")
        if not record.status.terminal:
            raise Conflict(f"request {request_id} is still {record.status.value}: its webhook is sent when it ends")
        spec = ApiSpec.from_dict(entry.spec)
        if target(spec, record.webhook_url, record.status.value) is None:
            raise Conflict(f"request {request_id} has no webhook for its {record.status.value} event")
        await self.records.set_webhook(name, request_id, {"status": "pending", "attempts": 0, "last_error": None})
        await schedule(self.queue, spec, name, request_id, record.webhook_url, record.status.value)
        return f"redelivering the {record.status.value} webhook of request {request_id}"

    def _api_summary(self, entry: ApiEntry) -> dict[str, Any]:
        return {"spec": entry.spec, "endpoint": self.gateway_url + entry.spec["networking"]["endpoint"]}

    async def _entry(self, name: str) -> ApiEntry:
        entry = await self.catalog.get_api(name)
        if entry is None:
            raise NotFound(f"api {name} is not deployed (see `cortex get` for the deployed APIs)")
        return entry


def replica_counts(requested: int, replicas: list[ReplicaStatus]) -> dict[str, int]:
    """Cortex's ``replica_counts``: every key, each replica counted under its state (``unknown`` if unnamed)."""
    counts = dict.fromkeys(REPLICA_COUNT_KEYS, 0)
    counts["requested"] = requested
    for replica in replicas:
        key = replica.state.value
        counts[key if key in counts and key != "requested" else "unknown"] += 1
    return counts


#: the states of a replica on its way to ready
STARTING = (ReplicaState.PENDING, ReplicaState.CREATING, ReplicaState.NOT_READY)
#: a replica crashed this many times in a row is in a crash loop, not starting up
CRASH_LOOP_RESTARTS = 2


def problems(replicas: list[ReplicaStatus]) -> list[str]:
    """Why replicas cannot serve, ``<replica>: <reason>``: an image not pulled, a crash loop, a pod not made."""
    found = []
    for replica in replicas:
        stuck = replica.state == ReplicaState.ERR_IMAGE_PULL
        crashing = replica.state == ReplicaState.FAILED and replica.restarts >= CRASH_LOOP_RESTARTS
        if stuck or crashing or (replica.state == ReplicaState.FAILED and "FailedCreatePodSandBox" in replica.detail):
            found.append(f"{replica.id}: {replica.detail}")
    return found


def _replica_json(replica: ReplicaStatus) -> dict[str, Any]:
    return {
        "id": replica.id,
        "state": replica.state.value,
        "deployment_id": replica.deployment_id,
        "started_at": replica.started_at,
        "restarts": replica.restarts,
        "detail": replica.detail,
    }


def _spec_of(entry: ApiEntry) -> ApiSpec | None:
    """The spec a catalog entry holds; None if this version no longer reads it."""
    try:
        return ApiSpec.from_dict(entry.spec)
    except SpecError:
        return None
