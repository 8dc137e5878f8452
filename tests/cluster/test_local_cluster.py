"""The local cluster as a new user meets it: the `cortex` command, curl-like HTTP, the examples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.slow


def test_hello_world_as_a_new_user(local_cluster: LocalCluster) -> None:
    config = local_cluster.example("hello-world")
    deploy = local_cluster.cortex("deploy", str(config))
    assert "creating hello-world (AsyncAPI)" in deploy.stdout
    local_cluster.wait_live("hello-world")
    table = local_cluster.cortex("get").stdout
    assert "hello-world" in table and "1/1" in table

    (listing,) = local_cluster.json("get")  # Cortex's shape: one entry per environment
    assert (listing["env_name"], listing["error"]) == ("local", None)
    assert {"spec", "metadata", "status", "endpoint"} <= set(listing["apis"][0])
    (one,) = local_cluster.json("get", "hello-world")
    assert one["status"] == {"ready": 1, "requested": 1, "up_to_date": 1}
    assert one["endpoint"] == f"{local_cluster.gateway}/hello-world"
    assert one["metadata"]["name"] == "hello-world" and one["metadata"]["kind"] == "AsyncAPI"

    rid = httpx.post(one["endpoint"], json={"text": "hi"}).json()["id"]
    result = local_cluster.wait_result("hello-world", rid)
    assert result["status"] == "completed"
    assert result["result"]["payload"] == {"text": "hi"} and result["result"]["request_id"] == rid

    assert "is up to date" in local_cluster.cortex("deploy", str(config)).stdout
    assert "deleting hello-world" in local_cluster.cortex("delete", "hello-world").stdout
    assert local_cluster.json("get", "-e", "local") == []
    local_cluster.cortex("cluster", "down")
    assert local_cluster.processes() == []


@pytest.mark.timeout(150)  # a cluster up, a deploy and a run: 44 s measured beside three busy loops, 60 s hit in CI
def test_the_progress_example_streams_its_progress_in_order(local_cluster: LocalCluster) -> None:
    config = local_cluster.example("progress")
    local_cluster.cortex("deploy", str(config))
    local_cluster.wait_live("progress")
    endpoint = f"{local_cluster.gateway}/progress"
    rid = httpx.post(endpoint, json={"steps": 3, "seconds": 0.4}).json()["id"]
    seen: list[tuple[str, Any]] = []
    event = ""
    with httpx.stream("GET", f"{endpoint}/{rid}/events", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                seen.append((event, data["status"] if event == "status" else data))
    # the server reports a step every 0.4 s and the dequeuer writes at most one every 0.5 s: some
    # steps may be coalesced, never reordered, and the last one is stored before the outcome
    statuses = [value for name, value in seen if name == "status"]
    progress = [value for name, value in seen if name == "progress"]
    assert statuses[-2:] == ["in_progress", "completed"] and statuses[0] in ("in_queue", "in_progress"), seen
    assert seen.index(("status", "in_progress")) < seen.index(("progress", progress[0])), seen
    assert seen[-2:] == [("progress", {"step": 3, "of": 3}), ("status", "completed")], seen
    assert [step["step"] for step in progress] == sorted({step["step"] for step in progress}), seen
    assert local_cluster.wait_result("progress", rid)["progress"] == {"step": 3, "of": 3}


def test_config_error_names_file_api_and_field(local_cluster: LocalCluster) -> None:
    bad = local_cluster.workdir / "cortex.yaml"
    bad.write_text(
        "- name: bad\n  kind: AsyncAPI\n  pod:\n    port: 99999\n    containers: [{name: api, command: [x]}]\n"
    )
    result = local_cluster.cortex("deploy", str(bad), check=False)
    assert result.returncode == 1
    assert 'cortex.yaml: api "bad" (#1): pod.port' in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_against_a_stopped_cluster_say_how_to_start_it(tmp_path: Path) -> None:
    env = {**os.environ, "CORTEX_CLI_CONFIG_DIR": str(tmp_path)}
    (tmp_path / "cli.yaml").write_text(
        "default_environment: local\nenvironments:\n  - name: local\n    operator_endpoint: http://127.0.0.1:9\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "cortex", "get"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "cortex cluster up" in result.stderr


def test_inside_a_replica_the_client_and_cli_work_and_chaining_completes(local_cluster: LocalCluster) -> None:
    config = local_cluster.example("chaining")
    probe = config.parent / "probe.py"
    probe.write_text(
        "import json, os, subprocess, sys\n"
        "import cortex\n"
        "apis = [a['metadata']['name'] for a in cortex.client().list_apis()]\n"
        "cli = subprocess.run(['cortex', 'get'], capture_output=True, text=True)\n"
        "print(json.dumps({'apis': apis, 'cli_rc': cli.returncode, 'cli_out': cli.stdout}))\n"
    )
    local_cluster.cortex("deploy", str(config))
    local_cluster.wait_live("shout")
    local_cluster.wait_live("pipeline")
    rid = httpx.post(f"{local_cluster.gateway}/pipeline", json={"text": "hello"}).json()["id"]
    result = local_cluster.wait_result("pipeline", rid)
    assert result["status"] == "completed", result
    assert result["result"] == {"original": "hello", "from_shout": {"shouted": "HELLO!"}}

    # run the probe in a replica's environment: what CORTEX_* the runtime gives its containers
    (replica,) = local_cluster.json("describe", "shout")["replicas"]
    environ = _container_environ(local_cluster, replica["id"])
    out = subprocess.run(
        [sys.executable, str(probe)], env=environ, capture_output=True, text=True, timeout=60, cwd=config.parent
    )
    assert out.returncode == 0, out.stderr
    import json

    seen = json.loads(out.stdout)
    assert sorted(seen["apis"]) == ["pipeline", "shout"]
    assert seen["cli_rc"] == 0 and "pipeline" in seen["cli_out"]


def _container_environ(cluster: LocalCluster, replica_id: str) -> dict[str, str]:
    """The environment of the running user container of ``replica_id`` (read from /proc)."""
    for pid in cluster.processes():
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        environ = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        if (
            environ.get("CORTEX_REPLICA_ID") == replica_id
            and "dequeuer" not in Path(f"/proc/{pid}/cmdline").read_text()
        ):
            return environ
    raise AssertionError(f"no container process of {replica_id}")


def test_killed_container_restarts_and_its_request_completes(local_cluster: LocalCluster) -> None:
    config = local_cluster.example("document-pipeline")
    local_cluster.cortex("deploy", str(config))
    local_cluster.wait_live("documents")
    (replica,) = local_cluster.json("describe", "documents")["replicas"]
    analyzer = _pid_of(local_cluster, replica["id"], "analyzer.py")
    os.kill(analyzer, signal.SIGSTOP)  # the request waits on the analyzer...
    rid = httpx.post(f"{local_cluster.gateway}/documents", content=b"The cat sat. The cat ran!").json()["id"]
    time.sleep(0.5)
    os.kill(analyzer, signal.SIGKILL)  # ...which dies holding it, and is restarted
    result = local_cluster.wait_result("documents", rid)
    assert result["status"] == "completed", result
    assert result["result"]["sentences"] == 2 and result["result"]["top_words"][0] == ["cat", 2]
    (replica,) = local_cluster.json("describe", "documents")["replicas"]
    assert replica["restarts"] >= 1


def _pid_of(cluster: LocalCluster, replica_id: str, script: str) -> int:
    for pid in cluster.processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if script in cmdline and f"CORTEX_REPLICA_ID={replica_id}".encode() in environ:
            return pid
    raise AssertionError(f"no {script} in {replica_id}")


def test_redeploy_while_200_requests_are_in_flight_loses_and_fails_none(local_cluster: LocalCluster) -> None:
    config = local_cluster.example("hello-world")
    local_cluster.cortex("deploy", str(config))
    local_cluster.wait_live("hello-world")
    with httpx.Client(timeout=30) as http:
        rids = [http.post(f"{local_cluster.gateway}/hello-world", json={"i": i}).json()["id"] for i in range(200)]
        config.write_text(config.read_text().replace("max_replicas: 3", "max_replicas: 4"))
        assert "updating hello-world (AsyncAPI)" in local_cluster.cortex("deploy", str(config)).stdout
        rids += [http.post(f"{local_cluster.gateway}/hello-world", json={"i": i}).json()["id"] for i in range(200, 220)]
    statuses = [local_cluster.wait_result("hello-world", rid, timeout=120)["status"] for rid in rids]
    assert statuses == ["completed"] * len(rids)
    data = local_cluster.wait_live("hello-world")
    assert data["spec"]["autoscaling"]["max_replicas"] == 4


def test_cancel_a_running_request_from_the_cli(local_cluster: LocalCluster) -> None:
    config = local_cluster.example("document-pipeline")
    local_cluster.cortex("deploy", str(config))
    local_cluster.wait_live("documents")
    (replica,) = local_cluster.json("describe", "documents")["replicas"]
    analyzer = _pid_of(local_cluster, replica["id"], "analyzer.py")
    os.kill(analyzer, signal.SIGSTOP)  # the request hangs in the api container, waiting on the analyzer
    try:
        rid = httpx.post(f"{local_cluster.gateway}/documents", content=b"Some text.").json()["id"]
        deadline = time.monotonic() + 30
        while httpx.get(f"{local_cluster.gateway}/documents/{rid}").json()["status"] != "in_progress":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        import json

        cancelled = json.loads(local_cluster.cortex("request", "cancel", "documents", rid).stdout)
        assert cancelled["status"] == "cancelled"
        again = local_cluster.cortex("request", "cancel", "documents", rid)
        assert json.loads(again.stdout)["status"] == "cancelled"
    finally:
        os.kill(analyzer, signal.SIGCONT)
    done = httpx.post(f"{local_cluster.gateway}/documents", content=b"Next one.").json()["id"]
    assert local_cluster.wait_result("documents", done)["status"] == "completed"
    finished = local_cluster.cortex("request", "cancel", "documents", done, check=False)
    assert finished.returncode == 1 and "already completed" in finished.stderr
