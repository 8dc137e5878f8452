"""A local cluster in one process: operator API, autoscaler, one supervised gateway process, the local runtime.

The cluster writes ``cluster.json`` in its state directory while it runs (what ``cortex cluster
down`` and ``info`` read) and ``client/cli.yaml`` (what its containers' ``CORTEX_CLI_CONFIG_DIR``
points at). On SIGTERM it drains every replica, stops the gateway and removes ``cluster.json``.
Started after a cluster on the same state directory was killed, it first stops the processes that
one left running (:mod:`cortex.runtime.orphans`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

import yaml

from cortex import __version__
from cortex.auth import key_digest
from cortex.backends import BackendUrls, open_backends
from cortex.gateway.server import INTERNAL_KEYS_VAR, KEYS_VAR, REFUSE_PRIVATE_VAR
from cortex.logrotate import rotate_forever
from cortex.operator import statelock
from cortex.operator.control_plane import ControlPlaneSettings, serve_control_plane
from cortex.operator.settings import CLUSTER_FILE, ClusterSettings
from cortex.requests import now
from cortex.runtime.local import PID_DIR, ClusterEnv, LocalSettings
from cortex.runtime.machine import machine_runtime
from cortex.runtime.orphans import stop_leftovers
from cortex.runtime.process import ProcessPlan
from cortex.runtime.supervisor import Supervised

log = logging.getLogger(__name__)


def write_client_config(
    client_dir: Path, operator_url: str, *, operator_token: str | None = None, api_key: str | None = None
) -> None:
    """The ``cli.yaml`` containers find through ``CORTEX_CLI_CONFIG_DIR`` (env ``default``, as Cortex's).

    It holds the operator's token and the replicas' gateway key, so only its owner may read it.
    """
    client_dir.mkdir(parents=True, exist_ok=True)
    environment = {"name": "default", "operator_endpoint": operator_url}
    if operator_token is not None:
        environment["operator_token"] = operator_token
    if api_key is not None:
        environment["api_key"] = api_key
    config = {"default_environment": "default", "environments": [environment]}
    tmp = client_dir / "cli.yaml.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an older file of another mode is reused by O_CREAT
        handle.write(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(client_dir / "cli.yaml")


async def run_cluster(settings: ClusterSettings, stop: asyncio.Event) -> None:
    """Run the cluster until ``stop`` is set, then drain and stop everything it started.

    Raises :class:`cortex.operator.statelock.StateDirBusy` if a cluster runs on the state directory.
    """
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    async with statelock.holding(state_dir):  # held until this process ends, however it ends
        await _run_cluster(settings, state_dir, stop)


async def _run_cluster(settings: ClusterSettings, state_dir: Path, stop: asyncio.Event) -> None:
    defaults = BackendUrls.for_state_dir(state_dir)
    urls = BackendUrls(
        queue=settings.queue_url or defaults.queue,
        store=settings.store_url or defaults.store,
        blobs=settings.blobs_url or defaults.blobs,
    )
    # a killed cluster's gateway would keep the port, its replicas would run unsupervised beside the new ones
    await stop_leftovers(state_dir / PID_DIR, settings.grace_period)
    client_dir = state_dir / "client"
    # the replicas' own key: chaining through the gateway works whatever keys the APIs require
    chain_key = secrets.token_urlsafe(32)
    write_client_config(client_dir, settings.operator_url, operator_token=settings.operator_token, api_key=chain_key)
    if settings.operator_token is None and not _is_loopback(settings.host):
        log.warning(
            "the operator listens on %s without a token: whoever reaches it can run commands on this machine;"
            " set CORTEX_OPERATOR_TOKEN (or --operator-token)",
            settings.host,
        )
    runtime = await machine_runtime(
        state_dir,
        urls,
        ClusterEnv(gateway_url=settings.gateway_url, cli_config_dir=client_dir, version=__version__, api_key=chain_key),
        LocalSettings(lease_seconds=settings.lease_seconds, grace_period=settings.grace_period),
        engine_name=settings.container_engine,
        containers=settings.containers,
    )
    backends = await open_backends(urls)
    gateway = Supervised(
        _gateway_plan(settings, state_dir, urls, chain_key), label="gateway", where="cluster", backoff_max=10.0
    )
    info = {
        "provider": "local",
        "state_dir": str(state_dir),
        "operator_url": settings.operator_url,
        "gateway_url": settings.gateway_url,
        "pid": os.getpid(),
        "started_at": now(),
    }
    control = ControlPlaneSettings(
        host=settings.host,
        port=settings.operator_port,
        gateway_url=settings.gateway_url,
        operator_token=settings.operator_token,
        autoscaler_tick=settings.autoscaler_tick,
        refuse_private_webhooks=settings.refuse_private_webhooks,
        # private, for bench/cluster.py: an API keeps the replicas it was deployed with (no wake on submit)
        wake_sleeping=os.environ.get("CORTEX_AUTOSCALER_WAKE", "1") != "0",
    )

    def serving() -> None:
        (state_dir / CLUSTER_FILE).write_text(json.dumps(info, indent=2))
        log.info("cluster up: operator %s, gateway %s", settings.operator_url, settings.gateway_url)

    rotating = asyncio.create_task(rotate_forever(state_dir / "logs"))  # the processes' logs, by size
    try:
        gateway.start()
        await serve_control_plane(
            control, backends, runtime, info=info, peers=runtime.metrics_urls, stop=stop, on_serving=serving
        )
        log.info("cluster stopping: draining replicas")
    finally:
        rotating.cancel()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / CLUSTER_FILE).unlink()
        await runtime.aclose()
        await gateway.stop(settings.grace_period)
        await backends.aclose()
        log.info("cluster stopped")


def _gateway_plan(settings: ClusterSettings, state_dir: Path, urls: BackendUrls, chain_key: str) -> ProcessPlan:
    argv: tuple[str, ...] = (sys.executable, "-m", "cortex", "gateway", "--state-dir", str(state_dir))
    argv += ("--queue", urls.queue, "--store", urls.store, "--blobs", urls.blobs)
    argv += ("--host", settings.host, "--port", str(settings.gateway_port))
    argv += ("--operator-url", settings.operator_url)
    return ProcessPlan(
        name="gateway",
        argv=argv,
        env=_gateway_env(settings, chain_key),
        cwd=state_dir,
        log_path=state_dir / "logs" / "gateway.log",
        pid_dir=state_dir / PID_DIR,
    )


def _gateway_env(settings: ClusterSettings, chain_key: str) -> dict[str, str]:
    """The cluster's environment, with the gateway's keys as digests and no operator token."""
    env = {key: value for key, value in os.environ.items() if key != "CORTEX_OPERATOR_TOKEN"}
    env[KEYS_VAR] = " ".join(sorted(settings.api_keys))
    env[INTERNAL_KEYS_VAR] = key_digest(chain_key)
    env[REFUSE_PRIVATE_VAR] = "true" if settings.refuse_private_webhooks else "false"
    return env


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the cluster then drains)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
