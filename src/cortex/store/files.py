"""The embedded blob store: one file per key under the state directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from cortex.backends import Resources, local_path
from cortex.errors import BackendError, NotFound
from cortex.store.base import BlobStore, SizedBlob

_KEY_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_CHUNK = 256 * 1024


class FileBlobStore(BlobStore):
    """Blobs as files; written to a temporary name and renamed, so a reader never sees half a blob."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY_RE.match(key) or key.startswith("."):
            raise BackendError(f"invalid blob key {key!r}")
        # two levels of fan-out keep directories small at millions of blobs
        return self.root / key[-2:] / key

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(key)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        with _disk_errors(key):
            await asyncio.to_thread(path.parent.mkdir, exist_ok=True)
            handle: BinaryIO = await asyncio.to_thread(open, tmp, "wb")
        size = 0
        try:
            async for chunk in chunks:  # the stream's own errors pass through as they are
                size += len(chunk)
                with _disk_errors(key):
                    await asyncio.to_thread(handle.write, chunk)
            with _disk_errors(key):
                await asyncio.to_thread(handle.close)
                await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return size

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} not found") from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                yield chunk
        finally:
            handle.close()

    async def open_sized(self, key: str) -> SizedBlob:
        try:
            stat = await asyncio.to_thread(os.stat, self._path(key))
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} not found") from exc
        # open() opens the file on the first read, so a stream never read leaves no handle open
        return SizedBlob(stat.st_size, self.open(key))

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)


@contextlib.contextmanager
def _disk_errors(key: str) -> Iterator[None]:
    """A failed write (a full disk, a read-only or missing folder) as :class:`BackendError`, the OS error its cause."""
    try:
        yield
    except OSError as exc:
        raise BackendError(f"could not write blob {key}: {exc.strerror or exc}") from exc


async def open_blobs(url: str, resources: Resources) -> FileBlobStore:
    """Blobs as files under the folder of ``file:///path``."""
    return FileBlobStore(local_path(url))
