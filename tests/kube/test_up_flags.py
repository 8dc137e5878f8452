"""Every ``cortex cluster up`` option either reaches the installation on Kubernetes or is refused there.

The set of options is read from the click command itself: an option added to ``cluster up`` and not
classified below fails :func:`test_every_option_is_classified`, so no flag is silently ignored on Kubernetes.
"""

from __future__ import annotations

from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from cortex.backends import BackendUrls, check_one_server
from cortex.cli import kube_cluster
from cortex.cli.cluster import LOCAL_ONLY_OPTIONS, up
from cortex.cli.main import cli
from cortex.errors import BackendError

BASE = ["cluster", "up", "--provider", "kubernetes", "--dry-run"]
BASE += ["--queue", "redis://redis:6379/0", "--store", "redis://redis:6379/0", "--blobs", "s3://bucket/prefix"]

#: options whose value changes the objects installed, with a value other than their default
IN_THE_INSTALL: dict[str, list[str]] = {
    "gateway_port": ["--gateway-port", "9000"],
    "operator_port": ["--operator-port", "9001"],
    "grace_period": ["--grace-period", "45"],
    "lease_seconds": ["--lease-seconds", "12"],
    "autoscaler_tick": ["--autoscaler-tick", "5"],
    # the queue and the store are one server: each is changed with the other
    "queue_url": ["--queue", "postgresql://pg/cortex", "--store", "postgresql://pg/cortex"],
    "store_url": ["--queue", "redis://redis:6379/0?prefix=other", "--store", "redis://redis:6379/0?prefix=other"],
    "blobs_url": ["--blobs", "s3://other-bucket"],
    "api_keys": ["--api-key", "user-key-0123456789abcdefghijkl"],
    "operator_token": ["--operator-token", "operator-token-0123456789abcdef"],
    "refuse_private_webhooks": ["--refuse-private-webhooks"],
    "namespace": ["--namespace", "ml"],
    "image": ["--image", "registry.local/cortex-async:dev"],
    "service_type": ["--service-type", "LoadBalancer"],
    "image_pull_secrets": ["--image-pull-secret", "regcred"],
    "node_group_label": ["--node-group-label", "example.com/pool"],
}
#: options about this machine's side of the install: which cluster, how to reach it, the CLI environment, waiting
ON_THIS_MACHINE = {"provider", "kubeconfig", "context", "operator_url", "env_name", "dry_run", "timeout"}


@pytest.fixture(autouse=True)
def _fixed_chain_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # a fresh chaining key per run would make every two manifests differ
    monkeypatch.setattr(kube_cluster, "new_chain_key", lambda: "chain-key-0123456789abcdefghij")


def dry_run(*args: str) -> str:
    result = CliRunner().invoke(cli, [*BASE, *args])
    assert result.exit_code == 0, result.output
    return result.output


def objects(manifest: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(manifest) if o}


