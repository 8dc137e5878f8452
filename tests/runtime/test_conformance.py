"""The Runtime contract, the same for every runtime: the local one (real processes) and the Kubernetes one
(against the API emulator, whose controller and kubelet start pods at once).

What each runtime adds (process supervision, pod-deletion-cost, ...) is tested in its own module; here only
what the operator and the autoscaler rely on, with no branch on the runtime.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import lightkube
import pytest

from cortex.backends import BackendUrls
from cortex.runtime import ReplicaState, Runtime
from cortex.runtime.containers import ContainerRuntime
from cortex.runtime.engine import STATE_LABEL, Engine, find_engine, remove_labelled
from cortex.runtime.kubeobjects import KubeSettings
from cortex.runtime.kubernetes import KubernetesRuntime
from cortex.runtime.local import ClusterEnv, LocalRuntime
from cortex.spec import ApiSpec, load_text
from tests.containers import images
from tests.helpers import deploy
from tests.kube.conftest import NAMESPACE, client_config
from tests.kube.emulator import Emulator
from tests.runtime.conftest import FAST, USER_SERVER, local_harness, wait_for


def podman_engine() -> Engine:
    """Podman; the test skips where it is missing, and fails under CI (``.ci/run`` installs it)."""
    missing = images.missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} not installed (.ci/run installs them)")
        pytest.skip(f"{', '.join(missing)} not installed")
    engine = find_engine("podman")
    assert engine is not None
    return engine


def spec_text(version: str, image: str | None = None) -> str:
    """One API that every runtime can run: a command for the local one, an image for Kubernetes.

    With ``image`` (the container runtime), the user server's image, run as built: no command.
    """
    command = "" if image else f'command: ["{sys.executable}", "{USER_SERVER}", "api"]'
    return f"""
- name: echo
  kind: AsyncAPI
  pod:
    containers:
      - name: api
        image: {image or f"registry.example.com/echo:{version}"}
        {command}
        env: {{TEST_VERSION: "{version}"}}
  update_strategy: {{max_surge: 1, max_unavailable: 0}}
"""


@dataclasses.dataclass
class Subject:
    """A runtime under test, and how to make an API's spec known where its replicas read it."""

    runtime: Runtime
    publish: Callable[[str], Awaitable[ApiSpec]]
    config_dir: Path
    #: the image the container runtime runs (None: the others' spec)
    image: str | None = None


@pytest.fixture(params=["local", "containers", "kubernetes"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    if request.param == "local":
        async with local_harness(tmp_path) as harness:
            yield Subject(harness.runtime, functools.partial(deploy, harness.backends.catalog), harness.tmp)
        return
    if request.param == "containers":
        engine = podman_engine()
        image = await asyncio.to_thread(images.image, "user-server")

        def make(state: Path, urls: BackendUrls, env: ClusterEnv) -> LocalRuntime:
            return ContainerRuntime(state, urls, env, engine, mode="always", settings=FAST)

        try:
            async with local_harness(tmp_path, make) as harness:
                yield Subject(harness.runtime, functools.partial(deploy, harness.backends.catalog), harness.tmp, image)
        finally:
            assert await remove_labelled(engine, {STATE_LABEL: str((tmp_path / "state").resolve())}) == 0
        return
    async with Emulator() as kube:
        client = lightkube.AsyncClient(config=client_config(kube.url))
        settings = KubeSettings(namespace=NAMESPACE, image="registry.example.com/cortex-async:test", grace_period=5)
        runtime = KubernetesRuntime(client, settings, pod_loads=_no_loads, sync_timeout=5)
        await runtime.start()
        try:
            yield Subject(runtime, _parsed, tmp_path)
        finally:
            await runtime.aclose()


async def _parsed(text: str) -> ApiSpec:
    (spec,) = load_text(text, "cortex.yaml")
    return spec


async def _no_loads(pods: list[dict[str, object]]) -> dict[str, int | None]:
    return {}


async def apply(subject: Subject, version: str, *, deployment_id: str, replicas: int) -> None:
    spec = await subject.publish(spec_text(version, subject.image))
    await subject.runtime.apply(spec, deployment_id=deployment_id, config_dir=subject.config_dir, replicas=replicas)


async def all_ready(subject: Subject, count: int, deployment_id: str, timeout: float = 30) -> None:
    def check() -> bool:
        replicas = subject.runtime.replicas("echo")
        return len(replicas) == count and all(
            r.state == ReplicaState.READY and r.deployment_id == deployment_id for r in replicas
        )

    await wait_for(f"{count} ready replica(s) of {deployment_id}", check, timeout)


async def test_an_unknown_api_has_no_replicas(subject: Subject) -> None:
    assert subject.runtime.replicas("nothing") == []
    assert subject.runtime.requested("nothing") == 0


async def test_apply_scale_roll_delete(subject: Subject) -> None:
    runtime = subject.runtime
    await apply(subject, "1", deployment_id="d1aaaaaa", replicas=1)
    assert runtime.requested("echo") == 1
    await all_ready(subject, 1, "d1aaaaaa")
    (replica,) = runtime.replicas("echo")
    assert replica.api == "echo" and replica.restarts == 0 and replica.started_at > 0

    await runtime.scale("echo", 2)
    assert runtime.requested("echo") == 2
    await all_ready(subject, 2, "d1aaaaaa")
    await runtime.scale("echo", 1)
    assert runtime.requested("echo") == 1
    await all_ready(subject, 1, "d1aaaaaa")

    # a new deployment id replaces every replica, and the count stays
    await apply(subject, "2", deployment_id="d2bbbbbb", replicas=1)
    await all_ready(subject, 1, "d2bbbbbb")
    assert runtime.requested("echo") == 1

    await runtime.delete("echo")
    assert runtime.replicas("echo") == []
    assert runtime.requested("echo") == 0


async def test_scale_to_zero_and_back(subject: Subject) -> None:
    runtime = subject.runtime
    await apply(subject, "1", deployment_id="d1aaaaaa", replicas=1)
    await all_ready(subject, 1, "d1aaaaaa")
    await runtime.scale("echo", 0)
    assert runtime.requested("echo") == 0
    await wait_for("no replica", lambda: runtime.replicas("echo") == [], 30)
    await runtime.scale("echo", 1)
    await all_ready(subject, 1, "d1aaaaaa")
