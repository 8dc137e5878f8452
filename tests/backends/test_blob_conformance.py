"""The blob store contract; files and S3 (a real SeaweedFS server) pass it unchanged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cortex.backends import BLOBS, Resources
from cortex.errors import NotFound
from cortex.store.base import BlobStore
from tests.servers.seaweed import s3_endpoint, s3_url

__all__ = ["s3_endpoint"]  # the session fixture, used through request.getfixturevalue


@pytest.fixture(params=["file", "s3"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    import importlib

    if request.param == "file":
        url = f"file:///{tmp_path / 'blobs'}"
    else:
        url = s3_url(request.getfixturevalue("s3_endpoint"), "cortex-test", uuid.uuid4().hex)
    module, _, name = BLOBS[request.param].partition(":")
    resources = Resources()
    store: BlobStore = await getattr(importlib.import_module(module), name)(url, resources)
    try:
        yield store
    finally:
        await store.aclose()
        await resources.aclose()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(blobs: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.open(key)])


async def test_round_trip_and_delete(blobs: BlobStore) -> None:
    assert await blobs.put("k1", _chunks(b"abc", b"", b"def" * 100_000)) == 300_003
    assert await _read(blobs, "k1") == b"abc" + b"def" * 100_000
    await blobs.delete("k1")
    await blobs.delete("k1")  # a missing key is not an error
    with pytest.raises(NotFound):
        await _read(blobs, "k1")


async def test_large_blob_streams_in_parts(blobs: BlobStore) -> None:
    part = bytes(range(256)) * 4096  # 1 MiB
    assert await blobs.put("big", _chunks(*[part] * 12)) == 12 * len(part)
    assert await _read(blobs, "big") == part * 12


async def test_put_replaces(blobs: BlobStore) -> None:
    await blobs.put("k", _chunks(b"first"))
    await blobs.put("k", _chunks(b"second"))
    assert await _read(blobs, "k") == b"second"


async def test_put_that_fails_stores_nothing(blobs: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"part" * 1_000_000
        yield b"more" * 1_000_000
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await blobs.put("k2", broken())
    with pytest.raises(NotFound):
        await _read(blobs, "k2")


async def test_missing_key_is_not_found(blobs: BlobStore) -> None:
    with pytest.raises(NotFound):
        await _read(blobs, "never-written")


async def test_open_sized_knows_the_length_before_reading(blobs: BlobStore) -> None:
    part = bytes(range(256)) * 4096  # 1 MiB
    await blobs.put("sized", _chunks(part, b"tail"))
    blob = await blobs.open_sized("sized")
    assert blob.size == len(part) + 4
    assert b"".join([chunk async for chunk in blob.chunks]) == part + b"tail"


async def test_open_sized_of_a_missing_key_raises_at_once(blobs: BlobStore) -> None:
    with pytest.raises(NotFound):
        await blobs.open_sized("never-written")


async def test_an_unread_sized_blob_can_be_deleted(blobs: BlobStore) -> None:
    await blobs.put("unread", _chunks(b"x" * 1000))
    blob = await blobs.open_sized("unread")
    assert blob.size == 1000
    await blobs.delete("unread")  # nothing was opened that would keep it
    with pytest.raises(NotFound):
        await _read(blobs, "unread")
