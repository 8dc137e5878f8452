"""Cortex's own hello-world AsyncAPI, its image built locally, deployed with its cortex_cpu.yaml on Podman."""

from __future__ import annotations

import concurrent.futures
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.containers.conftest import ClusterFactory, labelled

pytestmark = pytest.mark.slow

HELLO_WORLD = Path(__file__).with_name("hello_world")


def test_cortex_hello_world_runs_unchanged(
    no_pods_left: Path, make_cluster: ClusterFactory, hello_world_image: str
) -> None:
    cluster = make_cluster("--grace-period", "5", "--autoscaler-tick", "0.5")
    config = cluster.workdir / "cortex_cpu.yaml"
    shutil.copy(HELLO_WORLD / "cortex_cpu.yaml", config)
    cluster.cortex("deploy", str(config), "--wait", timeout=120)
    (api,) = cluster.json("get", "hello-world")
    assert api["status"]["ready"] == 1

    rid = httpx.post(f"{cluster.gateway}/hello-world", json={}).json()["id"]
    answer = cluster.wait_result("hello-world", rid)
    assert answer["status"] == "completed" and answer["result"] == {"message": "hello world"}

    # three replicas under load, each its own pod serving on 8080
    spec = yaml.safe_load(config.read_text())
    spec[0]["autoscaling"] = {"min_replicas": 3, "max_replicas": 3}
    config.write_text(yaml.safe_dump(spec))
    cluster.cortex("deploy", str(config))
    cluster.wait_live("hello-world", replicas=3, timeout=90)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: httpx.post(f"{cluster.gateway}/hello-world", json={}).json()["id"], range(30)))
    results = [cluster.wait_result("hello-world", rid) for rid in ids]
    assert all(r["result"] == {"message": "hello world"} for r in results)
    described = cluster.json("describe", "hello-world")
    replicas = [r for r in described["replicas"] if r["state"] == "ready"]
    assert len(replicas) == 3
    assert len(labelled(no_pods_left)) >= 6  # three pods, each its infrastructure and the server's container

    cluster.cortex("cluster", "down")
    assert labelled(no_pods_left) == []
