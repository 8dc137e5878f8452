"""A canned operator and gateway on loopback: a Starlette app served by uvicorn in a thread.

It speaks the operator's HTTP contract (``/info``, ``/deploy``, ``/get``, ``/describe``, ``/refresh``,
``/delete``, ``/logs``) and, under ``/gw``, the gateway's (``POST /<api>``, ``POST /<api>/batch``, ``GET /<api>/<id>``):

- api ``hello`` completes a request on the 3rd status poll, its result echoing the payload;
- api ``broken`` fails every request (``user_error``, ``boom``);
- api ``stuck`` keeps every request ``in_queue``.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from cortex.gateway.batchbody import BatchProblem, is_json_lines, split_batch

NOW = 1_700_000_000.0


def api_response(name: str, *, ready: int, requested: int, up_to_date: int, min_replicas: int = 1) -> dict[str, Any]:
    """An APIResponse as the operator answers it."""
    spec = {"name": name, "kind": "AsyncAPI", "autoscaling": {"min_replicas": min_replicas}}
    return {
        "spec": spec,
        "metadata": {
            "name": name,
            "kind": "AsyncAPI",
            "id": f"{name}-spec-id",
            "deployment_id": f"{name}-deployment",
            "last_updated": NOW - 120,
        },
        "status": {"ready": ready, "requested": requested, "up_to_date": up_to_date},
        "endpoint": f"http://127.0.0.1:8888/{name}",
        "dashboard_url": None,
        "api_versions": [{"api_id": f"{name}-spec-id", "last_updated": NOW - 120}],
    }


def describe_response(api: dict[str, Any]) -> dict[str, Any]:
    return {
        "api": api,
        "replicas": [
            {
                "id": "hello-0",
                "state": "ready",
                "deployment_id": "hello-deployment",
                "started_at": NOW - 3600,
                "restarts": 2,
                "detail": "",
            }
        ],
        "replica_counts": {
            "requested": 1,
            "pending": 0,
            "creating": 0,
            "not_ready": 0,
            "ready": 1,
            "ready_out_of_date": 0,
            "terminating": 0,
            "failed": 0,
        },
    }


def error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": message, "kind": kind}, status_code=status)


@dataclasses.dataclass
class FakeCluster:
    """The canned state; tests read what it received and may change what it answers."""

    url: str = ""
    apis: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    deploys: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    submitted: list[tuple[str, str, bytes, str | None]] = dataclasses.field(default_factory=list)
    polls: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the ``?wait=`` of each status read (None without)
    waits: list[str | None] = dataclasses.field(default_factory=list)
    logs_params: list[dict[str, str]] = dataclasses.field(default_factory=list)
    info_calls: int = 0
    #: the APIs purged, in order
    purged: list[str] = dataclasses.field(default_factory=list)
    #: the Content-Type of each batch submitted
    batches: list[str | None] = dataclasses.field(default_factory=list)

    def reset(self) -> None:
        self.apis = {
            "hello": api_response("hello", ready=1, requested=1, up_to_date=1),
            "world": api_response("world", ready=0, requested=2, up_to_date=0),
        }
        self.deploys.clear()
        self.submitted.clear()
        self.polls.clear()
        self.waits.clear()
        self.logs_params.clear()
        self.info_calls = 0
        self.purged.clear()
        self.batches.clear()

    # -- operator --

    async def info(self, request: Request) -> Response:
        self.info_calls += 1
        return JSONResponse(
            {
                "version": "0.1.0",
                "provider": "local",
                "state_dir": "/tmp/state",
                "operator_url": self.url,
                "gateway_url": f"{self.url}/gw/",
                "pid": 1,
            }
        )

    async def deploy(self, request: Request) -> Response:
        body = await request.json()
        self.deploys.append({"body": body, "force": request.query_params.get("force")})
        results = []
        for item in yaml.safe_load(body["config"]):
            name = item["name"]
            if item.get("pod", {}).get("port") == 70000:
                message = f'{body["config_path"]}: api "{name}" (#1): pod.port: must be <= 65535 (got 70000)'
                return error(400, message, "spec")
            if name in self.apis:
                message = f"{name} is up to date" if name == "hello" else f"updating {name} (AsyncAPI)"
            else:
                self.apis[name] = api_response(name, ready=0, requested=1, up_to_date=0)
                message = f"creating {name} (AsyncAPI)"
            spec = self.apis[name]["spec"]
            results.append(
                {"api": {"spec": spec, "endpoint": self.apis[name]["endpoint"]}, "message": message, "error": None}
            )
        return JSONResponse(results)

    async def get_all(self, request: Request) -> Response:
        return JSONResponse(list(self.apis.values()))

    def _api(self, request: Request) -> dict[str, Any] | None:
        return self.apis.get(request.path_params["api"])

    def _unknown(self, request: Request) -> Response:
        return error(404, f"api {request.path_params['api']} is not deployed", "not_found")

    async def get_one(self, request: Request) -> Response:
        api = self._api(request)
        if api is None:
            return self._unknown(request)
        if request.query_params.get("show_secrets") == "true":
            api = {**api, "webhook_secret": f"whsec_{api['metadata']['name']}"}
        return JSONResponse([api])

    async def describe(self, request: Request) -> Response:
        api = self._api(request)
        return self._unknown(request) if api is None else JSONResponse(describe_response(api))

    async def refresh(self, request: Request) -> Response:
        name = request.path_params["api"]
        return (
            self._unknown(request)
            if self._api(request) is None
            else JSONResponse({"message": f"updating {name} (AsyncAPI)"})
        )

    async def delete(self, request: Request) -> Response:
        name = request.path_params["api"]
        if self.apis.pop(name, None) is None:
            return self._unknown(request)
        return JSONResponse({"message": f"deleting {name}"})

    async def logs(self, request: Request) -> Response:
        if self._api(request) is None:
            return self._unknown(request)
        self.logs_params.append(dict(request.query_params))

        async def lines() -> AsyncIterator[bytes]:
            for index in range(3):
                yield f"[hello-0 api] line {index}\n".encode()

        return StreamingResponse(lines(), media_type="text/plain")

    # -- gateway --

    async def submit(self, request: Request) -> Response:
        api = request.path_params["api"]
        if api not in ("hello", "broken", "stuck"):
            return JSONResponse({"error": f"no API is deployed at /{api}"}, status_code=404)
        request_id = f"{api}-{len(self.submitted)}"
        self.submitted.append((api, request_id, await request.body(), request.headers.get("content-type")))
        return JSONResponse({"id": request_id})

    async def submit_batch(self, request: Request) -> Response:
        """Each payload one request of :meth:`submit`'s, split as the gateway splits a batch."""
        api = request.path_params["api"]
        if api not in ("hello", "broken", "stuck"):
            return JSONResponse({"error": f"no API is deployed at /{api}"}, status_code=404)
        content_type = request.headers.get("content-type")
        self.batches.append(content_type)
        payloads = split_batch(
            await request.body(), json_lines=bool(is_json_lines(content_type)), max_items=1000, max_item_size=2**20
        )
        if isinstance(payloads, BatchProblem):
            body = {"error": payloads.error, "items": [item.as_json() for item in payloads.items]}
            return JSONResponse(body, status_code=payloads.status)
        ids = []
        for payload in payloads:
            ids.append(f"{api}-{len(self.submitted)}")
            self.submitted.append((api, ids[-1], payload, "application/json"))
        return JSONResponse({"ids": ids})

    async def purge(self, request: Request) -> Response:
        api = request.path_params["api"]
        if api not in ("hello", "broken", "stuck"):
            return JSONResponse({"error": f"no API is deployed at /{api}"}, status_code=404)
        self.purged.append(api)
        return JSONResponse({"cancelled": sum(item[0] == api for item in self.submitted)})

    async def status(self, request: Request) -> Response:
        api, request_id = request.path_params["api"], request.path_params["id"]
        found = [item for item in self.submitted if item[0] == api and item[1] == request_id]
        if not found:
            return JSONResponse({"error": f"request {request_id} of api {api} not found"}, status_code=404)
        polls = self.polls[request_id] = self.polls.get(request_id, 0) + 1
        self.waits.append(request.query_params.get("wait"))
        if api == "broken":
            failure = {"kind": "user_error", "message": "boom"}
            return JSONResponse({"id": request_id, "status": "failed", "error": failure})
        if api == "hello" and polls >= 3:
            result = {"echo": json.loads(found[0][2])}
            return JSONResponse(
                {"id": request_id, "status": "completed", "result": result, "timestamp": "2024-01-01T00:00:00Z"}
            )
        return JSONResponse({"id": request_id, "status": "in_queue" if polls < 2 or api == "stuck" else "in_progress"})

    def app(self) -> Starlette:
        async def healthz(request: Request) -> Response:
            return PlainTextResponse("ok")

        return Starlette(
            routes=[
                Route("/healthz", healthz),
                Route("/info", self.info),
                Route("/deploy", self.deploy, methods=["POST"]),
                Route("/get", self.get_all),
                Route("/get/{api}", self.get_one),
                Route("/describe/{api}", self.describe),
                Route("/refresh/{api}", self.refresh, methods=["POST"]),
                Route("/delete/{api}", self.delete, methods=["DELETE"]),
                Route("/logs/{api}", self.logs),
                Route("/gw/{api}", self.submit, methods=["POST"]),
                Route("/gw/{api}/purge", self.purge, methods=["POST"]),
                Route("/gw/{api}/batch", self.submit_batch, methods=["POST"]),
                Route("/gw/{api}/{id}", self.status),
            ]
        )


@pytest.fixture(scope="module")
def served() -> Iterator[FakeCluster]:
    fake = FakeCluster()
    config = uvicorn.Config(
        fake.app(), host="127.0.0.1", port=0, lifespan="off", ws="none", log_level="error", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-operator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fake operator did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def fake(served: FakeCluster) -> FakeCluster:
    served.reset()
    return served


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_cli_config(config_dir: Path, endpoint: str, name: str = "test") -> None:
    """A ``cli.yaml`` whose default environment points at ``endpoint``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    data = {"default_environment": name, "environments": [{"name": name, "operator_endpoint": endpoint}]}
    (config_dir / "cli.yaml").write_text(yaml.safe_dump(data))
