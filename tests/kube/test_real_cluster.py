"""cortex-async on a real cluster: the manual check before a release (docs/kubernetes.md, "On a real cluster").

Runs only when ``KUBECONFIG`` names a cluster this user may create namespaces in; no API server can run on
the machines CI uses, so it is skipped there. Each run works in a namespace of its own and deletes it.

- :func:`test_the_runtime_drives_a_real_cluster`: the runtime alone. ``CORTEX_TEST_IMAGE`` (the platform
  image, pushed or loaded into the cluster) makes the pods' dequeuers real; without it the pods run a
  stand-in and never become ready, which still checks every call the runtime makes against a real API
  server: server-side apply, the scale subresource, pod-deletion-cost patches, the rolling update, delete,
  watch, and that the operator's Role allows each of them.
- :func:`test_the_platform_serves_an_api_on_a_real_cluster`: the whole path. ``cortex cluster up`` installs
  the platform, ``cortex deploy`` the hello-world example, a request is submitted to the gateway and its
  result read back, the API is scaled out and in, then deleted and the platform uninstalled. It also needs
  ``CORTEX_TEST_BACKENDS`` (the queue, store and blobs URLs the pods reach, space-separated), the example's
  image ``cortex-examples/hello-world:0.1.0`` on the nodes, and ``kubectl`` (for port-forwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cortex.runtime.plan import free_port

# read at import: the suite's autouse fixture clears every CORTEX_* variable before each test
KUBECONFIG = os.environ.get("KUBECONFIG")
IMAGE = os.environ.get("CORTEX_TEST_IMAGE", "python:3.11-slim")
PLATFORM_IMAGE = os.environ.get("CORTEX_TEST_IMAGE")
BACKENDS = os.environ.get("CORTEX_TEST_BACKENDS", "").split()
HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-world" / "cortex.yaml"

pytestmark = pytest.mark.skipif(not KUBECONFIG, reason="no KUBECONFIG: the real-cluster check is manual")

API = """
- name: probe
  kind: AsyncAPI
  pod:
    containers:
      - name: api
        image: python:3.11-slim
        command: ["python", "-m", "http.server", "$(CORTEX_PORT)"]
        env: {{TAG: "{tag}"}}
  update_strategy: {{max_surge: 1, max_unavailable: 0}}
