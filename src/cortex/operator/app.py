"""The operator's HTTP API (reference §8.2, JSON errors ``{"error", "kind"}``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from cortex import __version__
from cortex.errors import BackendError
from cortex.exposition import fetch_all, merge
from cortex.metrics import OperatorMetrics
from cortex.operator.answers import error, guarded
from cortex.operator.guard import TokenGuard
from cortex.operator.service import Operator
from cortex.operator.status_page import StatusPage

#: the dequeuers whose ``/metrics`` the operator's include: replica id -> URL
Peers = Callable[[], Mapping[str, str]]


class _Handlers:
    """The routes' handlers, bound to one operator."""

    def __init__(self, operator: Operator, info: dict[str, Any], metrics: OperatorMetrics, peers: Peers) -> None:
        self.operator = operator
        self.info = info
        self.metrics = metrics
        self.peers = peers

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def get_metrics(self, request: Request) -> Response:
        own = self.metrics.exposition()
        fetched = await fetch_all(self.peers())
        if not fetched:
            return Response(own, media_type=self.metrics.content_type)
        parts = [(own.decode(), {}), *((text, {"replica": replica}) for replica, text in fetched)]
        return Response(merge(parts), media_type=self.metrics.content_type)

    async def get_info(self, request: Request) -> Response:
        return JSONResponse({"version": __version__, **self.info})

    async def deploy(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            config, config_path = body["config"], body["config_path"]
            if not isinstance(config, str) or not isinstance(config_path, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            message = 'the body must be JSON {"config": "<yaml text>", "config_path": "<path>"}'
            return error(400, "bad_request", message)
        results = await self.operator.deploy(config, config_path)
        return JSONResponse([result.to_json() for result in results])

    async def get_all(self, request: Request) -> Response:
        return JSONResponse(await self.operator.get_all())

    async def get_one(self, request: Request) -> Response:
        secrets = request.query_params.get("show_secrets", "false").lower() in ("1", "true", "yes")
        return JSONResponse([await self.operator.get(request.path_params["api"], secrets=secrets)])

    async def queue(self, request: Request) -> Response:
        try:
            summary = await self.operator.queue_summary(request.path_params["api"])
        except BackendError as exc:
            return error(503, "unavailable", f"the queue or the request store did not answer; try again ({exc})")
        return JSONResponse(summary.to_json())

    async def describe(self, request: Request) -> Response:
        return JSONResponse(await self.operator.describe(request.path_params["api"]))

    async def refresh(self, request: Request) -> Response:
        return JSONResponse({"message": await self.operator.refresh(request.path_params["api"])})

    async def redeliver(self, request: Request) -> Response:
        message = await self.operator.redeliver(request.path_params["api"], request.path_params["id"])
        return JSONResponse({"message": message})

    async def delete(self, request: Request) -> Response:
        return JSONResponse({"message": await self.operator.delete(request.path_params["api"])})

    async def logs(self, request: Request) -> Response:
        follow = request.query_params.get("follow", "false").lower() in ("1", "true", "yes")
        tail_text = request.query_params.get("tail")
        if tail_text is not None and not tail_text.isdigit():
            return error(400, "bad_request", f"tail must be a whole number of lines (got {tail_text!r})")
        tail = None if tail_text is None else int(tail_text)
        request_id = request.query_params.get("request") or None
        replica = request.query_params.get("replica") or None
        lines = await self.operator.logs(
            request.path_params["api"], follow=follow, tail=tail, request_id=request_id, replica=replica
        )

        async def body() -> AsyncIterator[bytes]:
            async for line in lines:
                yield (line.rstrip("\n") + "\n").encode()

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


def create_operator_app(
    operator: Operator,
    info: dict[str, Any],
    metrics: OperatorMetrics | None = None,
    *,
    peers: Peers | None = None,
    token: str | None = None,
    read_token: str | None = None,
    status: StatusPage | None = None,
) -> Starlette:
    """The operator app over ``operator``; ``info`` is what ``GET /info`` answers, ``metrics`` ``GET /metrics``.

    ``peers`` names the replica dequeuers whose ``/metrics`` are merged into the operator's (each
    sample labelled ``replica``); one that does not answer within a second is left out.
    With ``token``, every route but ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer <token>``;
    ``read_token`` may be sent instead for ``GET`` and ``HEAD`` (:class:`~cortex.operator.guard.TokenGuard`).
    With ``status``, the status page is served at ``/status`` (and its JSON under ``/status/``).
    """
    h = _Handlers(operator, info, metrics if metrics is not None else OperatorMetrics(), peers or dict)
    routes = [
        Route("/healthz", h.healthz),
        Route("/metrics", h.get_metrics),
        Route("/info", h.get_info),
        Route("/deploy", guarded(h.deploy), methods=["POST"]),
        Route("/get", guarded(h.get_all)),
        Route("/get/{api}", guarded(h.get_one)),
        Route("/describe/{api}", guarded(h.describe)),
        Route("/queue/{api}", guarded(h.queue)),
        Route("/refresh/{api}", guarded(h.refresh), methods=["POST"]),
        Route("/delete/{api}", guarded(h.delete), methods=["DELETE"]),
        Route("/redeliver/{api}/{id}", guarded(h.redeliver), methods=["POST"]),
        Route("/logs/{api}", guarded(h.logs)),
    ]
    if status is not None:
        routes += status.routes()
    middleware = [Middleware(TokenGuard, token=token, read_token=read_token)] if token is not None else []
    return Starlette(routes=routes, middleware=middleware, exception_handlers={404: _not_found, 405: _not_allowed})


async def _not_found(request: Request, exc: Exception) -> Response:
    return error(404, "not_found", f"no operator route {request.method} {request.url.path}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error(405, "method_not_allowed", f"method {request.method} is not allowed on {request.url.path}")
