"""Which API answers a path: the deployed APIs by endpoint, read from the catalog and cached."""

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
    """Deployed APIs by endpoint.

    The table is re-read from the catalog when it is older than ``ttl`` seconds, so a deploy
    reaches every gateway process within ``ttl``; an unknown endpoint triggers an earlier re-read,
    at most every ``miss_interval`` seconds, so a flood of bad paths cannot hammer the store.

    While the catalog cannot be read, the last table read keeps routing (tried again every
    ``ttl``, one log line per outage): requests then meet the outage where it matters, at the
    store, and are answered 503 there. Before any table was read, :class:`CatalogUnavailable`.
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

    async def resolve(self, endpoint: str) -> RoutedApi | None:
        """The API served at ``endpoint`` (canonical form), or None."""
        age = time.monotonic() - self._loaded_at
        if age > self._ttl or (endpoint not in self._by_endpoint and age > self._miss_interval):
            await self.reload()
        return self._by_endpoint.get(endpoint)

    def named(self, name: str) -> RoutedApi | None:
        """The deployed API called ``name`` in the table as last read, or None."""
        return next((api for api in self._by_endpoint.values() if api.name == name), None)

    async def reload(self) -> None:
        """Re-read the catalog now (concurrent callers share one read)."""
        started = time.monotonic()
        async with self._lock:
            if self._loaded_at >= started:
                return
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
        if not self._loaded_once:
            raise CatalogUnavailable(f"the catalog of deployed APIs cannot be read: {exc}") from exc
        if not self._failing:
            log.error("the catalog cannot be read; routing by the APIs read last, until it can: %s", exc)
            self._failing = True
        self._loaded_at = time.monotonic()  # try again in ttl, not at every request
