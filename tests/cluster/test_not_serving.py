"""Why a replica is not serving, on the process runtime: refused whole at deploy, or said by deploy --wait."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import ClusterFactory, LocalCluster

pytestmark = pytest.mark.slow


def write(cluster: LocalCluster, container: dict[str, object]) -> Path:
    config = cluster.workdir / "cortex.yaml"
    config.write_text(yaml.safe_dump([{"name": "hello", "kind": "AsyncAPI", "pod": {"containers": [container]}}]))
    return config


def test_an_image_without_an_engine_is_refused_whole_naming_api_and_container(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("--grace-period", "2", "--containers", "never")
    config = write(cluster, {"name": "api", "image": "quay.io/cortexlabs-test/async-hello-world-cpu:latest"})
    for _ in range(2):  # and again: nothing was half-created that would make it "up to date"
        result = cluster.cortex("deploy", str(config), check=False)
        assert result.returncode == 1
        assert "api hello, container api: no command to run" in result.stderr
    (listing,) = cluster.json("get")  # one entry per environment
    assert listing["apis"] == []


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["sh", "-c", "echo weights.bin is missing; exit 4"], ["exited with code 4", "weights.bin is missing"]),
        (["/nonexistent/serve"], ["could not start /nonexistent/serve"]),
    ],
)
def test_a_crash_loop_fails_deploy_wait_fast_with_its_reason(
    make_cluster: ClusterFactory, command: list[str], said: list[str]
) -> None:
    cluster = make_cluster("--grace-period", "2", "--containers", "never")
    config = write(cluster, {"name": "api", "command": command})
    # within 30 s: it stops on the reason, before its own timeout would say "not ready after 30s"
    result = cluster.cortex("deploy", str(config), "--wait", "--timeout", "30", check=False)
    assert result.returncode == 1
    assert "hello cannot become ready" in result.stderr
    assert all(words in result.stderr for words in said), result.stderr
    assert "not serving" in cluster.cortex("get", "hello").stdout
