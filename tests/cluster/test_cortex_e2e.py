"""Cortex's own end-to-end flow for an AsyncAPI (``test/e2e/e2e/tests.py::test_async_api`` of v0.42), ported.

The calls are the ones Cortex's e2e suite makes, with its arguments: ``cortex.client(env)``,
``client.deploy(api_spec=...)`` without waiting, readiness as ``requested >= 1`` and
``requested == ready == up_to_date``, ``POST`` to the API's ``endpoint``, polling
``GET <endpoint>/<id>`` until ``completed``, ``cortex logs <api> --random-pod -e <env>`` (its
``stream_api_logs``), and ``client.delete(name)``. They run unchanged against a local cluster;
the helpers are written here again, in this project's style, rather than imported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import cortex
from cortex.client import Client
from cortex.errors import NotFound
from tests.cluster.conftest import ClusterFactory, LocalCluster

USER_SERVER = Path(__file__).resolve().parents[1] / "e2e" / "user_server.py"


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Cortex's ``wait_for``: poll every second until ``check`` holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1)
    return False


def apis_ready(client: Client, api_names: list[str], timeout: float, at_least: int = 1) -> bool:
    """Cortex's readiness check: at least ``at_least`` requested, and requested == ready == up_to_date."""

    def live(status: dict[str, int]) -> bool:
        return status["requested"] >= at_least and status["requested"] == status["ready"] == status["up_to_date"]

    return wait_for(lambda: all(live(client.get_api(name)["status"]) for name in api_names), timeout)


def post_request(client: Client, api_name: str, payload: Any) -> httpx.Response:
    return httpx.post(client.get_api(api_name)["endpoint"], json=payload, timeout=30)


def retrieve_async_result(client: Client, api_name: str, request_id: str) -> httpx.Response:
    return httpx.get(f"{client.get_api(api_name)['endpoint']}/{request_id}", timeout=30)


def poll_until_completed(client: Client, api_name: str, request_id: str, retries: int = 60) -> dict[str, Any]:
    """test_async_api's loop: keep polling on a non-200 or an unfinished status, then check the answer."""
    body: dict[str, Any] = {}
    for _ in range(retries + 1):
        response = retrieve_async_result(client, api_name, request_id)
        if response.status_code != 200:
            time.sleep(1)
            continue
        body = response.json()
        assert "id" in body and "status" in body, body
        if body["status"] == "completed":
            break
        time.sleep(1)
    return body


def random_pod_lines(cluster: LocalCluster, api_name: str, env_name: str, until: str) -> list[str]:
    """``cortex logs <api> --random-pod -e <env>`` (Cortex's ``stream_api_logs``), read until a line has ``until``."""
    command = [sys.executable, "-m", "cortex", "logs", api_name, "--random-pod", "-e", env_name]
    lines: list[str] = []
    with subprocess.Popen(command, env=cluster.env, stdout=subprocess.PIPE, text=True, cwd=cluster.workdir) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                lines.append(line.rstrip("\n"))
                if until in line:
                    break
        finally:
            process.terminate()
            process.wait(timeout=20)
    return lines


@pytest.fixture
def cortex_env(local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    """This process's environment points at the cluster, as the e2e suite's CLI config did."""
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(local_cluster.config_dir))
    return local_cluster


