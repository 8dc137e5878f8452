"""examples/word-count-container, as its README says: build the Containerfile, deploy cortex.yaml unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.containers import images
from tests.containers.conftest import ClusterFactory

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "word-count-container"


def test_the_container_example_runs_from_its_containerfile(no_pods_left: Path, make_cluster: ClusterFactory) -> None:
    (api,) = yaml.safe_load((EXAMPLE / "cortex.yaml").read_text())
    images.image("word-count", also=api["pod"]["containers"][0]["image"])
    cluster = make_cluster("--grace-period", "3")
    shutil.copytree(EXAMPLE, cluster.workdir / "example")
    cluster.cortex("deploy", str(cluster.workdir / "example" / "cortex.yaml"), "--wait", timeout=90)
    rid = httpx.post(f"{cluster.gateway}/word-count", content="the cat saw the other cat").json()["id"]
    result = cluster.wait_result("word-count", rid)["result"]
    assert result["words"] == 6 and result["top"][:2] == [["the", 2], ["cat", 2]]
    logs = cluster.cortex("logs", "word-count", "--no-follow").stdout
    assert "POST / HTTP/1.1" in logs  # the server's own access log, as the engine streamed it
