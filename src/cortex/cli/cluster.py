"""``cortex cluster up|down|info``: a local cluster on this machine, or the platform on Kubernetes (``--provider``)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import click
import httpx
from click.core import ParameterSource
from rich.console import Console

from cortex.auth import DIGEST_PREFIX
from cortex.cli.access import (
    api_key_option,
    check_token,
    key_digests,
    operator_token_option,
    refuse_private_webhooks_option,
)
from cortex.cli.options import DEFAULT_STATE_DIR, check_label_key, configure_logging
from cortex.errors import CortexError
from cortex.operator import statelock
from cortex.operator.settings import ClusterSettings, read_cluster_file

#: how long `cluster up` waits for the operator to answer
START_TIMEOUT = 60.0
#: seconds a replica gets to drain unless `cluster up --grace-period` said otherwise
DEFAULT_GRACE = 30.0
#: `cluster up` options that configure only a cluster on this machine: refused with --provider kubernetes,
#: where they would do nothing (every other option reaches the installation; tests/kube/test_up_flags.py)
LOCAL_ONLY_OPTIONS = frozenset({"state_dir", "host", "foreground", "container_engine", "containers"})
#: `cluster up` options that configure only an installation on Kubernetes: refused with --provider local,
#: where they would do nothing (tests/cli/test_up_local_flags.py)
KUBERNETES_ONLY_OPTIONS = frozenset(
    {
        "namespace",
        "kubeconfig",
        "context",
        "image",
        "service_type",
        "operator_url",
        "image_pull_secrets",
        "node_group_label",
        "dry_run",
        "timeout",
    }
)

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CORTEX_STATE_DIR",
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the cluster keeps its queue, records, blobs and logs.",
)
output_option = click.option("-o", "--output", type=click.Choice(["pretty", "json"]), default="pretty")


provider_option = click.option(
    "--provider",
    type=click.Choice(["local", "kubernetes"]),
    default="local",
    show_default=True,
    help="Run here (local) or install on the Kubernetes cluster of the kubeconfig.",
)
namespace_option = click.option(
    "-n", "--namespace", default="cortex", show_default=True, help="Kubernetes: the platform's and the APIs' namespace."
)
kubeconfig_option = click.option(
    "--kubeconfig", envvar="KUBECONFIG", default=None, help="Kubernetes: the kubeconfig [default: ~/.kube/config]."
)
context_option = click.option("--context", default=None, help="Kubernetes: the kubeconfig context to use.")


@click.group()
def cluster() -> None:
    """Start, stop and inspect a local cluster, or install cortex-async on Kubernetes."""


@cluster.command()
@state_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the gateway and operator listen on.")
@click.option(
    "--gateway-port", default=8888, show_default=True, envvar="CORTEX_GATEWAY_PORT", help="Port of the gateway."
)
@click.option(
    "--operator-port", default=8889, show_default=True, envvar="CORTEX_OPERATOR_PORT", help="Port of the operator."
)
@click.option(
    "--env", "env_name", default=None, help="CLI environment to point at the cluster [default: local or kubernetes]."
)
@click.option("--foreground", is_flag=True, help="Run in this terminal instead of in the background.")
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_GRACE,
    show_default=True,
    help="Seconds replicas get to drain [Kubernetes: 60 unless given, as Cortex; whole seconds, rounded up].",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a request held by a replica that died stays hidden before it runs again.",
)
@click.option(
    "--autoscaler-tick",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds between two autoscaler ticks (Cortex: 10).",
)
@click.option("--queue", "queue_url", envvar="CORTEX_QUEUE_URL", help="Queue URL (postgresql://, redis://).")
@click.option(
    "--store",
    "store_url",
    envvar="CORTEX_STORE_URL",
    help="Record store URL: the same server as --queue (the same URL).",
)
@click.option("--blobs", "blobs_url", envvar="CORTEX_BLOBS_URL", help="Blob store URL (s3://bucket/prefix).")
@api_key_option
@operator_token_option
@refuse_private_webhooks_option
@provider_option
@namespace_option
@kubeconfig_option
@context_option
@click.option("--image", default=None, help="Kubernetes: the platform image [default: this version's].")
@click.option(
    "--service-type",
    type=click.Choice(["ClusterIP", "NodePort", "LoadBalancer"]),
    default="ClusterIP",
    show_default=True,
    help="Kubernetes: how the operator and the gateway are exposed.",
)
@click.option("--operator-url", default=None, help="Kubernetes: where this machine reaches the operator.")
@click.option(
    "--image-pull-secret",
    "image_pull_secrets",
    multiple=True,
    metavar="NAME",
    help="Kubernetes: a Secret every pod pulls its images with (repeatable; create it first).",
)
@click.option(
    "--container-engine",
    type=click.Choice(["podman", "docker"]),
    default=None,
    help="Local: the engine that runs containers from their images [default: the first of podman, docker found].",
)
@click.option(
    "--containers",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Local: run from its image every container with an image (always), only those without a command"
    " (auto), or none (never: commands as processes).",
)
@click.option(
    "--node-group-label",
    default=None,
    callback=check_label_key,
    help="Kubernetes: the node label node_groups match [default: eks.amazonaws.com/nodegroup].",
)
@click.option("--dry-run", is_flag=True, help="Kubernetes: print the objects (Secrets included) instead of applying.")
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="Kubernetes: seconds to wait for readiness."
)
def up(
    state_dir: Path,
    host: str,
    gateway_port: int,
    operator_port: int,
    env_name: str,
    foreground: bool,
    grace_period: float,
    lease_seconds: float,
    autoscaler_tick: float,
    queue_url: str | None,
    store_url: str | None,
    blobs_url: str | None,
    api_keys: tuple[str, ...],
    operator_token: str | None,
    refuse_private_webhooks: bool,
    provider: str,
    namespace: str,
    kubeconfig: str | None,
    context: str | None,
    image: str | None,
    service_type: str,
    operator_url: str | None,
    image_pull_secrets: tuple[str, ...],
    container_engine: str | None,
    containers: str,
    node_group_label: str | None,
    dry_run: bool,
    timeout: float,
) -> None:
    """Start a local cluster (operator, gateway, autoscaler, local runtime), or install on Kubernetes.

    The queue, records and blobs live in the state directory unless --queue, --store or --blobs
    name scale-out backends (Redis, PostgreSQL, S3). With --api-key every API needs a key; with
    --operator-token the operator needs the token (the CLI environment is given both).

    With --provider kubernetes, the operator and the gateway are installed in --namespace of the
    kubeconfig's cluster, and --queue, --store and --blobs are required (every pod shares them; the
    queue and the store are one server, the same URL).
    """
    state_dir = state_dir.expanduser().resolve()
    digests = key_digests(api_keys)
    operator_token = check_token(operator_token)
    # the CLI environment gets a key it can send: the first one given in clear
    client_key = next((key for key in api_keys if not key.startswith(DIGEST_PREFIX)), None)
    if provider == "kubernetes":
        _refuse_given(click.get_current_context(), LOCAL_ONLY_OPTIONS, "only for a cluster on this machine", provider)
        urls = {"--queue": queue_url, "--store": store_url, "--blobs": blobs_url}
        missing = [flag for flag, url in urls.items() if not url]
        if missing:
            raise click.UsageError(
                f"{', '.join(missing)}: required with --provider kubernetes, where every pod shares the backends"
                " (for example --queue postgresql://cortex@postgres.cortex.svc/cortex --store the same URL"
                " --blobs s3://bucket)"
            )
        _up_kubernetes(
            dict(
                queue_url=queue_url,
                store_url=store_url,
                blobs_url=blobs_url,
                namespace=namespace,
                operator_token=operator_token,
                api_key_digests=digests,
                service_type=service_type,
                image_pull_secrets=image_pull_secrets,
                gateway_port=gateway_port,
                operator_port=operator_port,
                lease_seconds=lease_seconds,
                autoscaler_tick=autoscaler_tick,
                refuse_private_webhooks=refuse_private_webhooks,
                **({"image": image} if image else {}),
                **({"node_group_label": node_group_label} if node_group_label else {}),
                **(
                    {"grace_period": math.ceil(grace_period)}
                    if _given(click.get_current_context(), "grace_period")
                    else {}
                ),
            ),
            kubeconfig=kubeconfig,
            context=context,
            env_name=env_name or "kubernetes",
            client_key=client_key,
            operator_url=operator_url,
            dry_run=dry_run,
            timeout=timeout,
        )
        return
    _refuse_given(click.get_current_context(), KUBERNETES_ONLY_OPTIONS, "only for Kubernetes", provider)
    env_name = env_name or "local"
    settings = ClusterSettings(
        state_dir=state_dir,
        host=host,
        gateway_port=gateway_port,
        operator_port=operator_port,
        grace_period=grace_period,
        lease_seconds=lease_seconds,
        autoscaler_tick=autoscaler_tick,
        queue_url=queue_url,
        store_url=store_url,
        blobs_url=blobs_url,
        api_keys=digests,
        operator_token=operator_token,
        refuse_private_webhooks=refuse_private_webhooks,
        container_engine=container_engine,
        containers=_containers_flag(containers),
    )
    console = Console(stderr=True)
    if foreground:
        _run_foreground(settings)  # refused there, under the state directory's lock, if a cluster runs
        return
    if _already_up(state_dir, env_name, client_key, console):
        return
    log_path = state_dir / "logs" / "cluster.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "cortex", "cluster", "up", "--foreground", "--state-dir", str(state_dir)]
    argv += ["--host", host, "--gateway-port", str(gateway_port), "--operator-port", str(operator_port)]
    argv += ["--grace-period", str(grace_period), "--autoscaler-tick", str(autoscaler_tick), "--env", env_name]
    argv += ["--lease-seconds", str(lease_seconds)]
    for flag, url in (("--queue", queue_url), ("--store", store_url), ("--blobs", blobs_url)):
        if url:
            argv += [flag, url]
    if refuse_private_webhooks:
        argv += ["--refuse-private-webhooks"]
    argv += _engine_args(container_engine, containers)
    # secrets go in the environment, not on a command line every user can read (only digests of the keys)
    child_env = {
        key: value for key, value in os.environ.items() if key not in ("CORTEX_API_KEYS", "CORTEX_OPERATOR_TOKEN")
    }
    child_env["CORTEX_API_KEYS"] = " ".join(sorted(digests))
    if operator_token is not None:
        child_env["CORTEX_OPERATOR_TOKEN"] = operator_token
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env,
        )
    with console.status(f"starting the cluster (logs: {log_path})"):
        deadline = time.monotonic() + START_TIMEOUT
        while read_cluster_file(state_dir) is None or not _answers(settings.operator_url):
            if process.poll() is not None:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                raise click.ClickException(f"the cluster exited with code {process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise click.ClickException(f"the cluster did not answer within {START_TIMEOUT:g}s; see {log_path}")
            time.sleep(0.2)
    _configure_env(env_name, settings.operator_url, operator_token, client_key)
    console.print(f"[bold]cluster is up[/bold] (state: {state_dir})")
    console.print(f"  gateway:  {settings.gateway_url}")
    console.print(f"  operator: {settings.operator_url} (cli environment: {env_name})")
    hint = " (with its token: the status url of `cortex cluster info`)" if operator_token else ""
    console.print(f"  status:   {settings.operator_url}/status{hint}")
    console.print("next: cortex deploy <cortex.yaml>")


def _engine_args(container_engine: str | None, containers: str) -> list[str]:
    return [*(["--container-engine", container_engine] if container_engine else []), "--containers", containers]


def _containers_flag(value: str) -> Literal["auto", "always", "never"]:
    return "always" if value == "always" else "never" if value == "never" else "auto"


def _already_up(state_dir: Path, env_name: str, client_key: str | None, console: Console) -> bool:
    """True, with the CLI environment set to it, if a cluster runs on ``state_dir``; refused if one is starting."""
    running = read_cluster_file(state_dir)
    if running is not None:
        _configure_env(env_name, running["operator_url"], _running_token(state_dir), client_key, keep_key=True)
        console.print(f"a cluster is already running on {state_dir} (operator {running['operator_url']})")
        return True
    starting = statelock.holder(state_dir)
    if starting is not None:
        raise click.ClickException(
            f"a cluster is starting on {state_dir} (pid {starting}): wait for it, or stop it with `cortex cluster down`"
        )
    return False


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def _refuse_given(ctx: click.Context, names: frozenset[str], only: str, provider: str) -> None:
    """Refuse the options ``names`` given on the command line (not a shell's environment): with ``provider``
    they would do nothing, and a flag ignored without a word is worse than one refused."""
    given = [
        _long_name(param)
        for param in ctx.command.params
        if param.name in names and ctx.get_parameter_source(param.name or "") == ParameterSource.COMMANDLINE
    ]
    if given:
        they, them = ("it", "it") if len(given) == 1 else ("they", "them")
        hint = "" if provider == "kubernetes" else " (or add --provider kubernetes to install on Kubernetes)"
        raise click.UsageError(
            f"{', '.join(given)}: {only}; with --provider {provider} {they} would do nothing, so leave {them} out{hint}"
        )


def _long_name(param: click.Parameter) -> str:
    """How a message names an option: ``--namespace``, not ``-n``."""
    return next((opt for opt in param.opts if opt.startswith("--")), param.opts[0])


def _up_kubernetes(
    install: dict[str, Any],
    *,
    kubeconfig: str | None,
    context: str | None,
    env_name: str,
    client_key: str | None,
    operator_url: str | None,
    dry_run: bool,
    timeout: float,
) -> None:
    from cortex.cli import kube_cluster
    from cortex.runtime.kubeinstall import InstallSettings

    console = Console(stderr=True)
    try:
        # the replicas' read-only stand-in for the operator token (kept across runs, as the chaining key)
        replica_token = kube_cluster.new_chain_key() if install.get("operator_token") else None
        settings = InstallSettings(**install, chain_key=kube_cluster.new_chain_key(), replica_token=replica_token)
        target = kube_cluster.Target(kubeconfig=kubeconfig, context=context)
        url = kube_cluster.up(settings, target, dry_run=dry_run, operator_url=operator_url, timeout=timeout)
    except CortexError as exc:
        raise click.ClickException(str(exc)) from exc
    if dry_run:
        return
    console.print(f"[bold]cortex-async is installed[/bold] in namespace {settings.namespace}")
    console.print(f"  gateway (in the cluster):  {settings.gateway_url}")
    console.print(f"  operator (in the cluster): {settings.operator_url}")
    if url is None:
        url = f"http://127.0.0.1:{settings.operator_port}"
        forward = f"kubectl -n {settings.namespace} port-forward svc/operator {settings.operator_port}"
        console.print(f"  reach the operator from here with: {forward}  (or pass --operator-url)")
    _configure_env(env_name, url, settings.operator_token, client_key)
    console.print(f"  cli environment {env_name}: {url}")
    console.print(f"next: cortex deploy <cortex.yaml> -e {env_name}")


def _run_foreground(settings: ClusterSettings) -> None:
    import asyncio

    import uvloop

    from cortex.operator.cluster import install_stop_signals, run_cluster

    configure_logging()

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_cluster(settings, stop)

    try:
        uvloop.run(main())
    except CortexError as exc:
        raise click.ClickException(str(exc)) from exc


def _running_token(state_dir: Path) -> str | None:
    """The operator token of the cluster running on ``state_dir`` (from the cli.yaml it wrote for its replicas)."""
    from cortex.env import EnvConfig

    try:
        return EnvConfig.load(state_dir / "client").get("default").operator_token
    except CortexError:
        return None


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _configure_env(
    name: str, operator_url: str, token: str | None, api_key: str | None, *, keep_key: bool = False
) -> None:
    """Point the CLI environment ``name`` at the cluster, with its token and a key (its old one with ``keep_key``)."""
    from cortex.env import EnvConfig

    config = EnvConfig.from_environ()
    old = config.environments.get(name)
    if keep_key and api_key is None and old is not None:
        api_key = old.api_key
    config.configure(name, operator_url, operator_token=token, api_key=api_key)


@cluster.command()
@state_dir_option
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the drain.")
@provider_option
@namespace_option
@kubeconfig_option
@context_option
def down(
    state_dir: Path, timeout: float, provider: str, namespace: str, kubeconfig: str | None, context: str | None
) -> None:
    """Drain and stop the local cluster (no process of it is left behind), or uninstall from Kubernetes."""
    state_dir = state_dir.expanduser().resolve()
    console = Console(stderr=True)
    if provider == "kubernetes":
        from cortex.cli import kube_cluster

        try:
            with console.status(f"deleting the APIs and cortex-async from namespace {namespace}"):
                deleted = kube_cluster.down(namespace, kube_cluster.Target(kubeconfig=kubeconfig, context=context))
        except CortexError as exc:
            raise click.ClickException(str(exc)) from exc
        console.print(f"cortex-async is uninstalled from namespace {namespace} ({deleted} APIs deleted)")
        return
    running = read_cluster_file(state_dir)
    pid = int(running["pid"]) if running is not None else statelock.holder(state_dir)  # or one still starting
    if not pid:
        _stop_leftovers(state_dir, timeout, console)
        return
    os.kill(pid, signal.SIGTERM)
    with console.status("draining replicas and stopping the cluster"):
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                raise click.ClickException(f"the cluster did not stop within {timeout:g}s; it was killed")
            time.sleep(0.2)
    # a cluster killed with SIGKILL just before may have left its cluster file, processes and pods
    _stop_leftovers(state_dir, timeout, console, after_down=True)
    console.print("cluster is down")


def _stop_leftovers(state_dir: Path, timeout: float, console: Console, *, after_down: bool = False) -> None:
    """No cluster runs (any more): stop what a killed one left running (its gateway, replicas, pods), if anything."""
    import asyncio

    from cortex.runtime.local import PID_DIR
    from cortex.runtime.machine import remove_leftover_pods
    from cortex.runtime.orphans import leftovers, stop_leftovers

    found = bool(leftovers(state_dir / PID_DIR))
    if found:
        with console.status("a killed cluster left processes running: draining and stopping them"):
            stopped = asyncio.run(stop_leftovers(state_dir / PID_DIR, min(timeout, DEFAULT_GRACE)))
        console.print(f"stopped {stopped} processes left running by a cluster that was killed (state: {state_dir})")
    removed = asyncio.run(remove_leftover_pods(state_dir))
    if removed:
        console.print(f"removed {removed} pods and containers left by a cluster that was killed (state: {state_dir})")
    if not found and not removed and not after_down:
        console.print(f"no cluster is running on {state_dir}")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # our own child when `up` ran in this process's tests
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@cluster.command()
@state_dir_option
@output_option
@provider_option
@namespace_option
@kubeconfig_option
@context_option
def info(
    state_dir: Path, output: str, provider: str, namespace: str, kubeconfig: str | None, context: str | None
) -> None:
    """Show where the local cluster listens and what it runs, or what is installed on Kubernetes."""
    if provider == "kubernetes":
        _info_kubernetes(namespace, kubeconfig, context, output)
        return
    state_dir = state_dir.expanduser().resolve()
    running = read_cluster_file(state_dir)
    if running is None:
        raise click.ClickException(f"no cluster is running on {state_dir}; start one with `cortex cluster up`")
    data: dict[str, Any] = dict(running)
    token = _running_token(state_dir)
    # the page's script sends the token it finds in the fragment, which no server or log ever sees
    data["status_url"] = f"{running['operator_url']}/status" + (f"#token={quote(token, safe='')}" if token else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        data["apis"] = len(httpx.get(f"{running['operator_url']}/get", timeout=5, headers=headers).json())
    except (httpx.HTTPError, ValueError):
        data["apis"] = None
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("provider", "state_dir", "gateway_url", "operator_url", "status_url", "pid", "apis"):
        click.echo(f"{key.replace('_', ' ')}: {data.get(key)}")


def _info_kubernetes(namespace: str, kubeconfig: str | None, context: str | None, output: str) -> None:
    from cortex.cli import kube_cluster
    from cortex.cli.render import table

    try:
        data = kube_cluster.info(namespace, kube_cluster.Target(kubeconfig=kubeconfig, context=context))
    except CortexError as exc:
        raise click.ClickException(str(exc)) from exc
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    grid = table("component", "ready", "service", "in the cluster", "from outside")
    for name in ("operator", "gateway"):
        part = data[name]
        outside = ", ".join(part["external"]) or "-"
        grid.add_row(name, f"{part['ready']}/{part['replicas']}", str(part["service_type"]), part["url"], outside)
    console = Console(highlight=False)
    console.print(f"[bold]namespace:[/bold] {namespace}")
    console.print(grid)
    console.print(f"[bold]apis:[/bold] {len(data['apis'])}" + (f" ({', '.join(data['apis'])})" if data["apis"] else ""))
