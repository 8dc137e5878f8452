"""``cortex cluster up|down --provider kubernetes``: install the platform on a Kubernetes cluster, or remove it.

``up`` applies :func:`cortex.runtime.kubeinstall.install_objects` with the kubeconfig's
credentials (server-side apply, so running it again updates in place; the Secrets are replaced
whole instead, so a key left out is gone), waits for the operator
and the gateway, then points a CLI environment at the operator. ``--dry-run`` prints the objects
instead. The replicas' gateway key is kept across runs: rotating it would break chaining in
every running pod.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
import time
from typing import Any

import click
from rich.console import Console

from cortex.errors import CortexError
from cortex.runtime.kubeinstall import CLIENT_SECRET, GATEWAY, OPERATOR, InstallSettings, install_manifest

#: how long ``up`` waits for the operator and the gateway to have a ready replica
READY_TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Which Kubernetes cluster: a kubeconfig (None: ``$KUBECONFIG``, then ``~/.kube/config``) and its context."""

    kubeconfig: str | None = None
    context: str | None = None


def up(
    settings: InstallSettings, target: Target, *, dry_run: bool, operator_url: str | None, timeout: float
) -> str | None:
    """Install or update the platform; the URL the CLI should use for the operator (None: port-forward needed).

    Raises:
        CortexError: the cluster cannot be reached or refused an object, or nothing got ready in time.
    """
    if dry_run:
        click.echo(install_manifest(settings, secrets=True), nl=False)
        return None
    return asyncio.run(_up(settings, target, operator_url, timeout))


async def _up(settings: InstallSettings, target: Target, operator_url: str | None, timeout: float) -> str | None:
    import httpx2
    from lightkube import ApiError, codecs
    from lightkube.resources.core_v1 import Service

    from cortex.runtime.kubeinstall import install_objects
    from cortex.runtime.kubernetes import connect, kube_error

    console = Console(stderr=True)
    client = connect(settings.namespace, kubeconfig=target.kubeconfig, context=target.context)
    try:
        settings = await _keep_generated(client, settings)
        with console.status(f"installing cortex-async in namespace {settings.namespace}") as status:
            for obj in install_objects(settings):
                status.update(f"applying {obj['kind']} {obj['metadata']['name']}")
                if obj["kind"] == "Secret":
                    await _put_secret(client, codecs.from_dict(obj))
                else:
                    await client.apply(codecs.from_dict(obj), field_manager="cortex", force=True)
            await _wait_ready(client, settings.namespace, status, timeout)
        if operator_url is None and settings.service_type == "LoadBalancer":
            service = await client.get(Service, OPERATOR, namespace=settings.namespace)
            ingress = (
                (service.status.loadBalancer.ingress or []) if service.status and service.status.loadBalancer else []
            )
            if ingress:
                host = ingress[0].hostname or ingress[0].ip
                operator_url = f"http://{host}:{settings.operator_port}"
        return operator_url
    except (ApiError, httpx2.HTTPError) as exc:
        raise kube_error(exc) from exc
    finally:
        await client.close()


async def _keep_generated(client: Any, settings: InstallSettings) -> InstallSettings:
    """``settings`` with the chaining key and the replicas' token the cluster already has, if it has them.

    Rotating either would break running pods: they hold them until their mounted files are refreshed.
    """
    from cortex.runtime.kubeinstall import OPERATOR_SECRET

    chain_key = await _secret_value(client, settings.namespace, CLIENT_SECRET, "api_key")
    if chain_key is not None:
        settings = dataclasses.replace(settings, chain_key=chain_key)
    if settings.replica_token is not None:
        token = await _secret_value(client, settings.namespace, OPERATOR_SECRET, "CORTEX_OPERATOR_READ_TOKEN")
        if token is not None:
            settings = dataclasses.replace(settings, replica_token=token)
    return settings


