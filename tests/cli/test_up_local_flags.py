"""Every ``cortex cluster up`` option configures a local cluster, or is refused with ``--provider local``.

The set of options is read from the click command itself: an option added to ``cluster up`` and not
classified below fails :func:`test_every_option_is_classified`, so no Kubernetes flag is silently ignored
on this machine (tests/kube/test_up_flags.py checks the other direction).
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cortex.cli import cluster as cluster_cmd
from cortex.cli.cluster import KUBERNETES_ONLY_OPTIONS, LOCAL_ONLY_OPTIONS, up
from cortex.cli.main import cli
from cortex.operator.settings import ClusterSettings

#: options a local cluster uses as well as an installation on Kubernetes
ON_BOTH = {
    "provider",
    "env_name",
    "gateway_port",
    "operator_port",
    "grace_period",
    "lease_seconds",
    "autoscaler_tick",
    "queue_url",
    "store_url",
    "blobs_url",
    "api_keys",
    "operator_token",
    "refuse_private_webhooks",
}


def example_argv(param: click.Parameter) -> list[str]:
    """The option given once on a command line, with a value its type accepts."""
    assert isinstance(param, click.Option)
    if param.is_flag:
        return [param.opts[0]]
    if isinstance(param.type, click.Choice):
        return [param.opts[0], str(param.type.choices[-1])]
    if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
        return [param.opts[0], "7"]
    if param.name == "node_group_label":  # checked as a label key before the command runs
        return [param.opts[0], "example.com/pool"]
    return [param.opts[0], "somewhere"]


def test_every_option_is_classified() -> None:
    names = {param.name for param in up.params if isinstance(param, click.Option)}
    tables = [ON_BOTH, set(LOCAL_ONLY_OPTIONS), set(KUBERNETES_ONLY_OPTIONS)]
    assert names == set().union(*tables), "classify each new `cluster up` option in one table"
    assert sum(len(table) for table in tables) == len(names), "an option is in two tables"


@pytest.mark.parametrize("provider", [["--provider", "local"], []], ids=["--provider local", "the default"])
@pytest.mark.parametrize("name", sorted(KUBERNETES_ONLY_OPTIONS))
def test_each_kubernetes_only_option_is_refused_on_this_machine(name: str, provider: list[str], tmp_path: Path) -> None:
    (param,) = [p for p in up.params if p.name == name]
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["cluster", "up", *provider, "--state-dir", str(state), *example_argv(param)])
    assert result.exit_code == 2, result.output
    long = next(opt for opt in param.opts if opt.startswith("--"))
    assert f"{long}: only for Kubernetes; with --provider local it would do nothing, so leave it out" in (result.output)
    assert "--provider kubernetes" in result.output  # what to do instead
    assert not state.exists()  # refused before anything started


def test_every_refused_option_is_named_at_once(tmp_path: Path) -> None:
    argv = ["cluster", "up", "--state-dir", str(tmp_path / "state"), "-n", "ml", "--dry-run", "--context", "kind"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert "--namespace, --context, --dry-run: only for Kubernetes; with --provider local they would do nothing" in (
        " ".join(result.output.split())
    )


def test_the_options_of_both_reach_a_local_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[ClusterSettings] = []
    monkeypatch.setattr(cluster_cmd, "_run_foreground", started.append)
    argv = ["cluster", "up", "--provider", "local", "--foreground", "--state-dir", str(tmp_path)]
    argv += ["--gateway-port", "9000", "--operator-port", "9001", "--lease-seconds", "12", "--refuse-private-webhooks"]
    # a Kubernetes option left at its default, or set in the environment, is not refused
    result = CliRunner().invoke(cli, argv, env={"KUBECONFIG": str(tmp_path / "kubeconfig")})
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.gateway_port, settings.operator_port, settings.lease_seconds) == (9000, 9001, 12.0)
    assert settings.refuse_private_webhooks is True
