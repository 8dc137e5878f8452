"""Real Podman for the container runtime's tests: the test images, and a check that nothing of a test is left.

Without Podman these tests skip, except under CI, where they fail (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import ClusterFactory, LocalCluster, make_cluster
from tests.containers import images

__all__ = ["ClusterFactory", "LocalCluster", "make_cluster"]

LABEL = "dev.cortex-async.state-dir"


def labelled(state_dir: Path) -> list[str]:
    """Ids of the pods and containers (running or not) labelled with ``state_dir``."""
    found = []
    for kind in (["pod", "ps"], ["ps", "--all"]):
        argv = ["podman", *kind, "--quiet", "--filter", f"label={LABEL}={state_dir.resolve()}"]
        found += subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    return found


@pytest.fixture(scope="session")
def podman() -> str:
    """The podman program; skips (fails under CI) where it is missing."""
    missing = images.missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} not installed (.ci/run installs them)")
        pytest.skip(f"{', '.join(missing)} not installed")
    return shutil.which("podman") or "podman"


@pytest.fixture(scope="session")
def hello_world_image(podman: str) -> str:
    return images.image("hello-world")


@pytest.fixture(scope="session")
def user_server_image(podman: str) -> str:
    return images.image("user-server")


@pytest.fixture
def no_pods_left(tmp_path: Path, podman: str) -> Iterator[Path]:
    """The state folder of the test's cluster; after the test, nothing labelled with it may be left (removed then)."""
    state = tmp_path / "state"
    yield state
    left = labelled(state)
    if left:
        subprocess.run(["podman", "pod", "rm", "--force", "--time", "0", *left], check=False, capture_output=True)
        subprocess.run(["podman", "rm", "--force", "--time", "0", *left], check=False, capture_output=True)
    assert not left, f"pods or containers left behind: {left}"
