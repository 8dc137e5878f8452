"""``cortex operator --provider kubernetes``: the control plane in its own pod, APIs as Deployments.

The gateway runs as its own Deployment (``deploy/kubernetes``); this process serves the operator's
API to the CLI, runs the autoscaler and webhook delivery, and drives the Kubernetes runtime in
its namespace. It needs scale-out backends: every pod, the gateway's and the APIs', reads them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

from cortex.backends import BackendUrls, open_backends
from cortex.errors import CortexError
from cortex.operator.control_plane import ControlPlaneSettings, serve_control_plane
from cortex.requests import now
from cortex.runtime.kubeobjects import KubeSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class InClusterSettings:
    """Everything ``cortex operator`` is told at start."""

    control: ControlPlaneSettings
    kube: KubeSettings
    urls: BackendUrls
    #: where the CLI and the replicas' ``cli.yaml`` reach this operator
    operator_url: str
    #: a kubeconfig to use (None: the pod's service account, else ``$KUBECONFIG``, else ``~/.kube/config``)
    kubeconfig: str | None = None


async def run_operator(settings: InClusterSettings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; the APIs keep running after it returns.

    The command layer checks the backends first (:func:`cortex.locality.check_shared`); tests run it on SQLite.

    Raises:
        CortexError: the backends or the Kubernetes API cannot be reached.
    """
    try:  # the `kubernetes` extra: only an operator on Kubernetes needs it
        from cortex.runtime.kubernetes import KubernetesRuntime, connect
    except ImportError:
        raise CortexError("the Kubernetes runtime needs lightkube: pip install 'cortex-async[kubernetes]'") from None

    client = connect(settings.kube.namespace, kubeconfig=settings.kubeconfig)
    backends = await open_backends(settings.urls)
    runtime = KubernetesRuntime(client, settings.kube)
    info = {
        "provider": "kubernetes",
        "namespace": settings.kube.namespace,
        "operator_url": settings.operator_url,
        "gateway_url": settings.control.gateway_url,
        "pid": os.getpid(),
        "started_at": now(),
    }
    try:
        await runtime.start()
        await serve_control_plane(
            settings.control,
            backends,
            runtime,
            info=info,
            peers=runtime.metrics_urls,
            stop=stop,
            on_serving=lambda: log.info("operator up on %s, namespace %s", settings.operator_url, info["namespace"]),
        )
    finally:
        await runtime.aclose()
        await backends.aclose()