"""


async def until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.5)


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace, Secret

    from cortex.runtime.kubernetes import connect

    name = f"cortex-test-{secrets.token_hex(3)}"
    client = connect(name, kubeconfig=KUBECONFIG)
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    for secret in ("cortex-backends", "cortex-client"):
        await client.create(Secret(metadata=ObjectMeta(name=secret, namespace=name), stringData={"cli.yaml": "{}"}))
    try:
        yield name
    finally:
        await client.delete(Namespace, name)
        await client.close()


@pytest.fixture
def empty_namespace() -> Iterator[str]:
    """A fresh namespace name for ``cluster up`` to create; deleted after the test, whatever was left in it."""
    name = f"cortex-test-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        subprocess.run(["kubectl", "delete", "namespace", name, "--wait=false"], capture_output=True, timeout=60)


async def test_the_runtime_drives_a_real_cluster(namespace: str) -> None:
    from cortex.runtime.kubeobjects import KubeSettings
    from cortex.runtime.kubernetes import KubernetesRuntime, connect
    from cortex.spec import load_text

    settings = KubeSettings(namespace=namespace, image=IMAGE, grace_period=10)
    runtime = KubernetesRuntime(connect(namespace, kubeconfig=KUBECONFIG), settings)
    await runtime.start()
    try:
        (first,) = load_text(API.format(tag="1"), "cortex.yaml")
        await runtime.apply(first, deployment_id="d1", config_dir=Path("."), replicas=1)
        await until(lambda: len(runtime.replicas("probe")) == 1, "a pod")
        await runtime.scale("probe", 3)
        await until(lambda: len(runtime.replicas("probe")) == 3, "three pods")
        await runtime.scale("probe", 1)  # marks pods with pod-deletion-cost first: the Role must allow it
        await until(lambda: len([r for r in runtime.replicas("probe") if r.state != "terminating"]) == 1, "one pod")
        (second,) = load_text(API.format(tag="2"), "cortex.yaml")
        await runtime.apply(second, deployment_id="d2", config_dir=Path("."), replicas=1)
        await until(lambda: any(r.deployment_id == "d2" for r in runtime.replicas("probe")), "a pod of d2")
        await runtime.delete("probe")
        assert runtime.replicas("probe") == []
    finally:
        await runtime.aclose()


def cortex(*args: str, config_dir: Path, timeout: float = 600) -> str:
    """Run ``cortex ARGS`` as a user does; its stdout (a failure shows stderr)."""
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "CORTEX_CLI_CONFIG_DIR": str(config_dir), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "cortex", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"cortex {' '.join(args)}: {done.stderr}"
    return done.stdout


@contextlib.contextmanager
def port_forward(namespace: str, service: str, port: int, local: int | None = None) -> Iterator[str]:
    """``kubectl port-forward svc/<service>`` on loopback port ``local`` (a free one); its URL once it answers."""
    local = local or free_port(())
    process = subprocess.Popen(
        ["kubectl", "-n", namespace, "port-forward", f"svc/{service}", f"{local}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{local}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"port-forward to {service} did not answer within 30s"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.skipif(
    not (PLATFORM_IMAGE and len(BACKENDS) == 3 and shutil.which("kubectl")),
    reason="needs CORTEX_TEST_IMAGE, CORTEX_TEST_BACKENDS (queue store blobs) and kubectl",
)
def test_the_platform_serves_an_api_on_a_real_cluster(empty_namespace: str, tmp_path: Path) -> None:
    assert PLATFORM_IMAGE is not None
    ns, config = empty_namespace, tmp_path / "cli"
    queue, store, blobs = BACKENDS
    install = ["--provider", "kubernetes", "-n", ns, "--image", PLATFORM_IMAGE, "--queue", queue]
    install += ["--store", store, "--blobs", blobs, "--operator-token", secrets.token_hex(24), "--grace-period", "20"]
    with port_forward_after_install(ns, install, config) as (operator_url, gateway_url):
        assert operator_url
        cortex("deploy", str(HELLO), "-e", "kubernetes", "--wait", "--timeout", "300", config_dir=config)
        # submit, then poll the result through the gateway
        request_id = httpx.post(f"{gateway_url}/hello-world", json={"text": "hi"}, timeout=30).json()["id"]
        deadline = time.monotonic() + 120
        while (answer := httpx.get(f"{gateway_url}/hello-world/{request_id}", timeout=30).json())["status"] in (
            "in_queue",
            "in_progress",
        ):
            assert time.monotonic() < deadline, f"request {request_id} not done within 120s: {answer}"
            time.sleep(1)
        assert answer["status"] == "completed", answer
        # scale: out to two replicas by raising min_replicas, then back in to one
        scaled = tmp_path / "cortex.yaml"
        scaled.write_text(HELLO.read_text().replace("min_replicas: 1", "min_replicas: 2"))
        cortex("deploy", str(scaled), "-e", "kubernetes", "--wait", "--timeout", "300", config_dir=config)
        (api,) = json.loads(cortex("get", "-e", "kubernetes", "-o", "json", config_dir=config))
        assert api["status"]["ready"] == 2, api
        cortex("deploy", str(HELLO), "-e", "kubernetes", "--wait", "--timeout", "300", config_dir=config)
        cortex("delete", "hello-world", "-e", "kubernetes", "-y", config_dir=config)
        assert json.loads(cortex("get", "-e", "kubernetes", "-o", "json", config_dir=config)) == []
    cortex("cluster", "down", "--provider", "kubernetes", "-n", ns, config_dir=config)


@contextlib.contextmanager
def port_forward_after_install(ns: str, install: list[str], config: Path) -> Iterator[tuple[str, str]]:
    """Install with ``cluster up``, the CLI environment pointed at a port-forward to the operator."""
    operator_port = free_port(())
    # the forward can only start once the Service exists: install first, pointing the CLI at the port chosen
    cortex("cluster", "up", *install, "--operator-url", f"http://127.0.0.1:{operator_port}", config_dir=config)
    with (
        port_forward(ns, "operator", 8889, operator_port) as operator_url,
        port_forward(ns, "gateway", 8888) as gateway_url,
    ):
        yield operator_url, gateway_url
