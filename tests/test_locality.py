"""Backends one machine alone can reach, kept off a cluster of hosts (issue 18, point 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cortex.backends import BackendUrls
from cortex.errors import CortexError
from cortex.locality import check_blobs_given, check_shared, is_local

REDIS = "redis://redis.internal:6379/0"
PG = "postgresql://cortex@pg.internal/cortex"
FILES = "file:///var/lib/cortex/blobs"
S3 = "s3://bucket/prefix"


@pytest.mark.parametrize(
    ("url", "local"),
    [("sqlite:///s/cortex.db", True), (FILES, True), ("/srv/blobs", True), (REDIS, False), (PG, False), (S3, False)],
)
def test_is_local(url: str, local: bool) -> None:
    assert is_local(url) is local


@pytest.mark.parametrize(
    ("queue", "store", "blobs", "given", "refused"),
    [
        (PG, PG, FILES, False, True),  # --blobs forgotten on a host of a cluster
        (REDIS, REDIS, FILES, False, True),
        (PG, PG, FILES, True, False),  # a folder every host mounts, given on purpose
        (PG, PG, S3, True, False),
        ("sqlite:///s/cortex.db", "sqlite:///s/cortex.db", FILES, False, False),  # one machine
        (REDIS, "sqlite:///s/cortex.db", FILES, False, False),
    ],
)
def test_blobs_left_to_their_default_beside_a_shared_queue_and_store(
    queue: str, store: str, blobs: str, given: bool, refused: bool
) -> None:
    urls = BackendUrls(queue=queue, store=store, blobs=blobs)
    if not refused:
        check_blobs_given(urls, blobs_given=given, role="gateway")
        return
    with pytest.raises(CortexError, match="its blobs would default to files on this machine") as caught:
        check_blobs_given(urls, blobs_given=given, role="gateway")
    assert "--blobs s3://" in str(caught.value) and "CORTEX_BLOBS_URL" in str(caught.value)


def test_kubernetes_wants_every_backend_shared() -> None:
    check_shared(BackendUrls(queue=PG, store=PG, blobs=S3))
    with pytest.raises(CortexError, match=f"the blobs is {FILES}, which only this machine can reach"):
        check_shared(BackendUrls(queue=PG, store=PG, blobs=FILES))


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["cortex", "gateway", "--port", "1"], 2),
        (["cortex", "dequeuer", "--api", "echo", "--user-port", "1"], 2),
        (["cortex.dequeuer", "--api", "echo", "--user-port", "1"], 1),  # as the runtimes start it
    ],
    ids=["gateway", "dequeuer", "python -m cortex.dequeuer"],
)
def test_the_commands_refuse_to_start_without_blobs(command: list[str], code: int, tmp_path: Path) -> None:
    # port 1 on loopback: nothing is reached, the check comes before any connection
    shared = ["--queue", "redis://127.0.0.1:1/0", "--store", "redis://127.0.0.1:1/0"]
    result = subprocess.run(
        [sys.executable, "-m", *command, "--state-dir", str(tmp_path), *shared],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == code, result.stderr
    role = "gateway" if "gateway" in command else "dequeuer"
    assert f"this {role} shares its queue and store" in result.stderr
    assert "Set --blobs s3://" in result.stderr
    assert "Traceback" not in result.stderr
