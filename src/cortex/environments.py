"""Cortex's module functions for environments: ``cortex.new_client``, ``cortex.env_list``, ``cortex.env_delete``.

They read and write ``$CORTEX_CLI_CONFIG_DIR/cli.yaml`` as ``cortex env ...`` does (Cortex's ran that
command; these call the same code in-process).
"""

from __future__ import annotations

import os
from typing import Any

from cortex.client import Client, client
from cortex.env import EnvConfig, config_dir_from


def new_client(env_name: str, operator_endpoint: str) -> Client:
    """Configure the environment ``env_name`` (kept in ``cli.yaml``) and return a client of it.

    As ``cortex env configure <env_name> --operator-endpoint <url>``; a token or key the environment
    already had is kept.

    Raises:
        CortexError: the name or the endpoint is not valid, or ``cli.yaml`` cannot be written.
    """
    config = EnvConfig.load(config_dir_from(os.environ))
    old = config.environments.get(env_name)
    config.set(
        env_name,
        operator_endpoint,
        operator_token=old.operator_token if old is not None else None,
        api_key=old.api_key if old is not None else None,
    )
    config.save()
    return client(env_name)


def env_list() -> dict[str, Any]:
    """The configured environments, ``{"default_environment", "environments": [{"name", "operator_endpoint"}]}``.

    Tokens and keys read ``(hidden)``, as ``cortex env list -o json`` prints them.
    """
    return EnvConfig.load(config_dir_from(os.environ)).to_dict(secrets=False)


def env_delete(name: str) -> None:
    """Delete the environment ``name`` from ``cli.yaml``.

    Raises:
        NotFound: no environment has that name.
    """
    config = EnvConfig.load(config_dir_from(os.environ))
    config.delete(name)
    config.save()
