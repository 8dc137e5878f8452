"""An in-process Kubernetes API server for tests, served over real HTTP on loopback (lightkube talks to it as-is).

Emulated (a subset of kube-apiserver plus the controllers and kubelet behaviour our runtime relies on):

- resources: core/v1 namespaces (cluster-scoped), configmaps, secrets, pods (+ ``log``, ``status``), services,
  serviceaccounts; apps/v1 deployments (+ ``scale``, ``status``); rbac.authorization.k8s.io/v1 roles, rolebindings;
  autoscaling/v2 horizontalpodautoscalers. Any other path answers a 404 ``Status``;
- verbs: get, list (``labelSelector`` with ``=``, ``==``, ``!=``, ``in``, ``notin``, existence; ``fieldSelector`` on
  ``metadata.name``/``metadata.namespace``; no paging: ``limit`` is ignored), watch (initial ``ADDED`` events or a
  replay from ``resourceVersion`` out of a bounded history, 410 ``Expired`` beyond it; ``timeoutSeconds``), create,
  replace (``resourceVersion`` precondition), patch (merge, strategic, apply, JSON patch), delete,
  deletecollection, ``dryRun``;
- metadata the server sets: ``uid``, ``resourceVersion`` (one global counter), ``creationTimestamp``,
  ``generation`` (+1 when ``spec`` changes), the namespace from the path; ``status`` of resources that have a
  status subresource is ignored on writes to the main resource and set through ``/status``;
- validation of every object a client writes against the Kubernetes :data:`~tests.kube.schemas.KUBERNETES_VERSION`
  OpenAPI schemas, strict (unknown fields rejected), then kube-apiserver's own rules past the schema
  (:mod:`tests.kube.semantics`: names, selectors and their immutability, volume mounts, duplicate containers,
  quantities, extended-resource limits): 422 ``Invalid`` naming the field, in the server's words. A real server
  may answer an unparseable quantity in a JSON create with 400 (the body cannot be decoded); the emulator
  answers 422 for every write;
- the authorization attributes (API group, resource, verb) of every request, in :attr:`Emulator.verbs`, from
  which a test derives the least RBAC Role a piece of code needs;
- a Deployment controller (:mod:`tests.kube.controller`), a kubelet that starts pods at once (:mod:`tests.kube.cluster`)
  and pod logs the tests write (:meth:`Emulator.set_logs`, :meth:`Emulator.append_log`).

Approximated or left out:

- strategic merge patch is a JSON merge patch: lists are replaced whole, never merged by key (a patch naming one
  container replaces the whole ``containers`` list); server-side apply is that merge plus field ownership
  (:mod:`tests.kube.ownership`): a field its applier stops sending is removed unless another manager owns it, an
  apply that changes another manager's field is a 409 conflict unless forced; lists are atomic fields, and the
  ownership is kept beside the objects, not in ``metadata.managedFields``;
- no admission (namespaces need not exist, no quotas, no defaulting beyond the metadata above), no authentication or
  RBAC enforcement, no finalizers, no ReplicaSet objects, no scheduling, no ``propagationPolicy`` (a deleted
  Deployment's pods are always collected), no watch bookmarks; an object modified out of a watch's label selector
  is not reported as ``DELETED`` to that watch;
- reconciliation is synchronous: the controllers run after every write and in :meth:`Emulator.settle`, never on a
  timer, so tests are deterministic.
"""

from __future__ import annotations

import asyncio
import copy
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.kube.api import KubeApi
from tests.kube.authz import Attribute, attributes
from tests.kube.cluster import Cluster
from tests.kube.controller import DeploymentController
from tests.kube.resources import by_kind
from tests.kube.routing import ApiFailure, parse_route

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
#: seconds to wait for the server to start or stop
STARTUP_TIMEOUT = 10.0


