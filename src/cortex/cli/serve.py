"""The server commands: ``cortex gateway``, ``cortex dequeuer`` and ``cortex operator`` (on Kubernetes)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cortex.backends import BackendUrls
from cortex.cli.access import (
    api_key_option,
    check_token,
    key_digests,
    operator_token_option,
    refuse_private_webhooks_option,
)
from cortex.cli.options import backend_options, backend_urls, check_label_key, configure_logging
from cortex.errors import CortexError
from cortex.runtime.kubeobjects import KubeSettings


@click.command()
@backend_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8888, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="Gateway processes sharing the port.")
@click.option("--operator-url", default=None, help="Include this operator's /metrics in the gateway's /metrics.")
@click.option(
    "--header-timeout", default=10.0, show_default=True, help="Seconds a request's headers may take to arrive (408)."
)
@click.option("--body-timeout", default=30.0, show_default=True, help="Seconds a request body may stop arriving (408).")
@click.option(
    "--body-deadline",
    envvar="CORTEX_GATEWAY_BODY_DEADLINE",
    default=60.0,
    show_default=True,
    help="Seconds a whole request body may take, plus one per --min-body-rate bytes received (408).",
)
@click.option(
    "--min-body-rate",
    envvar="CORTEX_GATEWAY_MIN_BODY_RATE",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Bytes of body that buy one more second past --body-deadline.",
)
@click.option(
    "--max-connections",
    envvar="CORTEX_GATEWAY_MAX_CONNECTIONS",
    type=click.IntRange(min=0),
    default=4096,
    show_default=True,
    help="Open connections per gateway process; more are answered 503 (0: no limit).",
)
@click.option(
    "--max-connections-per-address",
    envvar="CORTEX_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS",
    type=click.IntRange(min=0),
    default=256,
    show_default=True,
    help="Open connections from one client address per gateway process; more are answered 429 (0: no limit).",
)
@click.option(
    "--max-batch-items",
    envvar="CORTEX_GATEWAY_MAX_BATCH_ITEMS",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Payloads one POST /<api>/batch may hold; more are answered 413.",
)
@click.option(
    "--max-batch-bytes",
    envvar="CORTEX_GATEWAY_MAX_BATCH_BYTES",
    type=click.IntRange(min=1),
    default=32 * 2**20,
    show_default=True,
    help="Bytes the body of one POST /<api>/batch may take (it is read whole); more are answered 413.",
)
@api_key_option
@refuse_private_webhooks_option
def gateway(
    state_dir: Path,
    queue_url: str | None,
    store_url: str | None,
    blobs_url: str | None,
    host: str,
    port: int,
    workers: int,
    operator_url: str | None,
    header_timeout: float,
    body_timeout: float,
    body_deadline: float,
    min_body_rate: int,
    max_connections: int,
    max_connections_per_address: int,
    max_batch_items: int,
    max_batch_bytes: int,
    api_keys: tuple[str, ...],
    refuse_private_webhooks: bool,
) -> None:
    """Serve the gateway: POST /<api> to submit, GET /<api>/<id> for status and result.

    Behind a proxy or load balancer, every client has the proxy's address: raise
    --max-connections-per-address there (or set it to 0).
    """
    import uvicorn

    from cortex.gateway.connections import ConnectionCaps
    from cortex.gateway.protocol import HttpLimits, protocol_factory
    from cortex.gateway.server import (
        BODY_TIMEOUT_VAR,
        KEYS_VAR,
        MAX_BATCH_BYTES_VAR,
        MAX_BATCH_ITEMS_VAR,
        REFUSE_PRIVATE_VAR,
    )

    configure_logging()
    os.environ[BODY_TIMEOUT_VAR] = str(body_timeout)
    os.environ[MAX_BATCH_ITEMS_VAR] = str(max_batch_items)
    os.environ[MAX_BATCH_BYTES_VAR] = str(max_batch_bytes)
    # only the keys' digests travel on to the workers
    os.environ[KEYS_VAR] = " ".join(sorted(key_digests(api_keys)))
    os.environ[REFUSE_PRIVATE_VAR] = "true" if refuse_private_webhooks else "false"
    urls = backend_urls(state_dir, queue_url, store_url, blobs_url)
    _check_blobs(urls, blobs_url, "gateway")
    _refuse_what_no_retry_fixes(urls)
    # uvicorn starts each worker from an import string, so the URLs travel in the environment
    os.environ.update({"CORTEX_QUEUE_URL": urls.queue, "CORTEX_STORE_URL": urls.store, "CORTEX_BLOBS_URL": urls.blobs})
    if operator_url is not None:
        os.environ["CORTEX_GATEWAY_OPERATOR_URL"] = operator_url
    uvicorn.run(
        "cortex.gateway.server:app_from_environ",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=protocol_factory(
            HttpLimits(
                head_timeout=header_timeout,
                body_deadline=body_deadline,
                min_body_rate=min_body_rate,
                connections=ConnectionCaps(total=max_connections, per_address=max_connections_per_address),
            )
        ),
        access_log=False,
        log_level="warning",
    )


@click.command()
@backend_options
@click.option("--api", required=True, help="Name of the API this replica serves.")
@click.option("--user-port", type=int, required=True, help="Port the user server listens on.")
@click.option("--user-host", default="127.0.0.1", show_default=True)
@click.option("--admin-host", default="127.0.0.1", show_default=True, help="Address /healthz is served on.")
@click.option("--admin-port", type=int, default=None, help="Serve /healthz on this port (0: any free port).")
@click.option("--lease-seconds", type=float, default=30.0, show_default=True, help="Lease visibility timeout.")
@click.option("--grace-period", type=float, default=30.0, show_default=True, help="Seconds to drain on stop.")
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Follow the API's redeploys (drain, then serve the new spec) and stop when it is deleted.",
)
def dequeuer(
    state_dir: Path,
    queue_url: str | None,
    store_url: str | None,
    blobs_url: str | None,
    api: str,
    user_port: int,
    user_host: str,
    admin_host: str,
    admin_port: int | None,
    lease_seconds: float,
    grace_period: float,
    follow: bool,
) -> None:
    """Run one replica's dequeuer: take API requests from the queue and POST them to the user server.

    Started by hand, on a host of its own, it follows its API: a redeploy takes effect once its
    running requests are done (within 5 s of the deploy), and a delete stops it. (The runtimes
    start ``python -m cortex.dequeuer``, which does not follow: a redeploy replaces its replica.)
    """
    from cortex.dequeuer.service import run
    from cortex.dequeuer.worker import DequeuerSettings

    configure_logging(replica=os.environ.get("CORTEX_REPLICA_ID") or None)
    urls = backend_urls(state_dir, queue_url, store_url, blobs_url)
    _check_blobs(urls, blobs_url, "dequeuer")
    settings = DequeuerSettings(
        user_port=user_port, user_host=user_host, lease_seconds=lease_seconds, grace_period=grace_period
    )
    try:
        run(api, urls, settings, admin_host=admin_host, admin_port=admin_port, follow=follow)
    except CortexError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option(
    "--provider", type=click.Choice(["kubernetes"]), default="kubernetes", show_default=True, help="Where APIs run."
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8889, show_default=True, help="Port to listen on.")
@click.option("-n", "--namespace", envvar="CORTEX_NAMESPACE", default="cortex", show_default=True)
@click.option("--image", envvar="CORTEX_IMAGE", default=None, help="The platform image the APIs' dequeuers run.")
@click.option("--gateway-url", required=True, help="The gateway's address inside the cluster (CORTEX_GATEWAY_URL).")
@click.option("--operator-url", required=True, help="This operator's address inside the cluster (for cli.yaml).")
@click.option("--kubeconfig", default=None, help="A kubeconfig [default: the service account, then $KUBECONFIG].")
@click.option(
    "--image-pull-secret", "image_pull_secrets", multiple=True, metavar="NAME", help="The APIs' pods pull with it."
)
@click.option("--grace-period", type=int, default=60, show_default=True, help="Seconds a pod has to drain.")
@click.option("--lease-seconds", type=float, default=30.0, show_default=True, help="Lease visibility timeout.")
@click.option("--autoscaler-tick", type=float, default=10.0, show_default=True, help="Seconds between two ticks.")
@click.option(
    "--node-group-label",
    default=KubeSettings().node_group_label,
    callback=check_label_key,
    show_default=True,
    help="The node label the APIs' node_groups are matched against.",
)
@click.option("--queue", "queue_url", envvar="CORTEX_QUEUE_URL", required=True, help="Queue URL (redis://, ...).")
@click.option("--store", "store_url", envvar="CORTEX_STORE_URL", required=True, help="Record store URL.")
@click.option("--blobs", "blobs_url", envvar="CORTEX_BLOBS_URL", required=True, help="Blob store URL (s3://...).")
@operator_token_option
@click.option(
    "--read-token",
    envvar="CORTEX_OPERATOR_READ_TOKEN",
    default=None,
    help="A token that may only read (GET), for the APIs' pods; only with --operator-token.",
)
@refuse_private_webhooks_option
def operator(
    provider: str,
    host: str,
    port: int,
    namespace: str,
    image: str | None,
    gateway_url: str,
    operator_url: str,
    kubeconfig: str | None,
    image_pull_secrets: tuple[str, ...],
    grace_period: int,
    lease_seconds: float,
    autoscaler_tick: float,
    node_group_label: str,
    queue_url: str,
    store_url: str,
    blobs_url: str,
    operator_token: str | None,
    read_token: str | None,
    refuse_private_webhooks: bool,
) -> None:
    """Run the control plane on Kubernetes: the operator's API, the autoscaler, webhooks; APIs as Deployments.

    This is what the operator Deployment of deploy/kubernetes runs; the gateway is its own Deployment.
    """
    import asyncio

    import uvloop

    from cortex.backends import BackendUrls
    from cortex.locality import check_shared
    from cortex.operator.cluster import install_stop_signals
    from cortex.operator.control_plane import ControlPlaneSettings
    from cortex.operator.incluster import InClusterSettings, run_operator

    configure_logging()
    urls = BackendUrls(queue=queue_url, store=store_url, blobs=blobs_url)
    kube = KubeSettings(
        namespace=namespace,
        image=image or KubeSettings().image,
        gateway_url=gateway_url,
        grace_period=grace_period,
        lease_seconds=lease_seconds,
        image_pull_secrets=image_pull_secrets,
        node_group_label=node_group_label,
    )
    control = ControlPlaneSettings(
        host=host,
        port=port,
        gateway_url=gateway_url,
        operator_token=check_token(operator_token),
        read_token=check_token(read_token),
        autoscaler_tick=autoscaler_tick,
        refuse_private_webhooks=refuse_private_webhooks,
    )
    settings = InClusterSettings(
        control=control, kube=kube, urls=urls, operator_url=operator_url, kubeconfig=kubeconfig
    )

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_operator(settings, stop)

    try:
        check_shared(urls)
        uvloop.run(main())
    except CortexError as exc:
        raise click.ClickException(str(exc)) from exc


def _check_blobs(urls: BackendUrls, blobs_url: str | None, role: str) -> None:
    """Refuse a process of a cluster of hosts whose blobs would stay on this machine (:mod:`cortex.locality`)."""
    from cortex.locality import check_blobs_given

    try:
        check_blobs_given(urls, blobs_given=blobs_url is not None, role=role)
    except CortexError as exc:
        raise click.UsageError(str(exc)) from exc


def _refuse_what_no_retry_fixes(urls: BackendUrls) -> None:
    """Open the backends once before the workers start, so that a URL no retry can fix (unknown scheme,
    refused login, missing driver) ends the command with its message rather than a worker's traceback.

    A server that does not answer yet is left to the workers: they start and answer 503 until it does.
    """
    import asyncio

    from cortex.backends import open_backends
    from cortex.reaching import can_retry

    async def check() -> None:
        try:
            opened = await open_backends(urls)
        except CortexError as exc:
            if can_retry(exc):
                return
            raise click.ClickException(str(exc)) from exc
        await opened.aclose()

    asyncio.run(check())