def test_cortex_e2e_async_api_flow(cortex_env: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    api_dir = cortex_env.example("hello-world").parent
    monkeypatch.chdir(api_dir)  # the spec's command runs beside it, as the image's files did
    (api_spec,) = yaml.safe_load((api_dir / "cortex.yaml").read_text())
    api_name = api_spec["name"]
    payload = {"text": "from cortex's e2e"}

    client = cortex.client("local")
    try:
        request_id = run_test_async_api(client, cortex_env, api_spec, payload)
        # after the delete, the request is still there for whoever holds its id, until it expires
        after = retrieve_async_result_by_url(cortex_env.gateway, api_name, request_id)
        assert (after["status"], after["result"]["payload"]) == ("completed", payload)
        shown = json.loads(cortex_env.cortex("request", "get", api_name, request_id).stdout)
        assert shown["status"] == "completed"
        with pytest.raises(NotFound):
            client.get_api(api_name)
    finally:
        client.close()  # Cortex's client held no connections; this one has a pool to give back


def run_test_async_api(client: Client, cluster: LocalCluster, api_spec: dict[str, Any], payload: Any) -> str:
    """test_async_api's body: deploy, wait until ready, submit, poll, stream one pod's logs, delete."""
    api_name = api_spec["name"]
    client.deploy(api_spec=api_spec)
    try:
        assert apis_ready(client, [api_name], timeout=45), f"apis {api_name} not ready"
        response = post_request(client, api_name, payload)
        assert response.status_code == 200, f"workload submission status code: got {response.status_code}"
        assert "id" in response.json()
        request_id: str = response.json()["id"]

        result = poll_until_completed(client, api_name, request_id)
        assert {"id", "status", "result", "timestamp"} <= set(result), result
        assert result["id"] == request_id
        assert result["status"] == "completed"
        assert result["timestamp"] != "" and result["result"] != ""
        assert result["result"]["payload"] == payload

        # read until the user server's own line for the request (the dequeuer logs a completed request at DEBUG)
        lines = random_pod_lines(cluster, api_name, client.env_name or "", until='"POST / HTTP/1.1" 200')
        replicas = {replica["id"] for replica in client.describe(api_name)["replicas"]}
        prefixes = {line.split(" ", 1)[0].lstrip("[") for line in lines}
        assert len(prefixes) == 1 and prefixes <= replicas, prefixes  # one replica's lines, all its containers
        (started,) = [line for line in lines if f"dequeuer for {api_name} forwarding to" in line]
        assert not started.split("] ", 1)[1].startswith("{"), started  # the dequeuer's JSON, made readable
        assert "INFO dequeuer for" in started, started
    finally:
        client.delete(api_name)
    return request_id


def retrieve_async_result_by_url(gateway: str, api_name: str, request_id: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway}/{api_name}/{request_id}", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


SLOW = """
- name: slow
  kind: AsyncAPI
  pod:
    max_concurrency: 1
    containers:
      - name: api
        command: ["python", "user_server.py"]
  autoscaling: {min_replicas: 1, max_replicas: 1}
"""


def wait_status(cluster: LocalCluster, api: str, rid: str, wanted: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = retrieve_async_result_by_url(cluster.gateway, api, rid)
        if body["status"] == wanted:
            return body
        assert time.monotonic() < deadline, f"{rid} is {body['status']}, not {wanted}, after {timeout}s"
        time.sleep(0.1)


def test_delete_cancels_what_waits_and_a_redeploy_runs_none_of_it(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("--grace-period", "1")
    api_dir = cluster.workdir / "slow"
    api_dir.mkdir()
    shutil.copy(USER_SERVER, api_dir / "user_server.py")
    (api_dir / "cortex.yaml").write_text(SLOW)
    cluster.cortex("deploy", str(api_dir / "cortex.yaml"), "--wait", "--timeout", "40")

    def submit(payload: dict[str, Any]) -> str:
        rid: str = httpx.post(f"{cluster.gateway}/slow", json=payload, timeout=30).json()["id"]
        return rid

    done = submit({})
    wait_status(cluster, "slow", done, "completed")
    running = submit({"sleep": 30})
    wait_status(cluster, "slow", running, "in_progress")
    waiting = submit({})  # behind the running one: max_concurrency 1, one replica

    assert "deleting slow" in cluster.cortex("delete", "slow").stdout
    assert retrieve_async_result_by_url(cluster.gateway, "slow", done)["status"] == "completed"
    for rid in (running, waiting):
        cancelled = retrieve_async_result_by_url(cluster.gateway, "slow", rid)
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["error"] == {"kind": "api_deleted", "message": "api slow was deleted before this request ran"}

    cluster.cortex("deploy", str(api_dir / "cortex.yaml"), "--wait", "--timeout", "40")
    fresh = submit({})
    assert wait_status(cluster, "slow", fresh, "completed")["attempts"] == 1
    # the new replica took the fresh request, and not one of the old ones: they are still as the delete left them
    for rid in (running, waiting):
        again = retrieve_async_result_by_url(cluster.gateway, "slow", rid)
        assert (again["status"], again["error"]["kind"]) == ("cancelled", "api_deleted")
