"""A full disk under the SQLite state directory: 503 while full, nothing acknowledged lost, service resumes.

The state directory (the SQLite database and its WAL, the payload files, the logs) is a small
tmpfs that the test mounts itself (root only: without it the test skips, or fails under ``CI``).
Under a steady load at 80% of the measured capacity a file fills the disk to the last byte; after
a few seconds it is removed. While the disk is full a submission is answered 503 (never 500), or
acknowledged if it still fit; once space is free the load is acknowledged again, and every request
acknowledged before, during or after completes with its own payload (:mod:`tests.faults.ledger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortex.backends import BackendUrls
from tests.cluster.conftest import ClusterFactory
from tests.faults.conftest import cluster_options, report, serving
from tests.faults.ledger import Ledger, Verdict
from tests.servers.databases import CI

pytestmark = pytest.mark.slow

#: the tmpfs under the state directory: room for the cluster's database and logs, quickly filled
SIZE = "24m"
#: seconds of load before the disk fills and after it is freed
SETTLE = 3.0
#: seconds the disk stays full
FULL = 3.0


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[None]:
    """Mount a tmpfs of ``size`` on ``folder`` (made if missing); unmount it afterwards, lazily if still busy."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        message = "mounting a tmpfs needs root and mount(8)"
        if CI:
            pytest.fail(f"{message} (CI is set, so this fails instead of skipping)", pytrace=False)
        pytest.skip(message)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)], check=True)
    try:
        yield
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the disk refuses another byte; the file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 4096, 1):
            try:
                while out.write(b"\0" * chunk):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


@pytest.mark.timeout(120)
async def test_a_full_disk_under_the_state_directory_answers_503_and_loses_nothing(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    state = tmp_path / "state"  # the state directory make_cluster gives the cluster
    with tmpfs(state, SIZE):
        options = cluster_options("sqlite", BackendUrls.for_state_dir(state))
        async with serving(make_cluster, "sqlite", options) as cluster:
            ledger = await Ledger.sized(cluster.endpoint)
            async with ledger.running():
                await asyncio.sleep(SETTLE)
                async with ledger.outage("disk full"):
                    filler = await asyncio.to_thread(fill, state)
                    refused = ledger.answers[503]
                    await asyncio.sleep(FULL)
                    refused = ledger.answers[503] - refused
                    filler.unlink()
                await asyncio.sleep(SETTLE)
            verdict = Verdict(ledger, await ledger.outcomes(timeout=60), cluster.runs())
            report("full disk under the SQLite state", "sqlite", verdict)
            assert refused > 0, "the disk was full, yet no answer was a 503: was it full?"
            verdict.check()
