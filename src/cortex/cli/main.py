"""The ``cortex`` command group."""

from __future__ import annotations

import click

from cortex import __version__
from cortex.cli import apis
from cortex.cli.cluster import cluster
from cortex.cli.env_cmd import env
from cortex.cli.render_cmd import render
from cortex.cli.requests_cmd import request
from cortex.cli.serve import dequeuer, gateway, operator
from cortex.cli.version_cmd import version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cortex")
def cli() -> None:
    """cortex-async: run any HTTP server as a durable, autoscaled asynchronous API."""


cli.add_command(gateway)
cli.add_command(dequeuer)
cli.add_command(operator)
for command in (
    apis.deploy,
    apis.get,
    apis.describe,
    apis.logs,
    apis.refresh,
    apis.delete,
    env,
    request,
    render,
    version,
):
    cli.add_command(command)

cli.add_command(cluster)


def main() -> None:
    """Entry point of the ``cortex`` command."""
    cli()
