"""Fixtures: a Kubernetes API emulator on loopback (:mod:`tests.kube.emulator`) and lightkube clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import lightkube
import pytest
import yaml
from lightkube.config.models import Cluster, User

from tests.kube.emulator import Emulator

#: the namespace clients work in by default, as our runtime's does
NAMESPACE = "cortex"


def client_config(url: str, namespace: str = NAMESPACE) -> lightkube.KubeConfig:
    """A lightkube configuration for the server at ``url``, without credentials.

    ``KubeConfig.from_server(url)`` would do, but lightkube 1.0.1 then fails to build a client ("Missing user"):
    its client adapter asserts that the context has a user, and ``from_server`` sets none.
    """
    return lightkube.KubeConfig.from_one(cluster=Cluster(server=url), user=User(), namespace=namespace)


@pytest.fixture
async def kube() -> AsyncIterator[Emulator]:
    """A started emulator, with the Deployment controller; stopped after the test."""
    async with Emulator() as emulator:
        yield emulator


@pytest.fixture
async def kube_client(kube: Emulator) -> AsyncIterator[lightkube.AsyncClient]:
    """A lightkube client of :func:`kube`, in the ``cortex`` namespace; closed after the test."""
    client = lightkube.AsyncClient(config=client_config(kube.url))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def kubeconfig(kube: Emulator, tmp_path: Path) -> Path:
    """A kubeconfig file whose current context is :func:`kube`, in the ``cortex`` namespace."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": kube.url}}],
        "users": [{"name": "emulator", "user": {}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "emulator", "namespace": NAMESPACE}}
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path
