"""Open the queue, record store, catalog and blob store of a cluster from their URLs.

Backends are chosen by URL scheme from the tables below: one line per backend, naming a factory
that is imported only when its scheme is used (so a missing optional driver only matters to
those who use it). The embedded default is one SQLite file plus a folder of blobs in the
cluster's state directory: ``sqlite:///<state>/cortex.db`` and ``file:///<state>/blobs``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from cortex.dataplane.base import DataPlane
from cortex.errors import BackendError, BackendUnavailable
from cortex.queue.base import Queue
from cortex.store.base import BlobStore, Catalog, RecordStore

T = TypeVar("T")

#: queue backends: URL scheme -> "module:factory" (factory(url, resources) -> Queue)
QUEUES: dict[str, str] = {
    "sqlite": "cortex.queue.sqlite:open_queue",
    "redis": "cortex.queue.redis:open_queue",
    "rediss": "cortex.queue.redis:open_queue",
    "postgresql": "cortex.queue.postgres:open_queue",
    "postgres": "cortex.queue.postgres:open_queue",
}
#: record store + catalog backends: scheme -> "module:factory" (factory(url, resources) -> (RecordStore, Catalog))
STORES: dict[str, str] = {
    "sqlite": "cortex.store.sqlite:open_store",
    "redis": "cortex.store.redis:open_store",
    "rediss": "cortex.store.redis:open_store",
    "postgresql": "cortex.store.postgres:open_store",
    "postgres": "cortex.store.postgres:open_store",
}
#: data planes (the steps that touch queue and records together): scheme -> "module:factory"
#: (factory(url, resources) -> DataPlane); the queue and the store share its URL
PLANES: dict[str, str] = {
    "sqlite": "cortex.dataplane.sqlite:open_plane",
    "redis": "cortex.dataplane.redis:open_plane",
    "rediss": "cortex.dataplane.redis:open_plane",
    "postgresql": "cortex.dataplane.postgres:open_plane",
    "postgres": "cortex.dataplane.postgres:open_plane",
}
#: blob backends: scheme -> "module:factory" (factory(url, resources) -> BlobStore)
BLOBS: dict[str, str] = {
    "file": "cortex.store.files:open_blobs",
    "s3": "cortex.store.s3:open_blobs",
}
#: what to install when a backend's driver is missing
EXTRAS: dict[str, str] = {
    "s3": "'cortex-async[s3]'",
    "redis": "'cortex-async[redis]'",
    "rediss": "'cortex-async[redis]'",
    "postgresql": "'cortex-async[postgres]'",
    "postgres": "'cortex-async[postgres]'",
}


@dataclasses.dataclass(frozen=True, slots=True)
class BackendUrls:
    """Where a cluster keeps its queue, records (with the catalog) and blobs."""

    queue: str
    store: str
    blobs: str

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> BackendUrls:
        """The embedded defaults for a state directory."""
        db = f"sqlite:///{state_dir.resolve() / 'cortex.db'}"
        return cls(queue=db, store=db, blobs=f"file:///{state_dir.resolve() / 'blobs'}")

    @classmethod
    def resolve(
        cls, state_dir: Path, *, queue: str | None = None, store: str | None = None, blobs: str | None = None
    ) -> BackendUrls:
        """The URLs given, each missing one filled with the embedded default under ``state_dir``."""
        defaults = cls.for_state_dir(state_dir.expanduser())
        return cls(queue=queue or defaults.queue, store=store or defaults.store, blobs=blobs or defaults.blobs)


class Resources:
    """Connections shared by the roles of one process: one SQLite handle per file, one pool per server.

    A factory asks for a resource by key; the first ask creates it, later asks share it, and
    :meth:`aclose` closes them all in reverse order of creation.
    """

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def get(self, key: str, create: Callable[[], Awaitable[T]], close: Callable[[T], Awaitable[None]]) -> T:
        """The resource under ``key``, created by ``create`` on first use and closed with ``close``."""
        if key not in self._items:
            item = await create()
            self._items[key] = item
            self._closers.append(lambda: close(item))
        value: T = self._items[key]
        return value

    async def aclose(self) -> None:
        """Close every resource, newest first."""
        while self._closers:
            await self._closers.pop()()
        self._items.clear()


@dataclasses.dataclass(slots=True)
class Backends:
    """The open backends of one process; close them with :meth:`aclose`."""

    queue: Queue
    records: RecordStore
    catalog: Catalog
    blobs: BlobStore
    #: submit, take and finish: the steps of a request that touch its record and its queue entry
    plane: DataPlane
    resources: Resources = dataclasses.field(default_factory=Resources)

    async def aclose(self) -> None:
        """Close every backend, then the connections they shared."""
        for backend in (self.plane, self.queue, self.records, self.catalog, self.blobs):
            await backend.aclose()
        await self.resources.aclose()


async def open_backends(urls: BackendUrls) -> Backends:
    """Open the backends named by ``urls``.

    The queue and the store must be one server (one URL): each step of a request is then one
    transaction or script there, and nothing acknowledged can be half written (a reconciler
    between two servers would need a log of its own, and could still answer 200 for a request
    whose queue entry was never written).

    Raises:
        BackendError: a URL's scheme is not known, its server cannot be reached, or the queue and
            the store are on two servers.
        BackendUnavailable: the backend's driver is not installed (the message says what to install).
    """
    check_one_server(urls)
    resources = Resources()
    try:
        queue = await _factory(QUEUES, urls.queue, "queue")(urls.queue, resources)
        records, catalog = await _factory(STORES, urls.store, "store")(urls.store, resources)
        plane = await _factory(PLANES, urls.store, "store")(urls.store, resources)
        blobs = await _factory(BLOBS, urls.blobs, "blobs")(urls.blobs, resources)
    except BaseException:
        await resources.aclose()
        raise
    return Backends(queue=queue, records=records, catalog=catalog, blobs=blobs, plane=plane, resources=resources)


def check_one_server(urls: BackendUrls) -> None:
    """Refuse a queue and a store on two servers (or two SQLite files, or two key prefixes / schemas).

    Raises:
        BackendError: they differ; the message says what to pass.
    """
    if _server_of(urls.queue) != _server_of(urls.store):
        raise BackendError(
            f"the queue ({_shown(urls.queue)}) and the store ({_shown(urls.store)}) must be the same server:"
            " a request's record and its queue entry are written in one step, so that nothing acknowledged"
            " can be lost; pass the same URL as --queue and --store"
        )


def _server_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return f"sqlite:{local_path(url).expanduser().resolve()}"
    # rediss/redis and postgres/postgresql name the same servers
    scheme = {"rediss": "redis", "postgres": "postgresql"}.get(parts.scheme, parts.scheme)
    return scheme + "://" + url.partition("://")[2]


def _shown(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@")


def _factory(table: dict[str, str], url: str, role: str) -> Callable[[str, Resources], Awaitable[Any]]:
    scheme = urlsplit(url).scheme
    if scheme not in table:
        raise BackendError(f"unsupported {role} URL {url!r}: the scheme must be one of {', '.join(sorted(table))}")
    module_name, _, name = table[scheme].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = EXTRAS.get(scheme, "")
        raise BackendUnavailable(
            f"the {scheme} {role} backend needs a driver that is not installed ({exc.name})"
            + (f": pip install {hint}" if hint else "")
        ) from exc
    factory: Callable[[str, Resources], Awaitable[Any]] = getattr(module, name)
    return factory


def local_path(url: str) -> Path:
    """The path of a ``scheme:///path`` URL (SQLite files, blob folders)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise BackendError(f"{url!r} names a host; a {parts.scheme} URL takes a local path: {parts.scheme}:///path")
    return Path(unquote(parts.path))
