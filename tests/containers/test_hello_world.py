"""Cortex's own hello-world AsyncAPI, its image built locally, deployed with its cortex_cpu.yaml on Podman."""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.containers.conftest import LABEL, ClusterFactory, LocalCluster, labelled

pytestmark = pytest.mark.slow

HELLO_WORLD = Path(__file__).with_name("hello_world")


def deploy(cluster: LocalCluster, replicas: int | None = None) -> None:
    """Cortex's cortex_cpu.yaml, as it is (or with its replicas fixed), deployed and waited for."""
    config = cluster.workdir / "cortex_cpu.yaml"
    shutil.copy(HELLO_WORLD / "cortex_cpu.yaml", config)
    if replicas is not None:
        spec = yaml.safe_load(config.read_text())
        spec[0]["autoscaling"] = {"min_replicas": replicas, "max_replicas": replicas, "init_replicas": replicas}
        config.write_text(yaml.safe_dump(spec))
    cluster.cortex("deploy", str(config), "--wait", timeout=120)


def test_cortex_hello_world_runs_unchanged(
    no_pods_left: Path, make_cluster: ClusterFactory, hello_world_image: str
) -> None:
    cluster = make_cluster("--grace-period", "5")
    deploy(cluster)
    rid = httpx.post(f"{cluster.gateway}/hello-world", json={}).json()["id"]
    answer = cluster.wait_result("hello-world", rid)
    assert answer["status"] == "completed" and answer["result"] == {"message": "hello world"}
    cluster.cortex("cluster", "down")
    assert labelled(no_pods_left) == []


def test_three_replicas_each_serve_on_8080_under_load(
    no_pods_left: Path, make_cluster: ClusterFactory, hello_world_image: str
) -> None:
    cluster = make_cluster("--grace-period", "5")
    deploy(cluster, replicas=3)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda _: httpx.post(f"{cluster.gateway}/hello-world", json={}).json()["id"], range(12)))
    results = [cluster.wait_result("hello-world", rid) for rid in ids]
    assert all(r["result"] == {"message": "hello world"} for r in results)
    replicas = [r for r in cluster.json("describe", "hello-world")["replicas"] if r["state"] == "ready"]
    assert len(replicas) == 3
    # three pods, each publishing its own port on 127.0.0.1 to the server's 8080 in its own network namespace
    argv = ["podman", "ps", "--filter", f"label={LABEL}={no_pods_left.resolve()}", "--format", "{{.Ports}}"]
    ports = {p for p in subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split() if p}
    assert len(ports) == 3 and all(p.startswith("127.0.0.1:") and p.endswith("->8080/tcp") for p in ports), ports
    # compute became the engine's limits: mem 128Mi a limit, cpu 200m a share (a request, as on Kubernetes)
    argv = ["podman", "ps", "--filter", f"label={LABEL}={no_pods_left.resolve()}", "--filter", "name=-api$", "-q"]
    (first, *_) = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    limits = ["podman", "inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}", first]
    assert subprocess.run(limits, check=True, capture_output=True, text=True).stdout.split() == ["134217728", "205"]
