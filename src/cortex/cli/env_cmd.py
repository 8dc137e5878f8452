"""``cortex env ...``: the named environments of ``$CORTEX_CLI_CONFIG_DIR/cli.yaml``."""

from __future__ import annotations

import os

import click

from cortex.cli import render
from cortex.cli.apis import handle_errors, output_option, print_json, stdout_console
from cortex.env import LOCAL_ENVIRONMENT, LOCAL_OPERATOR_ENDPOINT, EnvConfig, config_dir_from


def _load() -> EnvConfig:
    return EnvConfig.load(config_dir_from(os.environ))


@click.group()
def env() -> None:
    """Manage environments (which operator each name talks to)."""


@env.command()
@click.argument("name", required=False, default=LOCAL_ENVIRONMENT)
@click.option(
    "--operator-endpoint",
    default=LOCAL_OPERATOR_ENDPOINT,
    show_default=True,
    metavar="URL",
    help="The operator's base URL.",
)
@click.option(
    "--operator-token",
    envvar="CORTEX_OPERATOR_TOKEN",
    default=None,
    metavar="TOKEN",
    help="The operator's token, if it requires one ('' removes it; default: keep). Or CORTEX_OPERATOR_TOKEN.",
)
@click.option(
    "--api-key",
    envvar="CORTEX_API_KEY",
    default=None,
    metavar="KEY",
    help="The key sent to the gateway, if its APIs require one ('' removes it; default: keep). Or CORTEX_API_KEY.",
)
@handle_errors
def configure(name: str, operator_endpoint: str, operator_token: str | None, api_key: str | None) -> None:
    """Add or update the environment NAME (default: local)."""
    config = _load()
    old = config.environments.get(name)
    if old is not None:
        operator_token = old.operator_token if operator_token is None else operator_token
        api_key = old.api_key if api_key is None else api_key
    configured = config.set(name, operator_endpoint, operator_token=operator_token, api_key=api_key)
    config.save()
    click.echo(f"configured the {configured.name} environment (operator endpoint {configured.operator_endpoint})")


@env.command(name="list")
@output_option
@handle_errors
def list_(output: str) -> None:
    """List the environments."""
    config = _load().to_dict(secrets=False)
    if output == "json":
        print_json(config)
    else:
        stdout_console().print(render.env_list(config))


@env.command()
@click.argument("name")
@handle_errors
def default(name: str) -> None:
    """Make NAME the default environment."""
    config = _load()
    config.set_default(name)
    config.save()
    click.echo(f"set the default environment to {name}")


@env.command()
@click.argument("name")
@handle_errors
def delete(name: str) -> None:
    """Delete the environment NAME."""
    config = _load()
    config.delete(name)
    config.save()
    click.echo(f"deleted the {name} environment")


@env.command()
@click.argument("old")
@click.argument("new")
@handle_errors
def rename(old: str, new: str) -> None:
    """Rename the environment OLD to NEW (it stays the default if it was)."""
    config = _load()
    config.rename(old, new)
    config.save()
    click.echo(f"renamed the {old} environment to {new}")