def args_of(manifest: str, deployment: str) -> list[str]:
    (container,) = objects(manifest)[("Deployment", deployment)]["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def test_every_option_is_classified() -> None:
    names = {param.name for param in up.params if isinstance(param, click.Option)}
    tables = [set(IN_THE_INSTALL), ON_THIS_MACHINE, set(LOCAL_ONLY_OPTIONS)]
    assert names == set().union(*tables), "classify each new `cluster up` option in one table"
    assert sum(len(table) for table in tables) == len(names), "an option is in two tables"


@pytest.mark.parametrize("name", sorted(IN_THE_INSTALL))
def test_each_install_option_changes_what_is_installed(name: str) -> None:
    assert dry_run(*IN_THE_INSTALL[name]) != dry_run()


def example_argv(param: click.Parameter) -> list[str]:
    """The option given once on a command line, with a value its type accepts."""
    assert isinstance(param, click.Option)
    if param.is_flag:
        return [param.opts[0]]
    if isinstance(param.type, click.Choice):
        return [param.opts[0], str(param.type.choices[-1])]
    if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
        return [param.opts[0], "7"]
    return [param.opts[0], "somewhere"]


@pytest.mark.parametrize("name", sorted(LOCAL_ONLY_OPTIONS))
def test_each_local_only_option_is_refused_on_kubernetes(name: str) -> None:
    (param,) = [p for p in up.params if p.name == name]
    result = CliRunner().invoke(cli, [*BASE, *example_argv(param)])
    assert result.exit_code == 2
    assert f"{param.opts[0]}: only for a cluster on this machine; with --provider kubernetes" in result.output


def test_webhook_guard_and_grace_period_reach_the_operator_and_the_gateway() -> None:
    manifest = dry_run("--refuse-private-webhooks", "--grace-period", "45")
    operator, gateway = args_of(manifest, "operator"), args_of(manifest, "gateway")
    assert "--refuse-private-webhooks" in operator and "--refuse-private-webhooks" in gateway
    assert operator[operator.index("--grace-period") + 1] == "45"
    plain = dry_run()
    assert "--allow-private-webhooks" in args_of(plain, "operator") and "--allow-private-webhooks" in args_of(
        plain, "gateway"
    )
    # without --grace-period, API pods get Cortex's 60 s rather than the local cluster's default
    assert args_of(plain, "operator")[args_of(plain, "operator").index("--grace-period") + 1] == "60"


def test_the_operator_command_reads_what_cluster_up_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    from cortex.operator import incluster

    manifest = dry_run(
        "--node-group-label",
        "example.com/pool",
        "--grace-period",
        "45",
        "--lease-seconds",
        "12",
        "--autoscaler-tick",
        "5",
    )
    seen: list[incluster.InClusterSettings] = []

    async def run_operator(settings: incluster.InClusterSettings, stop: Any) -> None:
        seen.append(settings)

    monkeypatch.setattr(incluster, "run_operator", run_operator)
    secrets = {name: o["stringData"] for (kind, name), o in objects(manifest).items() if kind == "Secret"}
    env = {**secrets["cortex-backends"], **secrets["cortex-operator"]}
    result = CliRunner().invoke(cli, ["operator", *args_of(manifest, "operator")], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.kube.node_group_label == "example.com/pool"
    assert (settings.kube.grace_period, settings.kube.lease_seconds) == (45, 12.0)
    assert settings.control.autoscaler_tick == 5.0
    assert settings.control.refuse_private_webhooks is False


def test_a_fractional_grace_period_is_rounded_up_to_whole_seconds() -> None:
    operator = args_of(dry_run("--grace-period", "2.5"), "operator")
    assert operator[operator.index("--grace-period") + 1] == "3"


@pytest.mark.parametrize(
    "command", [["render", "cortex.yaml"], BASE, ["operator", "--gateway-url", "g", "--operator-url", "o"]]
)
def test_a_node_group_label_that_is_no_label_key_is_refused(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--node-group-label", "not a label!"])
    assert result.exit_code == 2
    assert "--node-group-label" in result.output and "must be a Kubernetes label key" in result.output


def test_the_gateway_command_reads_the_webhook_guard_cluster_up_rendered() -> None:
    manifest = dry_run("--refuse-private-webhooks", "--gateway-port", "9000")
    params = cli.commands["gateway"].make_context("gateway", args_of(manifest, "gateway")).params
    assert params["refuse_private_webhooks"] is True
    assert params["port"] == 9000
    plain = cli.commands["gateway"].make_context("gateway", args_of(dry_run(), "gateway")).params
    assert plain["refuse_private_webhooks"] is False


@pytest.mark.parametrize(
    ("queue", "store"),
    [
        ("redis://redis:6379/0", "postgresql://cortex:secret@pg/cortex"),
        ("redis://redis:6379/0", "redis://redis:6379/0?prefix=other"),
    ],
    ids=["two servers", "two prefixes"],
)
def test_a_queue_and_a_store_on_two_servers_are_refused_as_on_this_machine(queue: str, store: str) -> None:
    with pytest.raises(BackendError) as local:
        check_one_server(BackendUrls(queue=queue, store=store, blobs="s3://bucket/prefix"))
    result = CliRunner().invoke(cli, [*BASE, "--queue", queue, "--store", store])
    assert result.exit_code == 1
    assert str(local.value) in result.output and "pass the same URL as --queue and --store" in result.output
    assert "secret" not in result.output
    assert "kind: Deployment" not in result.output  # nothing is rendered, let alone applied
