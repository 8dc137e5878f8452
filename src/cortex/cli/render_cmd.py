"""``cortex render [cortex.yaml]``: the Kubernetes objects each API of a configuration becomes.

It prints what the Kubernetes runtime would apply, so users can review it or keep it in Git. It
talks to no cluster: the namespace, the platform image and the gateway's address are options, with
the defaults ``cortex cluster up --provider kubernetes`` installs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from cortex.cli.apis import handle_errors
from cortex.cli.options import check_label_key
from cortex.runtime.kubeobjects import KubeSettings, api_objects
from cortex.spec import load_file

_DEFAULTS = KubeSettings()


class _NoAliases(yaml.SafeDumper):
    """A dumper that writes a repeated mapping out again rather than as a YAML anchor."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    """``objects`` as one YAML stream, a document each, keys in their given order."""
    return yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False, default_flow_style=False)


@click.command()
@click.argument("config_file", required=False, default="cortex.yaml", type=click.Path(path_type=Path))
@click.option("-n", "--namespace", default=_DEFAULTS.namespace, show_default=True, help="Namespace of the APIs.")
@click.option("--image", default=_DEFAULTS.image, show_default=True, help="The platform image (runs the dequeuer).")
@click.option("--gateway-url", default=None, help="CORTEX_GATEWAY_URL [default: the gateway Service of the namespace]")
@click.option(
    "--grace-period", type=int, default=_DEFAULTS.grace_period, show_default=True, help="Seconds a pod has to drain."
)
@click.option(
    "--node-group-label",
    default=_DEFAULTS.node_group_label,
    callback=check_label_key,
    show_default=True,
    help="The node label node_groups are matched against.",
)
@click.option(
    "--image-pull-secret", "image_pull_secrets", multiple=True, metavar="NAME", help="Pull images with it (repeatable)."
)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@handle_errors
def render(
    config_file: Path,
    namespace: str,
    image: str,
    gateway_url: str | None,
    grace_period: int,
    node_group_label: str,
    image_pull_secrets: tuple[str, ...],
    output: str,
) -> None:
    """Print the Kubernetes objects each API of CONFIG_FILE (default: ./cortex.yaml) becomes.

    Each API starts at its init_replicas; its deploymentID label is its spec id, so the output
    changes only when the configuration does.
    """
    settings = KubeSettings(
        namespace=namespace,
        image=image,
        gateway_url=gateway_url or f"http://gateway.{namespace}.svc.cluster.local:8888",
        grace_period=grace_period,
        node_group_label=node_group_label,
        image_pull_secrets=image_pull_secrets,
    )
    objects = [
        obj
        for spec in load_file(config_file)
        for obj in api_objects(
            spec, deployment_id=spec.spec_id(), replicas=spec.autoscaling.init_replicas, settings=settings
        )
    ]
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        click.echo(dump_yaml(objects), nl=False)
