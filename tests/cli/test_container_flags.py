"""``cluster up --container-engine/--containers`` choose how this machine runs containers: refused on Kubernetes."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("flags", [["--container-engine", "podman"], ["--containers", "always"]])
def test_engine_flags_are_refused_with_kubernetes(flags: list[str]) -> None:
    argv = [sys.executable, "-m", "cortex", "cluster", "up", "--provider", "kubernetes", *flags]
    argv += ["--queue", "redis://r:6379/0", "--store", "redis://r:6379/0", "--blobs", "s3://b"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "only for a cluster on this machine" in result.stderr and flags[0] in result.stderr
