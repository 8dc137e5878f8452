"""A local cluster with keys on: the gateway, the operator, the CLI, chaining from inside replicas, and the logs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.cluster.conftest import ClusterFactory, LocalCluster

KEY = "cluster-key-4e8a1c6f2b9d"
TOKEN = "operator-token-7b3d9f1e5a2c"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def secured(make_cluster: ClusterFactory, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    # secrets through the environment, as documented; gone again before any other command runs
    monkeypatch.setenv("CORTEX_API_KEYS", KEY)
    monkeypatch.setenv("CORTEX_OPERATOR_TOKEN", TOKEN)
    cluster = make_cluster("--grace-period", "5", "--refuse-private-webhooks")
    monkeypatch.delenv("CORTEX_API_KEYS")
    monkeypatch.delenv("CORTEX_OPERATOR_TOKEN")
    return cluster


def test_the_operator_needs_the_token_the_cli_has_in_cli_yaml(secured: LocalCluster) -> None:
    cluster = secured
    info = json.loads(cluster.cortex("cluster", "info", "-o", "json").stdout)
    operator = info["operator_url"]
    assert info["apis"] == 0  # `cluster info` asked the operator, with the token

    # the CLI environment holds the token and the key, readable by its owner only
    path = cluster.config_dir / "cli.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (env,) = [e for e in yaml.safe_load(path.read_text())["environments"] if e["name"] == "local"]
    assert (env["operator_token"], env["api_key"]) == (TOKEN, KEY)

    # the operator: 401 without the token, 403 with a wrong one; health stays open
    assert httpx.get(f"{operator}/get", timeout=10).status_code == 401
    assert httpx.get(f"{operator}/get", headers=bearer("wrong-token-0123456789"), timeout=10).status_code == 403
    assert httpx.get(f"{operator}/healthz", timeout=10).status_code == 200

    # the CLI sends the token it has in cli.yaml
    assert cluster.json("get", "-e", "local") == []

    # a wrong token in the CLI environment: a clear error, exit 1
    cluster.cortex("env", "configure", "local", "--operator-endpoint", operator, "--operator-token", "x" * 20)
    failed = cluster.cortex("get", check=False)
    assert failed.returncode == 1 and "refused the token" in failed.stderr


def test_gateway_keys_and_chaining_from_inside_replicas(secured: LocalCluster) -> None:
    cluster = secured
    # the CLI deploys with the token from cli.yaml
    config = cluster.example("chaining")
    cluster.cortex("deploy", str(config))
    cluster.wait_live("shout")
    cluster.wait_live("pipeline")

    # the gateway: 401 without a key, 403 with a wrong one, 200 with the cluster's
    url = f"{cluster.gateway}/pipeline"
    missing = httpx.post(url, json={"text": "hello"}, timeout=10)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(url, json={"text": "hello"}, headers=bearer("wrong-key-0123456789"), timeout=10)
    assert wrong.status_code == 403
    assert httpx.get(f"{cluster.gateway}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{cluster.gateway}/metrics", timeout=10).status_code == 200
    refused = httpx.post(
        url, json={}, headers={**bearer(KEY), "X-Cortex-Webhook-URL": "http://127.0.0.1:1/hook"}, timeout=10
    )
    assert refused.status_code == 400 and "non-public" in refused.json()["error"]

    # chaining: pipeline's replica POSTs to shout through the gateway with the key the runtime gave it
    rid = httpx.post(url, json={"text": "hello"}, headers=bearer(KEY), timeout=10).json()["id"]
    result = wait_result(cluster, "pipeline", rid)
    assert result["status"] == "completed", result
    assert result["result"] == {"original": "hello", "from_shout": {"shouted": "HELLO!"}}

    # inside a replica, cortex.client() and the CLI work with the cli.yaml the cluster wrote for it
    (replica,) = cluster.json("describe", "shout")["replicas"]
    environ = container_environ(cluster, replica["id"])
    assert environ["CORTEX_API_KEY"] and environ["CORTEX_API_KEY"] != KEY  # the replicas' own key
    assert "CORTEX_API_KEYS" not in environ and "CORTEX_OPERATOR_TOKEN" not in environ
    probe = config.parent / "probe.py"
    probe.write_text(
        "import json, subprocess\n"
        "import cortex\n"
        "cx = cortex.client()\n"
        "apis = sorted(a['metadata']['name'] for a in cx.list_apis())\n"
        "rid = cx.submit('shout', {'text': 'inner'})\n"
        "result = cx.result('shout', rid, timeout=30)\n"
        "cli = subprocess.run(['cortex', 'get'], capture_output=True, text=True)\n"
        "print(json.dumps({'apis': apis, 'result': result, 'cli_rc': cli.returncode}))\n"
    )
    out = subprocess.run(
        [sys.executable, str(probe)], env=environ, capture_output=True, text=True, timeout=60, cwd=config.parent
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"apis": ["pipeline", "shout"], "result": {"shouted": "INNER!"}, "cli_rc": 0}

    # no key or token in any log, and the key nowhere in the state directory (only its digest is kept)
    for file in (cluster.state_dir / "logs").rglob("*"):
        if file.is_file():
            text = file.read_bytes()
            assert KEY.encode() not in text and TOKEN.encode() not in text, file
    for file in cluster.state_dir.rglob("*"):
        if file.is_file():
            assert KEY.encode() not in file.read_bytes(), file


def wait_result(cluster: LocalCluster, api: str, rid: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, object] = httpx.get(f"{cluster.gateway}/{api}/{rid}", headers=bearer(KEY), timeout=10).json()
        if data["status"] in ("completed", "failed", "cancelled"):
            return data
        assert time.monotonic() < deadline, f"{rid} still {data['status']} after {timeout}s"
        time.sleep(0.05)


def container_environ(cluster: LocalCluster, replica_id: str) -> dict[str, str]:
    """The environment of the running user container of ``replica_id`` (read from /proc)."""
    for pid in cluster.processes():
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
        except OSError:
            continue
        environ = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        if environ.get("CORTEX_REPLICA_ID") == replica_id and "dequeuer" not in cmdline:
            return environ
    raise AssertionError(f"no container process of {replica_id}")
