"""During a backend outage the gateway answers 503 with Retry-After, never 500, and logs one line.

A Redis server of the test's own (on a free port, so that killing it disturbs no one) plays the
backend that goes away; a full disk is the kernel's own ``/dev/full``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.errors import BackendError
from cortex.gateway import GatewaySettings, create_app
from cortex.store.files import FileBlobStore
from tests.e2e.conftest import free_port
from tests.helpers import api_yaml, deploy

SOME_ID = "01m96eswaaebwf6qc5sjqehhs3"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*argv, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0", server
    finally:
        server.kill()
        server.wait()


@contextlib.asynccontextmanager
async def _backends(url: str, tmp_path: Path) -> AsyncIterator[Backends]:
    for _ in range(200):  # until the server answers
        try:
            opened = await open_backends(BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}"))
            break
        except BackendError:
            await asyncio.sleep(0.05)
    else:
        pytest.fail(f"the test's Redis at {url} never answered")
    try:
        yield opened
    finally:
        with contextlib.suppress(BackendError):
            await opened.aclose()


def _assert_outage_answer(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "again" in response.json()["error"]


@pytest.mark.parametrize("warm", [False, True], ids=["never-read-the-catalog", "routing-from-the-last-read"])
async def test_backend_killed_every_answer_is_503_and_one_line(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture, warm: bool
) -> None:
    url, server = redis_server
    async with _backends(url, tmp_path) as backends:
        await deploy(backends.catalog, api_yaml("echo"))
        app = create_app(backends, settings=GatewaySettings(catalog_ttl=0))  # the catalog read at every request
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            if warm:
                assert (await client.post("/echo", content=b"{}")).status_code == 200
            server.kill()
            server.wait()
            caplog.clear()
            for _ in range(3):
                _assert_outage_answer(await client.post("/echo", content=b'{"x": 1}'))
                _assert_outage_answer(await client.post("/echo", content=b"y" * 100_000))  # a blob, then the store
                _assert_outage_answer(await client.get(f"/echo/{SOME_ID}"))
    assert caplog.records, "the outage was not logged"
    for record in caplog.records:
        assert record.exc_info is None and "\n" not in record.getMessage(), record.getMessage()
    routing = [record.getMessage() for record in caplog.records if record.name == "cortex.gateway.directory"]
    if warm:  # the last table read kept routing: the outage was met, and logged, at the store; itself once
        assert len(routing) == 1 and "routing by the APIs read last" in routing[0], routing
    assert not list((tmp_path / "blobs").rglob("*.tmp")), "a blob of a refused request was left behind"


def test_a_blob_on_a_full_disk_is_a_backend_error(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    key = "k-full"
    folder = tmp_path / "blobs" / key[-2:]
    folder.mkdir()
    os.symlink("/dev/full", folder / f".{key}.{os.getpid()}.tmp")  # its writes fail as on a full disk

    async def chunks() -> AsyncIterator[bytes]:
        yield b"z" * 300_000

    with pytest.raises(BackendError, match=f"could not write blob {key}: No space left on device"):
        asyncio.run(blobs.put(key, chunks()))
    assert not (folder / key).exists()
    assert list(folder.iterdir()) == []  # the temporary name is gone too


async def test_a_blob_that_cannot_be_written_is_503(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    backends = await open_backends(BackendUrls.for_state_dir(tmp_path))
    try:
        await deploy(backends.catalog, api_yaml("echo"))
        shutil.rmtree(tmp_path / "blobs")
        (tmp_path / "blobs").write_bytes(b"")  # the blob folder is gone: writes fail with ENOTDIR
        app = create_app(backends)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            with caplog.at_level(logging.ERROR):
                _assert_outage_answer(await client.post("/echo", content=b"y" * 100_000))
            assert (await client.post("/echo", content=b"{}")).status_code == 200  # small bodies need no blob
    finally:
        await backends.aclose()
    (line,) = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert line.exc_info is None and "could not write blob" in line.getMessage()
