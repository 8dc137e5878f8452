"""Replicas as pods on a real Podman: what they share, what is refused, what is left after a crash (nothing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.containers.conftest import ClusterFactory, LocalCluster, labelled

pytestmark = pytest.mark.slow

#: a second container: waits until the first answers on the pod's localhost:8080, then says so in /mnt
SIDECAR = """
import pathlib, signal, sys, time, urllib.request
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
pathlib.Path("/mnt/side-reached-localhost-8080").touch()
while True:
    time.sleep(3600)
"""


def write_api(cluster: LocalCluster, containers: list[dict[str, Any]], **api: Any) -> Path:
    config = cluster.workdir / "cortex.yaml"
    spec = {"name": "echo", "kind": "AsyncAPI", "pod": {"containers": containers}, **api}
    config.write_text(yaml.safe_dump([spec]))
    return config


def submit(cluster: LocalCluster, body: str = "hi") -> str:
    rid: str = httpx.post(f"{cluster.gateway}/echo", content=body).json()["id"]
    return rid


@pytest.fixture
def cluster(no_pods_left: Path, make_cluster: ClusterFactory) -> LocalCluster:
    # no_pods_left first: its check runs after make_cluster's teardown has brought the cluster down
    return make_cluster("--grace-period", "3", "--container-engine", "podman", "--autoscaler-tick", "0.5")


def test_containers_of_a_replica_share_mnt_and_localhost_replicas_do_not(
    cluster: LocalCluster, user_server_image: str
) -> None:
    containers: list[dict[str, Any]] = [
        {"name": "api", "image": user_server_image},
        {"name": "side", "image": user_server_image, "command": ["python3", "-c", SIDECAR]},
    ]
    config = write_api(cluster, containers, autoscaling={"min_replicas": 2, "max_replicas": 2, "init_replicas": 2})
    cluster.cortex("deploy", str(config), "--wait", timeout=90)

    answers: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 40
    while len(answers) < 2 or any("side-reached-localhost-8080" not in a["mnt_files"] for a in answers.values()):
        assert time.monotonic() < deadline, f"answers so far: {answers}"
        result = cluster.wait_result("echo", submit(cluster))["result"]
        answers[result["replica"]] = result
    for answer in answers.values():
        # its own marker and its sidecar's, and none of the other replica's: /mnt is the replica's own
        assert answer["mnt_files"] == ["api.started", "side-reached-localhost-8080"]
        # both replicas' servers listen on 8080, each in the network namespace of its own pod
        assert answer["env"]["CORTEX_PORT"] == "8080" and answer["env"]["CORTEX_MNT"] == "/mnt"
        assert answer["env"]["CORTEX_GATEWAY_URL"] == f"http://10.0.2.2:{cluster.gateway_port}"
        assert answer["env"]["CORTEX_DEQUEUER_URL"].startswith("http://10.0.2.2:")  # the host's dequeuer


def test_an_image_that_cannot_be_pulled_fails_deploy_wait_fast_with_the_reason(cluster: LocalCluster) -> None:
    config = write_api(cluster, [{"name": "api", "image": "localhost/cortex-async-test/missing:1"}])
    # within 30 s: it stops on the reason, before its own timeout would say "not ready after 30s"
    result = cluster.cortex("deploy", str(config), "--wait", "--timeout", "30", check=False, timeout=60)
    assert result.returncode == 1
    assert "echo cannot become ready" in result.stderr and "ErrImagePull" in result.stderr
    (replica,) = cluster.json("describe", "echo")["replicas"]
    assert replica["state"] == "err_image_pull" and "localhost/cortex-async-test/missing:1" in replica["detail"]
    status = httpx.get(f"http://127.0.0.1:{cluster.operator_port}/status/apis").json()
    assert "ErrImagePull" in status["apis"][0]["problems"][0]


def test_a_crash_loop_fails_deploy_wait_with_exit_code_and_last_lines(
    cluster: LocalCluster, user_server_image: str
) -> None:
    crash = {"name": "api", "image": user_server_image, "command": ["sh", "-c", "echo no model file; exit 3"]}
    config = write_api(cluster, [crash])
    result = cluster.cortex("deploy", str(config), "--wait", "--timeout", "30", check=False, timeout=60)
    assert result.returncode == 1
    assert "echo cannot become ready" in result.stderr
    assert "exited with code 3" in result.stderr and "no model file" in result.stderr


def test_a_pod_container_without_image_is_refused_whole(cluster: LocalCluster, user_server_image: str) -> None:
    containers: list[dict[str, Any]] = [
        {"name": "api", "image": user_server_image},
        {"name": "helper", "command": ["sleep", "1"]},
    ]
    result = cluster.cortex("deploy", str(write_api(cluster, containers)), check=False)
    assert result.returncode == 1
    assert "api echo, container helper: no image" in result.stderr
    (listing,) = cluster.json("get")  # one entry per environment
    assert listing["apis"] == []


def test_kill_9_then_up_leaves_no_old_container_and_loses_no_request(
    cluster: LocalCluster, user_server_image: str, no_pods_left: Path
) -> None:
    config = write_api(
        cluster, [{"name": "api", "image": user_server_image}], autoscaling={"min_replicas": 1, "max_replicas": 1}
    )
    cluster.cortex("deploy", str(config), "--wait", timeout=90)
    ids = [submit(cluster, "sleep:1") for _ in range(4)]
    old = set(labelled(no_pods_left))
    assert old
    pid = json.loads((cluster.state_dir / "cluster.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    ports = ("--gateway-port", str(cluster.gateway_port), "--operator-port", str(cluster.operator_port))
    cluster.cortex("cluster", "up", *ports, "--grace-period", "3", "--container-engine", "podman")
    running = subprocess.run(["podman", "ps", "--all", "--quiet", "--no-trunc"], capture_output=True, text=True)
    assert not old & set(running.stdout.split()), "a container of the killed cluster is still there"
    for rid in ids:
        assert cluster.wait_result("echo", rid)["status"] == "completed"
    cluster.cortex("cluster", "down")
    assert labelled(no_pods_left) == []


def test_exec_liveness_runs_inside_the_container_and_restarts_it_when_failing(
    cluster: LocalCluster, user_server_image: str
) -> None:
    def liveness(path: str, **timing: int) -> dict[str, Any]:
        return {"exec": {"command": ["test", "-e", path]}, "period_seconds": 1, "failure_threshold": 1, **timing}

    containers: list[dict[str, Any]] = [
        # /mnt/api.started exists only inside the pod: passing proves the probe runs there. Python writes it a
        # moment after the engine reports the container running (seconds on a loaded machine): hence the delay
        # and the threshold, as a user would set them for a server that takes a while to start
        {
            "name": "api",
            "image": user_server_image,
            "liveness_probe": liveness("/mnt/api.started", initial_delay_seconds=3, failure_threshold=3),
        },
        {
            "name": "side",
            "image": user_server_image,
            "command": ["python3", "/app/user_server.py"],
            "args": ["side", "--idle"],
            "liveness_probe": liveness("/nonexistent"),
        },
    ]
    cluster.cortex("deploy", str(write_api(cluster, containers)))
    seen: list[str] = []
    # past the side's failure, long enough for the api's probe to have run (and passed) several times
    settled = time.monotonic() + 12
    deadline = time.monotonic() + 40
    while time.monotonic() < settled or not any(
        "container side failed its liveness probe" in d and "exit code 1" in d for d in seen
    ):
        assert time.monotonic() < deadline, seen
        seen += [r["detail"] for r in cluster.json("describe", "echo")["replicas"]]
        time.sleep(0.3)
    assert not any("container api" in detail for detail in seen), seen


def test_kill_9_then_down_removes_the_pods_of_the_killed_cluster(
    cluster: LocalCluster, user_server_image: str, no_pods_left: Path
) -> None:
    cluster.cortex("deploy", str(write_api(cluster, [{"name": "api", "image": user_server_image}])), "--wait")
    assert labelled(no_pods_left)
    os.kill(json.loads((cluster.state_dir / "cluster.json").read_text())["pid"], signal.SIGKILL)
    down = cluster.cortex("cluster", "down")
    assert "removed" in down.stderr
    assert labelled(no_pods_left) == []


def test_pre_stop_exec_runs_inside_the_pod_before_its_container_stops(
    cluster: LocalCluster, user_server_image: str
) -> None:
    # from inside the pod, 127.0.0.1:8080 is the server itself: its access log shows the call
    hook = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/pre-stop-called', timeout=5)"
    container = {"name": "api", "image": user_server_image, "pre_stop": {"exec": {"command": ["python3", "-c", hook]}}}
    cluster.cortex("deploy", str(write_api(cluster, [container])), "--wait")
    cluster.cortex("refresh", "echo")  # a new replica, then the old one drained and stopped
    deadline = time.monotonic() + 40
    while "GET /pre-stop-called" not in (logs := cluster.cortex("logs", "echo", "--no-follow").stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.5)