async def _secret_value(client: Any, namespace: str, name: str, key: str) -> str | None:
    """The value of ``key`` in the Secret ``name``, or None when either is missing."""
    from lightkube import ApiError
    from lightkube.resources.core_v1 import Secret

    try:
        current = await client.get(Secret, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code != 404:
            raise
        return None
    value = (current.data or {}).get(key)
    return base64.b64decode(value).decode() if value else None


async def _put_secret(client: Any, secret: Any) -> None:
    """Create ``secret`` or replace it whole.

    Not server-side apply: a key applied as ``stringData`` lands in ``data``, which no field manager
    owns, so applying without it leaves it there (kubernetes#108008) and an operator token removed
    from ``cluster up`` would stay enforced. A replace keeps only the keys given now.
    """
    from lightkube import ApiError

    try:
        await client.replace(secret)
    except ApiError as exc:
        if exc.status.code != 404:
            raise
        await client.create(secret)


async def _wait_ready(client: Any, namespace: str, status: Any, timeout: float) -> None:
    from lightkube.resources.apps_v1 import Deployment

    deadline = time.monotonic() + timeout
    waiting = [OPERATOR, GATEWAY]
    while waiting:
        ready = []
        for name in waiting:
            deployment = await client.get(Deployment, name, namespace=namespace)
            if deployment.status is not None and (deployment.status.readyReplicas or 0) >= 1:
                ready.append(name)
        waiting = [name for name in waiting if name not in ready]
        if not waiting:
            return
        status.update(f"waiting for {' and '.join(waiting)} to be ready")
        if time.monotonic() > deadline:
            raise CortexError(
                f"{' and '.join(waiting)} had no ready replica within {timeout:g}s;"
                f" see kubectl -n {namespace} describe deployment {waiting[0]}"
            )
        await asyncio.sleep(1.0)


def new_chain_key() -> str:
    """A fresh key for the replicas to call the gateway with (kept if the cluster already has one)."""
    return secrets.token_urlsafe(32)


def down(namespace: str, target: Target) -> int:
    """Delete every API's Deployment and the platform's objects (the namespace stays); how many APIs were deleted.

    Raises:
        CortexError: the cluster cannot be reached or refused a deletion.
    """
    return asyncio.run(_down(namespace, target))


async def _down(namespace: str, target: Target) -> int:
    import httpx2
    from lightkube import ApiError, codecs
    from lightkube.resources.apps_v1 import Deployment

    from cortex.runtime.kubeinstall import install_objects
    from cortex.runtime.kubeobjects import API_LABEL
    from cortex.runtime.kubernetes import connect, kube_error

    client = connect(namespace, kubeconfig=target.kubeconfig, context=target.context)
    placeholder = InstallSettings(queue_url="", store_url="", blobs_url="", namespace=namespace)
    try:
        apis = [d async for d in client.list(Deployment, namespace=namespace, labels={API_LABEL: "true"})]
        for deployment in apis:
            assert deployment.metadata is not None
            await client.delete(Deployment, str(deployment.metadata.name), namespace=namespace)
        for obj in reversed(install_objects(placeholder)):
            if obj["kind"] == "Namespace":
                continue  # it may hold what is not ours
            resource: Any = type(codecs.from_dict(obj))
            try:
                await client.delete(resource, obj["metadata"]["name"], namespace=namespace)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
        return len(apis)
    except (ApiError, httpx2.HTTPError) as exc:
        raise kube_error(exc) from exc
    finally:
        await client.close()


def info(namespace: str, target: Target) -> dict[str, Any]:
    """What is installed in ``namespace``: the operator's and the gateway's readiness, their addresses, the APIs.

    Raises:
        CortexError: the cluster cannot be reached, or nothing of cortex-async is installed there.
    """
    return asyncio.run(_info(namespace, target))


async def _info(namespace: str, target: Target) -> dict[str, Any]:
    import httpx2
    from lightkube import ApiError
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import Service

    from cortex.runtime.kubeobjects import API_LABEL, API_NAME
    from cortex.runtime.kubernetes import connect, kube_error

    client = connect(namespace, kubeconfig=target.kubeconfig, context=target.context)
    out: dict[str, Any] = {"provider": "kubernetes", "namespace": namespace}
    try:
        for name in (OPERATOR, GATEWAY):
            try:
                deployment = await client.get(Deployment, name, namespace=namespace)
                service = await client.get(Service, name, namespace=namespace)
            except ApiError as exc:
                if exc.status.code == 404:
                    raise CortexError(
                        f"cortex-async is not installed in namespace {namespace} (no {name});"
                        " install it with `cortex cluster up --provider kubernetes`"
                    ) from None
                raise
            status = deployment.status
            spec = service.spec
            port = spec.ports[0].port if spec is not None and spec.ports else None
            ingress = service.status.loadBalancer.ingress if service.status and service.status.loadBalancer else None
            out[name] = {
                "ready": (status.readyReplicas or 0) if status is not None else 0,
                "replicas": (status.replicas or 0) if status is not None else 0,
                "url": f"http://{name}.{namespace}.svc.cluster.local:{port}",
                "service_type": spec.type if spec is not None else None,
                "external": [i.hostname or i.ip for i in ingress or []],
            }
        apis = [d async for d in client.list(Deployment, namespace=namespace, labels={API_LABEL: "true"})]
        out["apis"] = sorted(str((d.metadata.labels or {}).get(API_NAME)) for d in apis if d.metadata is not None)
        return out
    except (ApiError, httpx2.HTTPError) as exc:
        raise kube_error(exc) from exc
    finally:
        await client.close()
