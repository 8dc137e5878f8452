"""Shared test helpers: deploying a spec straight into a catalog, a tiny config, a one-route HTTP server."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from cortex.spec import ApiSpec, load_text
from cortex.store.base import ApiEntry, Catalog

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PassThroughCatalog(Catalog):
    """A catalog that hands every call to ``inner``: a test overrides the one it watches or breaks."""

    def __init__(self, inner: Catalog) -> None:
        self.inner = inner

    async def put_api(
        self, name: str, spec: dict[str, Any], spec_id: str, *, now: float, meta: dict[str, Any] | None = None
    ) -> ApiEntry:
        return await self.inner.put_api(name, spec, spec_id, now=now, meta=meta)

    async def get_api(self, name: str) -> ApiEntry | None:
        return await self.inner.get_api(name)

    async def list_apis(self) -> list[ApiEntry]:
        return await self.inner.list_apis()

    async def delete_api(self, name: str) -> bool:
        return await self.inner.delete_api(name)

    async def get_retired_api(self, name: str) -> ApiEntry | None:
        return await self.inner.get_retired_api(name)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Exposition(Protocol):
    """Metrics that render themselves as Prometheus text (the dequeuer's, the operator's)."""

    content_type: str

    def exposition(self) -> bytes: ...


@contextlib.asynccontextmanager
async def one_route(path: str, handler: Handler, *, shutdown_timeout: float = 60.0) -> AsyncIterator[str]:
    """A real HTTP server on loopback answering ``GET path`` with ``handler``; yields ``http://127.0.0.1:<port>``."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def serving(metrics: Exposition) -> Handler:
    """A handler answering ``metrics`` as a process's ``/metrics`` does."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.content_type})

    return serve


def api_yaml(
    name: str = "echo", *, extra: str = "", port: int = 8080, concurrency: int = 1, container: str = ""
) -> str:
    """One API's YAML; ``extra`` adds top-level keys, ``container`` adds keys to its one container."""
    body = f"""
    - name: {name}
      kind: AsyncAPI
      pod:
        port: {port}
        max_concurrency: {concurrency}
        containers:
          - name: api
            command: ["python", "server.py"]
    """
    text = textwrap.dedent(body)
    if container:
        text += textwrap.indent(textwrap.dedent(container).strip("\n"), " " * 8) + "\n"
    return text + textwrap.indent(textwrap.dedent(extra), "  ")


async def deploy(catalog: Catalog, yaml_text: str) -> ApiSpec:
    (spec,) = load_text(yaml_text, "test.yaml")
    await catalog.put_api(spec.name, spec.to_dict(), spec.spec_id(), now=0.0)
    return spec