class Emulator(Cluster):
    """The cluster, served: start it (``async with Emulator() as kube``), point a client at :attr:`url`.

    Everything of :class:`~tests.kube.cluster.Cluster` is public surface too: :meth:`objects`, :meth:`get`,
    :attr:`hold_ready`, :meth:`make_ready`, :attr:`deleted_pods`, :attr:`pod_termination_delay`, :meth:`advance`.
    """

    def __init__(self, *, pod_termination_delay: float = 0.0, controller: bool = True, history: int = 1000) -> None:
        """A stopped emulator with an empty cluster.

        Args:
            pod_termination_delay: seconds a deleted pod lingers with a ``deletionTimestamp``.
            controller: whether Deployments get pods (the :class:`DeploymentController`).
            history: how many events a watch can resume across.
        """
        super().__init__(pod_termination_delay=pod_termination_delay, history=history)
        self.controller = DeploymentController(self) if controller else None
        if self.controller is not None:
            self.controllers.append(self.controller)
        #: (method, path, content type) of every request, in order
        self.requests: list[tuple[str, str, str]] = []
        #: the (API group, resource, verb) RBAC would check for each request served (see :mod:`tests.kube.authz`)
        self.verbs: set[Attribute] = set()
        self.url = ""
        self._api = KubeApi(self)
        self._failures: list[int] = []
        self._stopping = False
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    # -- test controls -------------------------------------------------------------------------------------------

    def put_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (a copy) as is, unvalidated, creating or replacing it, then reconcile; returns it stored.

        Namespaced objects without a namespace go to ``cortex``.
        """
        resource = by_kind(obj["apiVersion"], obj["kind"])
        obj = copy.deepcopy(obj)
        if resource.namespaced:
            obj["metadata"].setdefault("namespace", "cortex")
        existing = self.find(resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        stored = self.insert(resource, obj) if existing is None else self.replace(resource, existing, obj)
        result = copy.deepcopy(stored)
        self.reconcile()
        return result

    async def settle(self) -> None:
        """Reconcile until the controllers change nothing more, then let streams send what it produced."""
        self.reconcile()
        await asyncio.sleep(0)

    def set_logs(self, pod: str, container: str, lines: list[str]) -> None:
        """What ``GET .../pods/{pod}/log?container={container}`` answers from now on."""
        self.logs.set(pod, container, lines)

    def append_log(self, pod: str, container: str, *lines: str) -> None:
        """Add lines to a container's log; followers of that log receive them."""
        self.logs.append(pod, container, *lines)

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` requests (watches excepted) with a failure ``Status`` of code ``status``."""
        self._failures.extend([status] * count)

    # -- serving -------------------------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, request.headers.get("content-type", "")))
        watching = request.query_params.get("watch") in ("true", "1", "True")
        if self._stopping:  # a watch reconnecting now would hold the server open
            return ApiFailure(503, "the Kubernetes emulator is stopping").response()
        if self._failures and not watching:
            code = self._failures.pop(0)
            return ApiFailure(code, f"injected failure ({code}) for {request.method} {request.url.path}").response()
        self._authorize(request, watching)
        return await self._api.handle(request)

    def _authorize(self, request: Request, watching: bool) -> None:
        try:
            route = parse_route(request.url.path)
        except ApiFailure:
            return  # answered 404 by the handler
        applying = request.headers.get("content-type", "").startswith("application/apply-patch")
        creates = applying and route.name is not None and self.find(route.resource, route.ns, route.name) is None
        self.verbs.update(attributes(request.method, route, watch=watching, creates=creates))

    async def start(self, port: int = 0) -> None:
        """Serve on loopback, on ``port`` (0: a free one); :attr:`url` is set once the server listens.

        Raises:
            RuntimeError: the server did not start within :data:`STARTUP_TIMEOUT` seconds.
        """
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=METHODS)])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", log_level="error", timeout_graceful_shutdown=2
        )
        self._stopping = False
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve())
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT
        while not self._server.started:
            if self._serving.done() or asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise RuntimeError("the Kubernetes emulator did not start")
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """End every watch and log stream, and stop serving."""
        self._stopping = True
        self.end_streams()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._serving, timeout=STARTUP_TIMEOUT)
        self._server = self._serving = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()
