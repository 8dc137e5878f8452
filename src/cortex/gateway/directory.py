"""Which API answers a path: the deployed APIs by endpoint, read from the catalog in the background."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from cortex.errors import BackendError, SpecError
from cortex.spec import ApiSpec
from cortex.store.base import Catalog

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class RoutedApi:
    """What the gateway needs to know of one deployed API."""

    name: str
    endpoint: str  #: canonical: a leading "/", no trailing "/"
    retention: float
    max_payload_size: int
    spec: ApiSpec  #: the whole spec, for what is read less often (its webhook)
    #: digests of the API's own keys (``async.api_keys``)
    api_keys: frozenset[str] = frozenset()
    #: ``async.forward_sensitive_headers``
    forward_sensitive_headers: bool = False

    @classmethod
    def from_spec(cls, spec: ApiSpec) -> RoutedApi:
        """The gateway's view of ``spec``."""
        return cls(
            name=spec.name,
            endpoint=spec.networking.endpoint,
            retention=spec.async_.retention,
            max_payload_size=spec.async_.max_payload_size,
            spec=spec,
            api_keys=frozenset(spec.async_.api_keys),
            forward_sensitive_headers=spec.async_.forward_sensitive_headers,
        )


class CatalogUnavailable(BackendError):
    """The catalog could not be read, and no earlier read can stand in for it."""


class ApiDirectory:
    """Deployed APIs by endpoint, kept in memory and refreshed off the request path.

    :meth:`refresh_forever` (one task per gateway process) re-reads the catalog every ``ttl``
    seconds, so a deploy or a delete reaches every gateway process within ``ttl``. The catalog has
    no change notification of its own, hence the period. Requests read the table in memory: during
    an outage a request meets the backend once, at its own call, never at a catalog read as well.

    One exception keeps a deploy routable at once: a request whose path names no API in the table
    (:meth:`catch_up`) waits for one fresh read, at most every ``miss_interval`` seconds so that
    a flood of bad paths cannot hammer the store, and not at all while the catalog is known to be
    unreadable (the table read last keeps routing meanwhile, one log line per outage). Before any
    table was read, every request gets :class:`CatalogUnavailable` (a 503, never a 404).

    Without a running :meth:`refresh_forever` (an app embedded without its lifespan), the table is
    re-read on the request path when older than ``ttl``, as before there was a refresher.
    """

    def __init__(self, catalog: Catalog, *, ttl: float = 2.0, miss_interval: float = 0.25) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._miss_interval = miss_interval
        self._by_endpoint: dict[str, RoutedApi] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._loaded_once = False
        #: whether the last read failed (so an outage is logged once, not at every retry)
        self._failing = False
        #: whether :meth:`refresh_forever` keeps the table fresh (else requests do, lazily)
        self._refreshing = False
        #: catalog reads made, by the refresher and by requests (the tests count them)
        self.reads = 0

    async def refresh_forever(self) -> None:
        """Re-read the catalog every ``ttl`` seconds until cancelled (the gateway's lifespan runs it)."""
        self._refreshing = True
        try:
            while True:
                await self.reload()
                await asyncio.sleep(self._ttl)
        finally:
            self._refreshing = False

    async def resolve(self, endpoint: str) -> RoutedApi | None:
        """The API served at ``endpoint`` (canonical form), or None.

        Raises:
            CatalogUnavailable: no table was ever read.
        """
        if not self._refreshing and time.monotonic() - self._loaded_at > self._ttl:
            await self.reload()
        if not self._loaded_once:
            raise CatalogUnavailable("the catalog of deployed APIs has not been read yet")
        return self._by_endpoint.get(endpoint)

    async def catch_up(self, *endpoints: str) -> None:
        """Read the catalog once more unless one of ``endpoints`` is known (a deploy just stored routes at once).

        No read while the catalog is failing, or when the last read is younger than ``miss_interval``.
        """
        if any(endpoint in self._by_endpoint for endpoint in endpoints):
            return
        if self._failing or time.monotonic() - self._loaded_at <= self._miss_interval:
            return
        await self.reload()

    def named(self, name: str) -> RoutedApi | None:
        """The deployed API called ``name`` in the table as last read, or None."""
        return next((api for api in self._by_endpoint.values() if api.name == name), None)

    async def reload(self) -> None:
        """Re-read the catalog now (concurrent callers share one read); a failure is logged, not raised."""
        started = time.monotonic()
        async with self._lock:
            if self._loaded_at >= started:
                return
            self.reads += 1
            try:
                entries = await self._catalog.list_apis()
            except BackendError as exc:
                self._read_failed(exc)
                return
            if self._failing:
                log.warning("the catalog can be read again")
                self._failing = False
            table: dict[str, RoutedApi] = {}
            for entry in entries:
                try:
                    api = RoutedApi.from_spec(ApiSpec.from_dict(entry.spec))
                except SpecError as exc:  # written by a newer or older version: skip it, keep serving the rest
                    log.error("cannot read the deployed spec of %s: %s", entry.name, exc)
                    continue
                table[api.endpoint] = api
            self._by_endpoint = table
            self._loaded_at = time.monotonic()
            self._loaded_once = True

    def _read_failed(self, exc: BackendError) -> None:
        if not self._failing:
            kept = "routing by the APIs read last, until it can" if self._loaded_once else "answering 503 until it can"
            log.error("the catalog cannot be read; %s: %s", kept, exc)
            self._failing = True
        self._loaded_at = time.monotonic()  # try again in ttl, not at every request
