"""The store interfaces: request records, payload blobs and the catalog of deployed APIs."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import Any, Self

from cortex.requests import Duplicate, NewRequest, Outcome, RequestRecord, Status


class _Closable:
    async def aclose(self) -> None:
        """Release connections and threads."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


#: how many of an API's newest requests :meth:`RecordStore.recent` can list, at least
RECENT_KEPT = 1000


class RecordStore(_Closable, abc.ABC):
    """Request records: status, timestamps, result or error, and the payload until it is done."""

    @abc.abstractmethod
    async def create(self, request: NewRequest) -> Duplicate | None:
        """Store a new ``in_queue`` record; durable once this returns. Ids are never reused.

        If ``request.idempotency_key`` is held by an unexpired request of the same API, nothing
        is stored and that request is returned as a :class:`Duplicate` (an expired holder frees
        the key).
        """

    @abc.abstractmethod
    async def get(self, api: str, request_id: str, *, now: float) -> RequestRecord | None:
        """The record without its payload and headers; None if missing or expired at ``now``."""

    @abc.abstractmethod
    async def start(self, api: str, request_id: str, *, attempts: int, now: float) -> RequestRecord | None:
        """Move the request to ``in_progress`` and return it with its payload and headers.

        None when the record is missing or already terminal (its work must not run again).
        """

    @abc.abstractmethod
    async def finish(self, api: str, request_id: str, outcome: Outcome, *, now: float) -> bool:
        """Record a terminal ``outcome`` and drop the payload and headers.

        False, and nothing written, when the record is missing or already terminal: a terminal
        status never changes.
        """

    @abc.abstractmethod
    async def set_webhook(self, api: str, request_id: str, state: dict[str, Any]) -> bool:
        """Record the delivery state of the request's webhook; False if the record is gone."""

    @abc.abstractmethod
    async def recent(self, api: str, *, limit: int, now: float) -> list[RequestRecord]:
        """Up to ``limit`` of ``api``'s records unexpired at ``now``, newest first; [] for an unknown API.

        Newest by id: the gateway mints ids in time order, to the millisecond (:mod:`cortex.ids`).
        The records come without their payload, headers and result (:meth:`get` has the result).
        For a status page, not for paging through history: a backend may list only the newest
        :data:`RECENT_KEPT` requests of an API.
        """

    @abc.abstractmethod
    async def counts(self, api: str, *, now: float) -> dict[Status, int]:
        """How many of ``api``'s records the store holds in each status: every status a key, 0 for none.

        Over what the store still holds, that is the retention window. Cheap however many records it
        holds: each backend keeps counters or an index up to date in the same step that changes a
        status, so that this never scans the records. A record past its ``expires_at`` may still be
        counted until the sweep removes it (SQLite and PostgreSQL count what their tables hold).
        """

    @abc.abstractmethod
    async def sweep(self, *, now: float, limit: int = 1000) -> Swept:
        """Delete up to ``limit`` records expired at ``now``; say how many, and their payload blob keys.

        A caller repeats while ``deleted == limit`` (more may be left).
        """


@dataclasses.dataclass(frozen=True, slots=True)
class Swept:
    """What one retention sweep removed."""

    deleted: int
    blob_keys: list[str]


@dataclasses.dataclass(frozen=True, slots=True)
class ApiEntry:
    """A deployed API as the catalog keeps it."""

    name: str
    spec: dict[str, Any]  #: the validated spec, as :meth:`cortex.spec.ApiSpec.to_dict` gives it
    spec_id: str
    created_at: float
    updated_at: float
    #: what the control plane keeps beside the spec (deployment id, config folder, history)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


class Catalog(_Closable, abc.ABC):
    """The deployed APIs, shared by every gateway, dequeuer and operator of a cluster."""

    @abc.abstractmethod
    async def put_api(
        self, name: str, spec: dict[str, Any], spec_id: str, *, now: float, meta: dict[str, Any] | None = None
    ) -> ApiEntry:
        """Create or replace ``name``; ``created_at`` is kept across replacements."""

    @abc.abstractmethod
    async def get_api(self, name: str) -> ApiEntry | None:
        """The entry for ``name``; None if not deployed."""

    @abc.abstractmethod
    async def list_apis(self) -> list[ApiEntry]:
        """Every deployed API, by name."""

    @abc.abstractmethod
    async def delete_api(self, name: str) -> bool:
        """Remove ``name``, keeping its entry as retired (:meth:`get_retired_api`); False if it was not deployed."""

    @abc.abstractmethod
    async def get_retired_api(self, name: str) -> ApiEntry | None:
        """The entry ``name`` had when it was last deleted; None if it never was.

        The webhooks of a deleted API's requests (the ``cancelled`` its deletion sends, the retries of
        earlier ones) are still sent and signed by it. One entry per name, replaced by the next delete.
        """


@dataclasses.dataclass(frozen=True, slots=True)
class SizedBlob:
    """A blob's length, known before its bytes are read, and the stream of its bytes."""

    size: int
    chunks: AsyncIterator[bytes]


class BlobStore(_Closable, abc.ABC):
    """Large payloads, stored by key and streamed in and out."""

    @abc.abstractmethod
    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the bytes of ``chunks`` under ``key``; return their length.

        Durable once this returns. If ``chunks`` raises, nothing is stored and the error propagates.
        """

    @abc.abstractmethod
    def open(self, key: str) -> AsyncIterator[bytes]:
        """Stream the bytes under ``key``; raises :class:`cortex.errors.NotFound` if missing."""

    @abc.abstractmethod
    async def open_sized(self, key: str) -> SizedBlob:
        """The length of the bytes under ``key`` and a stream of them, in one look-up.

        Raises :class:`cortex.errors.NotFound` here, not on the first chunk, if ``key`` is missing;
        the length is what a ``Content-Length`` announces (blobs are written once, never appended to).
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
