"""The operator's Role grants exactly what the in-cluster operator's code calls, no verb more or less.

The runtime (all the operator does with the Kubernetes API) is driven through every call it makes against
the emulator, which records the (API group, resource, verb) RBAC checks for each request; the Role
:mod:`cortex.runtime.kubeinstall` renders must be that set.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import lightkube

from cortex.runtime.kubeinstall import InstallSettings, install_objects
from cortex.runtime.kubernetes import KubernetesRuntime
from tests.kube.authz import Attribute
from tests.kube.conftest import client_config
from tests.kube.emulator import Emulator
from tests.kube.test_runtime import SETTINGS, eventually, spec


def granted(role: dict[str, Any]) -> set[Attribute]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


async def idle(pods: list[dict[str, Any]]) -> dict[str, int | None]:
    return {pod["metadata"]["name"]: 0 for pod in pods}


async def exercise(kube: Emulator) -> None:
    """Every call the runtime makes: watch, create, update, scale out and in (deletion costs), logs, delete."""
    runtime = KubernetesRuntime(lightkube.AsyncClient(config=client_config(kube.url)), SETTINGS, pod_loads=idle)
    await runtime.start()
    try:
        await runtime.apply(spec("1"), deployment_id="d1", config_dir=Path("."), replicas=1)
        await runtime.apply(spec("2"), deployment_id="d2", config_dir=Path("."), replicas=1)
        await runtime.scale("worker", 3)
        await eventually(lambda: len(runtime.replicas("worker")) == 3, "three pods")
        await runtime.scale("worker", 1)
        [line async for line in runtime.logs("worker", follow=False)]
        follower = runtime.logs("worker", follow=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await anext(follower)
        await follower.aclose()
        await runtime.delete("worker")
    finally:
        await runtime.aclose()


async def test_the_role_holds_exactly_the_verbs_the_operator_calls(kube: Emulator) -> None:
    await exercise(kube)
    objects = install_objects(InstallSettings(queue_url="", store_url="", blobs_url=""))
    (role,) = [obj for obj in objects if obj["kind"] == "Role"]
    assert granted(role) == kube.verbs
