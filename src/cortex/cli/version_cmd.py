"""``cortex version``: the CLI's version and, when its cluster answers, the cluster's (as Cortex printed them)."""

from __future__ import annotations

import click

from cortex import __version__
from cortex.cli.apis import env_option, handle_errors, open_client
from cortex.errors import CortexError


@click.command()
@env_option
@handle_errors
def version(env_name: str | None) -> None:
    """Print the CLI's version, and the cluster's of the environment (-e, else the default one).

    Without -e, a cluster that does not answer leaves the CLI's version alone on the line; with -e,
    it is an error.
    """
    try:
        with open_client(env_name) as cx:
            cluster = str(cx.info().get("version", "unknown"))
    except CortexError:
        click.echo(f"cli version: {__version__}")
        if env_name is not None:
            raise
        return
    click.echo(f"cli version:     {__version__}")
    click.echo(f"cluster version: {cluster}")
