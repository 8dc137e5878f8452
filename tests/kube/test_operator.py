"""The operator on Kubernetes and ``cortex cluster up|down --provider kubernetes``, against the emulator.

The CLI runs as a subprocess, as users run it; the emulator (and the operator) serve in the test's loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cortex.backends import BackendUrls
from cortex.operator.control_plane import ControlPlaneSettings
from cortex.operator.incluster import InClusterSettings, run_operator
from cortex.runtime.kubeobjects import KubeSettings
from cortex.runtime.plan import free_port
from tests.kube.conftest import NAMESPACE
from tests.kube.emulator import Emulator
from tests.kube.schemas import validation_error

HELLO = Path(__file__).parents[2] / "examples/hello-world/cortex.yaml"


async def cortex(*args: str, config_dir: Path, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``cortex ARGS`` without blocking the loop the emulator serves on; (exit code, stdout, stderr)."""
    env = {**os.environ, "CORTEX_CLI_CONFIG_DIR": str(config_dir), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("KUBECONFIG", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cortex", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def operator(kube: Emulator, kubeconfig: Path, tmp_path: Path) -> AsyncIterator[str]:
    """An operator on the emulator (SQLite backends: one machine is enough for the test); its URL."""
    port = free_port(())
    url = f"http://127.0.0.1:{port}"
    settings = InClusterSettings(
        control=ControlPlaneSettings(
            host="127.0.0.1", port=port, gateway_url="http://gateway:8888", autoscaler_tick=0.5
        ),
        kube=KubeSettings(namespace=NAMESPACE, image="registry.example.com/cortex-async:test", grace_period=5),
        urls=BackendUrls.for_state_dir(tmp_path / "state"),
        operator_url=url,
        kubeconfig=str(kubeconfig),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_operator(settings, stop))
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 20
        while True:
            assert not task.done(), task.exception()
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the operator did not answer"
            await asyncio.sleep(0.05)
    config = tmp_path / "cli"
    config.mkdir()
    environment = {"name": "default", "operator_endpoint": url}
    (config / "cli.yaml").write_text(yaml.safe_dump({"default_environment": "default", "environments": [environment]}))
    yield url
    stop.set()
    await asyncio.wait_for(task, 20)


async def test_the_cli_works_against_the_operator_on_kubernetes(kube: Emulator, operator: str, tmp_path: Path) -> None:
    config = tmp_path / "cli"
    code, out, err = await cortex("deploy", str(HELLO), "--wait", "--timeout", "30", config_dir=config)
    assert code == 0, err
    assert "creating hello-world (AsyncAPI)" in out
    assert "hello-world is ready (1/1 replicas)" in out
    deployment = kube.get("deployments", "api-hello-world")
    assert deployment is not None
    assert validation_error({key: value for key, value in deployment.items() if key != "status"}) is None
    containers = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert containers == ["api", "dequeuer"]

    code, out, err = await cortex("get", "-o", "json", config_dir=config)
    assert code == 0, err
    (entry,) = json.loads(out)  # Cortex's [{"env_name", "apis", "error"}], one per environment
    (api,) = entry["apis"]
    assert api["status"] == {"ready": 1, "requested": 1, "up_to_date": 1}
    assert api["endpoint"] == "http://gateway:8888/hello-world"

    code, out, err = await cortex("describe", "hello-world", "-o", "json", config_dir=config)
    assert code == 0, err
    description = json.loads(out)
    assert description["replica_counts"]["ready"] == 1
    (replica,) = description["replicas"]
    assert replica["id"].startswith("api-hello-world-") and replica["state"] == "ready"

    kube.set_logs(replica["id"], "api", ["serving on 8080"])
    kube.set_logs(replica["id"], "dequeuer", ["dequeuer for hello-world forwarding"])
    code, out, err = await cortex("logs", "hello-world", "--no-follow", config_dir=config)
    assert code == 0, err
    assert f"[{replica['id']} api] serving on 8080" in out
    assert f"[{replica['id']} dequeuer] dequeuer for hello-world forwarding" in out

    code, out, err = await cortex("refresh", "hello-world", config_dir=config)
    assert code == 0, err
    labels = kube.get("deployments", "api-hello-world")["spec"]["template"]["metadata"]["labels"]  # type: ignore[index]
    assert labels["deploymentID"] != deployment["spec"]["template"]["metadata"]["labels"]["deploymentID"]

    code, out, err = await cortex("delete", "hello-world", config_dir=config)
    assert code == 0, err
    assert "deleting hello-world" in out
    assert kube.get("deployments", "api-hello-world") is None
    assert kube.objects("pods", NAMESPACE) == []


async def test_an_api_without_image_is_refused_with_the_reason(operator: str, tmp_path: Path) -> None:
    local_only = tmp_path / "cortex.yaml"
    local_only.write_text(
        "- name: local\n  kind: AsyncAPI\n  pod:\n    containers:\n      - {name: api, command: [x]}\n"
    )
    code, _, err = await cortex("deploy", str(local_only), config_dir=tmp_path / "cli")
    assert code == 1
    assert "no image" in err and "Traceback" not in err


# -- cortex cluster up|down --provider kubernetes ----------------------------------------------------


def install_args(kubeconfig: Path) -> list[str]:
    return [
        "--provider",
        "kubernetes",
        "--kubeconfig",
        str(kubeconfig),
        "--queue",
        "redis://redis.cortex.svc:6379/0",
        "--store",
        "redis://redis.cortex.svc:6379/0",
        "--blobs",
        "s3://payloads/prod",
    ]


def secret_value(kube: Emulator, name: str, key: str) -> str:
    secret: dict[str, Any] | None = kube.get("secrets", name)
    assert secret is not None
    return base64.b64decode(secret["data"][key]).decode()


async def test_cluster_up_installs_the_platform_and_configures_the_cli(
    kube: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    config = tmp_path / "cli"
    args = [*install_args(kubeconfig), "--operator-url", "http://operator.example:8889", "--env", "prod"]
    args += ["--image-pull-secret", "regcred"]
    code, _, err = await cortex("cluster", "up", *args, "--operator-token", "t" * 32, config_dir=config)
    assert code == 0, err
    assert "cortex-async is installed in namespace cortex" in err
    kinds = {
        (obj["kind"], obj["metadata"]["name"])
        for plural in ("deployments", "services", "secrets")
        for obj in kube.objects(plural)
    }
    assert {
        ("Deployment", "operator"),
        ("Deployment", "gateway"),
        ("Service", "operator"),
        ("Service", "gateway"),
    } <= kinds
    assert {
        ("Secret", name) for name in ("cortex-backends", "cortex-client", "cortex-gateway", "cortex-operator")
    } <= kinds
    assert kube.get("horizontalpodautoscalers", "gateway") is not None
    operator_pod = kube.get("deployments", "operator")["spec"]["template"]["spec"]  # type: ignore[index]
    assert operator_pod["imagePullSecrets"] == [{"name": "regcred"}]
    operator_args = operator_pod["containers"][0]["args"]
    assert operator_args[operator_args.index("--image-pull-secret") + 1] == "regcred"
    assert kube.get("roles", "operator") is not None
    assert secret_value(kube, "cortex-backends", "CORTEX_QUEUE_URL") == "redis://redis.cortex.svc:6379/0"
    assert secret_value(kube, "cortex-operator", "CORTEX_OPERATOR_TOKEN") == "t" * 32
    chain_key = secret_value(kube, "cortex-client", "api_key")
    # the API pods' cli.yaml holds a read-only token, never the operator token
    replica_token = secret_value(kube, "cortex-operator", "CORTEX_OPERATOR_READ_TOKEN")
    replicas_config = yaml.safe_load(secret_value(kube, "cortex-client", "cli.yaml"))
    assert replicas_config["environments"][0]["operator_token"] == replica_token != "t" * 32
    # the CLI environment points at the operator, with its token
    environments = yaml.safe_load((config / "cli.yaml").read_text())["environments"]
    (prod,) = [env for env in environments if env["name"] == "prod"]
    assert prod["operator_endpoint"] == "http://operator.example:8889"
    assert prod["operator_token"] == "t" * 32

    # again: updated in place, and the replicas' key is kept (rotating it would break chaining in running pods)
    code, _, err = await cortex("cluster", "up", *args, config_dir=config)
    assert code == 0, err
    assert secret_value(kube, "cortex-client", "api_key") == chain_key
    # without --operator-token this time: the Secret is replaced, not merged, so no token is left enforced
    operator_secret = kube.get("secrets", "cortex-operator")
    assert operator_secret is not None and "CORTEX_OPERATOR_TOKEN" not in (operator_secret.get("data") or {})
    assert "operator_token" not in secret_value(kube, "cortex-client", "cli.yaml")


async def test_cluster_info_shows_what_is_installed(kube: Emulator, kubeconfig: Path, tmp_path: Path) -> None:
    config = tmp_path / "cli"
    info = ["cluster", "info", "--provider", "kubernetes", "--kubeconfig", str(kubeconfig)]
    code, _, err = await cortex(*info, config_dir=config)
    assert code == 1 and "cortex-async is not installed in namespace cortex" in err
    code, _, err = await cortex("cluster", "up", *install_args(kubeconfig), config_dir=config)
    assert code == 0, err
    code, out, err = await cortex(*info, "-o", "json", config_dir=config)
    assert code == 0, err
    data = json.loads(out)
    assert data["operator"]["ready"] == 1
    assert data["operator"]["url"] == "http://operator.cortex.svc.cluster.local:8889"
    assert data["gateway"]["ready"] >= 1 and data["gateway"]["service_type"] == "ClusterIP"
    assert data["apis"] == []
    code, out, err = await cortex(*info, config_dir=config)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert ["operator", "1/1", "ClusterIP", "http://operator.cortex.svc.cluster.local:8889", "-"] in rows
    assert ["apis:", "0"] in rows


async def test_cluster_up_without_an_operator_url_says_how_to_reach_it(
    kube: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    code, _, err = await cortex("cluster", "up", *install_args(kubeconfig), config_dir=tmp_path / "cli")
    assert code == 0, err
    assert "kubectl -n cortex port-forward svc/operator 8889" in err
    environments = yaml.safe_load((tmp_path / "cli" / "cli.yaml").read_text())["environments"]
    (env,) = [env for env in environments if env["name"] == "kubernetes"]
    assert env["operator_endpoint"] == "http://127.0.0.1:8889"


async def test_cluster_down_removes_the_apis_and_the_platform(kube: Emulator, kubeconfig: Path, tmp_path: Path) -> None:
    config = tmp_path / "cli"
    code, _, err = await cortex("cluster", "up", *install_args(kubeconfig), config_dir=config)
    assert code == 0, err
    kube.put_object(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api-x", "labels": {"apiName": "x", "cortex.dev/api": "true"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"apiName": "x"}},
                "template": {
                    "metadata": {"labels": {"apiName": "x"}},
                    "spec": {"containers": [{"name": "a", "image": "a"}]},
                },
            },
        }
    )
    args = ["cluster", "down", "--provider", "kubernetes", "--kubeconfig", str(kubeconfig)]
    code, _, err = await cortex(*args, config_dir=config)
    assert code == 0, err
    assert "(1 APIs deleted)" in err
    assert kube.objects("deployments") == []
    assert kube.objects("secrets") == []
    assert kube.objects("pods") == []
    assert kube.get("namespaces", "cortex", namespace="") is not None  # it may hold what is not ours


async def test_cluster_up_says_what_is_wrong(kube: Emulator, kubeconfig: Path, tmp_path: Path) -> None:
    code, _, err = await cortex(
        "cluster", "up", "--provider", "kubernetes", "--queue", "redis://r", config_dir=tmp_path
    )
    assert code == 2 and "--store, --blobs: required with --provider kubernetes" in err
    kube.fail_next(403, count=10)
    code, _, err = await cortex("cluster", "up", *install_args(kubeconfig), config_dir=tmp_path)
    assert code == 1 and "kubernetes:" in err and "403" in err and "Traceback" not in err
