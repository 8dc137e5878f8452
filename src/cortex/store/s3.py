"""Payload blobs in S3-compatible object storage (obstore: the fastest client measured here).

URL: ``s3://bucket/prefix?endpoint=http://127.0.0.1:8333&region=us-east-1``. Credentials come
from the usual ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or ``access_key_id`` and
``secret_access_key`` in the query, for tests). Uploads stream in 5 MiB parts: a body is never
held whole, and an upload that fails midway leaves no object behind.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from cortex.backends import Resources
from cortex.errors import BackendError, NotFound
from cortex.store.base import BlobStore, SizedBlob

if TYPE_CHECKING:
    from obstore import GetResult
    from obstore.store import ClientConfig

#: query parameters passed on to obstore's S3Store
_OPTIONS = ("region", "access_key_id", "secret_access_key", "session_token")
#: the least a chunk read from S3 holds (the last one may be shorter)
_CHUNK = 256 * 1024


class S3BlobStore(BlobStore):
    """Blobs as objects under ``prefix`` in one bucket."""

    def __init__(self, store: Any, prefix: str) -> None:
        self._store = store
        self._prefix = prefix.strip("/")

    def _path(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        import obstore

        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                yield chunk

        try:
            await obstore.put_async(self._store, self._path(key), counted())
        except OSError as exc:  # obstore's errors are OSError subclasses; the stream's own errors pass through
            raise BackendError(f"could not store blob {key} in S3: {exc}") from exc
        return size

    async def open(self, key: str) -> AsyncIterator[bytes]:
        blob = await self.open_sized(key)
        async for chunk in blob.chunks:
            yield chunk

    async def open_sized(self, key: str) -> SizedBlob:
        import obstore

        try:
            result = await obstore.get_async(self._store, self._path(key))
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} not found") from exc
        except OSError as exc:
            raise BackendError(f"could not read blob {key} from S3: {exc}") from exc
        return SizedBlob(result.meta["size"], _chunks(result))

    async def delete(self, key: str) -> None:
        import obstore

        try:
            await obstore.delete_async(self._store, self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BackendError(f"could not delete blob {key} from S3: {exc}") from exc


async def _chunks(result: GetResult) -> AsyncIterator[bytes]:
    # obstore's default chunk is 10 MB: smaller ones keep a body from being held in memory whole
    async for chunk in result.stream(min_chunk_size=_CHUNK):
        yield bytes(chunk)


async def open_blobs(url: str, resources: Resources) -> S3BlobStore:
    """Blobs in the bucket and prefix of ``s3://bucket/prefix?endpoint=...``."""
    from obstore.store import S3Store

    parts = urlsplit(url)
    if not parts.netloc:
        raise BackendError(f"{url!r}: an S3 URL names a bucket: s3://bucket/prefix")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options: dict[str, Any] = {k: query[k] for k in _OPTIONS if k in query}
    options.setdefault("region", os.environ.get("AWS_REGION", "us-east-1"))
    client_options: ClientConfig = {}  # a TypedDict: only a name for the type checker
    if "endpoint" in query:
        options["endpoint"] = query["endpoint"]
        client_options["allow_http"] = query["endpoint"].startswith("http://")
    store = S3Store(parts.netloc, client_options=client_options, **options)
    return S3BlobStore(store, parts.path)
