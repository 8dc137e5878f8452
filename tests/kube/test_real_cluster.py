"""The Kubernetes runtime on a real cluster: the manual check before a release (docs/kubernetes.md).

Runs only when ``KUBECONFIG`` names a cluster this user may create namespaces in; no API server can run on
the machines CI uses, so it is skipped there. Each run works in a namespace of its own and deletes it.
``CORTEX_TEST_IMAGE`` (a pushed platform image) makes the pods' dequeuers real; without it the pods run a
stand-in and never become ready, which still checks every call the runtime makes against a real API server:
server-side apply, the scale subresource, pod-deletion-cost patches, the rolling update, delete and watch.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

# read at import: the suite's autouse fixture clears every CORTEX_* variable before each test
KUBECONFIG = os.environ.get("KUBECONFIG")
IMAGE = os.environ.get("CORTEX_TEST_IMAGE", "python:3.11-slim")

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
