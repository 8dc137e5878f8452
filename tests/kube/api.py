"""The Kubernetes REST verbs over a :class:`~tests.kube.cluster.Cluster`: get, list, watch, writes, scale, logs.

Every handler answers what kube-apiserver answers for the same request, within what the emulator models (see
:mod:`tests.kube.emulator`); failures are ``Status`` objects with the HTTP code, so lightkube raises ``ApiError``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from tests.kube.cluster import SERVER_FIELDS, Cluster, Event, Gone, is_terminating
from tests.kube.logs import stamped
from tests.kube.ownership import ApplyConflict, FieldOwners, fields
from tests.kube.patches import PatchError, json_patch, merge_patch
from tests.kube.resources import DEPLOYMENT, ResourceType, by_kind, matches_fields, matches_labels, selector_string
from tests.kube.routing import ApiFailure, Route, parse_route, status
from tests.kube.schemas import validation_error
from tests.kube.semantics import first_error

MERGE, STRATEGIC = "application/merge-patch+json", "application/strategic-merge-patch+json"
APPLY, JSON_PATCH = "application/apply-patch+yaml", "application/json-patch+json"
JSON = "application/json"


def _flag(value: str | None) -> bool:
    return value in ("true", "1", "True")


def _selected(obj: dict[str, Any], request: Request) -> bool:
    """Whether ``obj`` satisfies the request's ``labelSelector`` and ``fieldSelector``."""
    labels, fields = request.query_params.get("labelSelector"), request.query_params.get("fieldSelector")
    try:
        return (not labels or matches_labels(obj["metadata"].get("labels", {}), labels)) and (
            not fields or matches_fields(obj, fields)
        )
    except ValueError as error:
        raise ApiFailure(400, str(error)) from None


