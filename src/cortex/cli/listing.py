"""``cortex get`` without an environment: the APIs of every configured environment, as Cortex lists them.

Each environment answers for itself; one that cannot be reached is reported, not fatal, so that a
stopped cluster does not hide the others (Cortex's ``getAPIsInAllEnvironments``). The JSON is
Cortex's: ``[{"env_name", "apis": [APIResponse, ...], "error": null | "<message>"}]``.
"""

from __future__ import annotations

import os
from typing import Any

from cortex.client import client
from cortex.env import EnvConfig, config_dir_from
from cortex.errors import CortexError


def list_all_environments() -> list[dict[str, Any]]:
    """Every environment's APIs, in ``cli.yaml``'s order, each with the error that kept them away (or None).

    Raises:
        NotFound: no environment is configured at all (the message says how to configure one).
    """
    config = EnvConfig.load(config_dir_from(os.environ))
    if not config.environments:
        config.get(None)  # raises the "no default environment: run ..." error
    listed: list[dict[str, Any]] = []
    for name in config.environments:
        try:
            with client(name) as cx:
                listed.append({"env_name": name, "apis": cx.list_apis(), "error": None})
        except CortexError as exc:
            listed.append({"env_name": name, "apis": [], "error": str(exc)})
    return listed


def unreachable_note(listed: list[dict[str, Any]]) -> str | None:
    """Cortex's line under the table when some environments did not answer, or None."""
    failed = [str(entry["env_name"]) for entry in listed if entry.get("error")]
    if not failed:
        return None
    if len(failed) == 1:
        return (
            f"unable to detect apis from the {failed[0]} environment; "
            f"run `cortex get --env {failed[0]}` if this is unexpected"
        )
    names = ", ".join(failed[:-1]) + f" and {failed[-1]}"
    return f"unable to detect apis from the {names} environments; run `cortex get --env ENV_NAME` if this is unexpected"