def _json_line(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


Handler = Callable[[Request, Route], Awaitable[Response]]


def _manager(request: Request) -> str:
    # the name the API server records writes without a fieldManager under (a client's user agent, simplified)
    return request.query_params.get("fieldManager") or "unknown"


def _key(route: Route, name: str) -> tuple[str, str, str]:
    return route.resource.plural, route.ns if route.resource.namespaced else "", name


class KubeApi:
    """The REST handlers; :meth:`handle` is the ASGI endpoint's body."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        #: server-side apply's record of who set which field of each object
        self.owners = FieldOwners()

    async def handle(self, request: Request) -> Response:
        """Answer one request."""
        try:
            route = parse_route(request.url.path)
            handler = self._handler(request, route)
            if handler is None:
                raise ApiFailure(405, f"{request.method} is not supported on {request.url.path}")
            return await handler(request, route)
        except ApiFailure as failure:
            return failure.response()

    def _handler(self, request: Request, route: Route) -> Handler | None:
        if route.sub == "log":
            return {"GET": self._log}.get(request.method)
        if route.sub == "scale":
            return {"GET": self._get_scale, "PUT": self._put_scale, "PATCH": self._patch_scale}.get(request.method)
        if route.name is None:
            watch = self._watch if _flag(request.query_params.get("watch")) else self._list
            collection: dict[str, Handler] = {"GET": watch, "DELETE": self._delete_collection}
            if route.namespace is not None or not route.resource.namespaced:
                collection["POST"] = self._create
            return collection.get(request.method)
        item = {"GET": self._get, "PUT": self._replace, "PATCH": self._patch, "DELETE": self._delete}
        return item.get(request.method)

    # -- helpers -------------------------------------------------------------------------------------------------

    def _existing(self, route: Route) -> dict[str, Any]:
        found = self.cluster.find(route.resource, route.ns, route.name or "")
        if found is None:
            raise ApiFailure(404, f'{route.resource.qualified} "{route.name}" not found')
        return found

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        try:
            if request.headers.get("content-type", "").startswith(APPLY):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as error:
            raise ApiFailure(400, f"the body of the request could not be decoded: {error}") from None

    async def _object(self, request: Request, route: Route, resource: ResourceType | None = None) -> dict[str, Any]:
        """The request's body as an object of ``resource`` (the route's by default) with its identity checked."""
        resource = resource or route.resource
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiFailure(400, "the body of the request is not a JSON object")
        body.setdefault("apiVersion", resource.api_version)
        body.setdefault("kind", resource.kind)
        meta = body.setdefault("metadata", {})
        if (body["apiVersion"], body["kind"]) != (resource.api_version, resource.kind):
            raise ApiFailure(400, f"the body is a {body['apiVersion']}/{body['kind']}, not a {resource.kind}")
        if route.name is not None and meta.setdefault("name", route.name) != route.name:
            raise ApiFailure(400, f"the name in the body ({meta['name']}) does not match the name in the URL")
        if resource.namespaced and meta.setdefault("namespace", route.ns) != route.ns:
            raise ApiFailure(400, "the namespace of the object does not match the namespace of the request")
        return body

    @staticmethod
    def _normalize(obj: dict[str, Any]) -> None:
        """What the API server does to a Secret's write-only ``stringData``: encode it into ``data``."""
        if obj.get("kind") == "Secret" and isinstance(obj.get("stringData"), dict):
            encoded = {key: base64.b64encode(str(value).encode()).decode() for key, value in obj["stringData"].items()}
            obj["data"] = {**(obj.get("data") or {}), **encoded}
            del obj["stringData"]

    @staticmethod
    def _validate(obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        """The schema check, then the API server's own rules (:mod:`tests.kube.semantics`), then no negative scale."""
        error = validation_error(obj) or first_error(obj, old)
        replicas = obj["spec"].get("replicas") if isinstance(obj.get("spec"), dict) else None
        if error is None and isinstance(replicas, int) and replicas < 0:
            error = f"spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
        if error is not None:
            resource = by_kind(obj["apiVersion"], obj["kind"])
            kind = f"{obj['kind']}.{resource.group}" if resource.group else obj["kind"]
            raise ApiFailure(422, f'{kind} "{obj["metadata"].get("name")}" is invalid: {error}')

    @staticmethod
    def _precondition(resource: ResourceType, existing: dict[str, Any], body: dict[str, Any]) -> None:
        wanted = body.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != existing["metadata"]["resourceVersion"]:
            raise ApiFailure(
                409,
                f'Operation cannot be fulfilled on {resource.qualified} "{existing["metadata"]["name"]}": the object '
                "has been modified; please apply your changes to the latest version and try again",
            )

    async def _patched(self, request: Request, target: dict[str, Any]) -> dict[str, Any]:
        """``target`` with the request's patch applied, whichever the patch's content type."""
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind == APPLY and not request.query_params.get("fieldManager"):
            raise ApiFailure(400, "PATCH with apply requires a fieldManager")
        body = await self._body(request)
        try:
            if kind in (MERGE, STRATEGIC, APPLY):
                patched = merge_patch(target, body)
            elif kind == JSON_PATCH:
                patched = json_patch(target, body)
            else:
                raise ApiFailure(415, f"the patch content type {kind!r} is not supported")
        except PatchError as error:
            raise ApiFailure(422, f"the patch cannot be applied: {error}") from None
        if not isinstance(patched, dict):
            raise ApiFailure(422, "the patch does not leave an object")
        return patched

    def _store(
        self, request: Request, route: Route, existing: dict[str, Any], candidate: dict[str, Any], *, track: bool = True
    ) -> dict[str, Any]:
        """Validate and store ``candidate`` in place of ``existing`` (the other of spec and status left alone).

        With ``track``, the request's field manager owns what changed (an update's ownership; an apply records its own).
        """
        if route.sub == "status":
            candidate = {**copy.deepcopy(existing), "status": candidate.get("status", {})}
        elif route.resource.has_status:
            candidate.pop("status", None)
            if "status" in existing:
                candidate["status"] = copy.deepcopy(existing["status"])
        candidate.update(apiVersion=route.resource.api_version, kind=route.resource.kind)
        for field in (*SERVER_FIELDS, "name", "namespace"):
            if field in existing["metadata"]:
                candidate.setdefault("metadata", {})[field] = existing["metadata"][field]
        self._validate(candidate, existing)
        self._normalize(candidate)
        if request.query_params.get("dryRun"):
            return candidate
        before = copy.deepcopy(existing)
        stored = copy.deepcopy(self.cluster.replace(route.resource, existing, candidate))
        if track:
            self.owners.updated(_key(route, stored["metadata"]["name"]), _manager(request), before, stored)
        self.cluster.reconcile()
        return stored

    # -- verbs ---------------------------------------------------------------------------------------------------

    async def _get(self, request: Request, route: Route) -> Response:
        return JSONResponse(self._existing(route))

    async def _list(self, request: Request, route: Route) -> Response:
        items = [
            {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}
            for obj in self.cluster.select(route.resource, route.namespace)
            if _selected(obj, request)
        ]
        metadata = {"resourceVersion": str(self.cluster.resource_version)}
        kind = f"{route.resource.kind}List"
        return JSONResponse(
            {"apiVersion": route.resource.api_version, "kind": kind, "metadata": metadata, "items": items}
        )

    async def _create(
        self, request: Request, route: Route, body: dict[str, Any] | None = None, *, applied: bool = False
    ) -> Response:
        body = body if body is not None else await self._object(request, route)
        meta = body["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        if not meta.get("name"):
            raise ApiFailure(422, f"{body['kind']} is invalid: metadata.name: Required value: name or generateName")
        if self.cluster.find(route.resource, route.ns, meta["name"]) is not None:
            raise ApiFailure(409, f'{route.resource.qualified} "{meta["name"]}" already exists', "AlreadyExists")
        for field in (*SERVER_FIELDS, "resourceVersion"):
            meta.pop(field, None)
        if route.resource.has_status:
            body.pop("status", None)
        sent = copy.deepcopy(body)  # what an apply owns: stringData, not the data it becomes
        self._validate(body)
        self._normalize(body)
        if request.query_params.get("dryRun"):
            return JSONResponse(body, status_code=201)
        stored = copy.deepcopy(self.cluster.insert(route.resource, body))
        key = _key(route, meta["name"])
        if applied:
            self.owners.record(key, {f"{_manager(request)}/Apply": fields(sent)})
        else:
            self.owners.updated(key, _manager(request), None, stored)
        self.cluster.reconcile()
        return JSONResponse(stored, status_code=201)

    async def _replace(self, request: Request, route: Route) -> Response:
        existing = self._existing(route)
        body = await self._object(request, route)
        self._precondition(route.resource, existing, body)
        return JSONResponse(self._store(request, route, existing, body))

    async def _patch(self, request: Request, route: Route) -> Response:
        existing = self.cluster.find(route.resource, route.ns, route.name or "")
        applying = request.headers.get("content-type", "").startswith(APPLY)
        if applying and not request.query_params.get("fieldManager"):
            raise ApiFailure(400, "PATCH with apply requires a fieldManager")
        if existing is None and applying:
            return await self._create(request, route, await self._object(request, route), applied=True)
        existing = self._existing(route)
        if not applying:
            candidate = await self._patched(request, existing)
            self._precondition(route.resource, existing, candidate)
            return JSONResponse(self._store(request, route, existing, candidate))
        key = _key(route, route.name or "")
        force = _flag(request.query_params.get("force"))
        try:
            candidate, owners = self.owners.apply(
                key, _manager(request), existing, await self._object(request, route), force=force
            )
        except ApplyConflict as conflict:
            raise ApiFailure(409, str(conflict), "Conflict") from None
        self._precondition(route.resource, existing, candidate)
        stored = self._store(request, route, existing, candidate, track=False)
        if not request.query_params.get("dryRun"):
            self.owners.record(key, owners)
        return JSONResponse(stored)

    async def _delete(self, request: Request, route: Route) -> Response:
        existing = self._existing(route)
        if request.query_params.get("dryRun"):
            return JSONResponse(existing)
        grace = request.query_params.get("gracePeriodSeconds")
        deleted = copy.deepcopy(self.cluster.delete(route.resource, existing, float(grace) if grace else None))
        self.owners.forget(_key(route, route.name or ""))
        self.cluster.reconcile()
        return JSONResponse(deleted)

    async def _delete_collection(self, request: Request, route: Route) -> Response:
        doomed = [obj for obj in self.cluster.select(route.resource, route.namespace) if _selected(obj, request)]
        items = [copy.deepcopy(self.cluster.delete(route.resource, obj)) for obj in doomed if not is_terminating(obj)]
        self.cluster.reconcile()
        return JSONResponse(
            {"apiVersion": route.resource.api_version, "kind": f"{route.resource.kind}List", "items": items}
        )

    # -- scale ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _scale(deployment: dict[str, Any]) -> dict[str, Any]:
        meta, spec = deployment["metadata"], deployment.get("spec", {})
        keep = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {key: meta[key] for key in keep if key in meta},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {
                "replicas": deployment.get("status", {}).get("replicas", 0),
                "selector": selector_string(spec.get("selector", {})),
            },
        }

    def _rescale(self, request: Request, route: Route, existing: dict[str, Any], scale: dict[str, Any]) -> Response:
        self._precondition(DEPLOYMENT, existing, scale)
        candidate = copy.deepcopy(existing)
        candidate.setdefault("spec", {})["replicas"] = scale.get("spec", {}).get("replicas")
        stored = self._store(request, Route(DEPLOYMENT, route.namespace, route.name, None), existing, candidate)
        return JSONResponse(self._scale(stored))

    async def _get_scale(self, request: Request, route: Route) -> Response:
        return JSONResponse(self._scale(self._existing(route)))

    async def _put_scale(self, request: Request, route: Route) -> Response:
        existing = self._existing(route)
        scale = await self._object(request, route, SCALE)
        return self._rescale(request, route, existing, scale)

    async def _patch_scale(self, request: Request, route: Route) -> Response:
        existing = self._existing(route)
        return self._rescale(request, route, existing, await self._patched(request, self._scale(existing)))

    # -- streams -------------------------------------------------------------------------------------------------

    async def _watch(self, request: Request, route: Route) -> Response:
        cluster, params = self.cluster, request.query_params
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        since = params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise ApiFailure(400, f"invalid resourceVersion {since!r}")

        def wanted(event: Event) -> bool:
            namespace = event.obj["metadata"].get("namespace")
            in_scope = route.namespace is None or namespace == route.namespace
            return event.plural == route.resource.plural and in_scope and _selected(event.obj, request)

        _selected({"metadata": {}}, request)  # a bad selector fails the request, not the stream
        last = int(since)
        if last == 0:
            last = cluster.resource_version
            current = sorted(cluster.select(route.resource, route.namespace), key=cluster.born)
            lines = [_json_line("ADDED", obj) for obj in current if _selected(obj, request)]
        else:
            try:
                missed = cluster.events_since(last)
            except Gone as error:
                return Response(_json_line("ERROR", status(410, str(error))), media_type=JSON)
            lines = [_json_line(event.type, event.obj) for event in missed if wanted(event)]
            last = max([last, *(event.rv for event in missed)])
        watcher = cluster.subscribe()  # no await since the snapshot: no event can slip between the two

        async def stream() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            try:
                for line in lines:
                    yield line
                while True:
                    remaining = None if deadline is None else deadline - loop.time()
                    try:
                        event = await asyncio.wait_for(watcher.get(), remaining)
                    except TimeoutError:
                        return
                    if event is None:
                        return
                    if event.rv > last and wanted(event):
                        yield _json_line(event.type, event.obj)
            finally:
                cluster.unsubscribe(watcher)

        return StreamingResponse(stream(), media_type=JSON)

    async def _log(self, request: Request, route: Route) -> Response:
        pod, params = self._existing(route), request.query_params
        name = pod["metadata"]["name"]
        containers = [c.get("name") for c in pod.get("spec", {}).get("containers", [])]
        container = params.get("container") or (containers[0] if len(containers) == 1 else None)
        if container is None:
            raise ApiFailure(400, f"a container name must be specified for pod {name}, choose one of: {containers}")
        if container not in containers:
            raise ApiFailure(400, f"container {container} is not valid for pod {name}")
        tail = int(params["tailLines"]) if params.get("tailLines") else None
        timestamps = _flag(params.get("timestamps"))

        def text(written: int, line: str) -> str:
            return f"{stamped(line, written) if timestamps else line}\n"

        lines = self.cluster.logs.tail(name, container, tail)
        if not _flag(params.get("follow")):
            return PlainTextResponse("".join(text(*line) for line in lines))
        logs, follower = self.cluster.logs, self.cluster.logs.follow(name, container)

        async def stream() -> AsyncIterator[bytes]:
            try:
                for line in lines:
                    yield text(*line).encode()
                while (appended := await follower.get()) is not None:
                    yield text(*appended).encode()
            finally:
                logs.unfollow(name, container, follower)

        return StreamingResponse(stream(), media_type="text/plain")


#: the Scale subresource's object, for identity checks of a Scale body
SCALE = ResourceType("autoscaling", "v1", "Scale", "deployments")
