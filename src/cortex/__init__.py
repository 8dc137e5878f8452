"""cortex-async: any HTTP server becomes a durable, autoscaled asynchronous API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__", "client", "env_delete", "env_list", "new_client", "run_cli"]

if TYPE_CHECKING:
    from cortex.binary import run_cli
    from cortex.client import Client, client
    from cortex.environments import env_delete, env_list, new_client

#: what ``cortex.<name>`` imports on first use, and from where (Cortex's module-level functions)
_LAZY = {
    "Client": "cortex.client",
    "new_client": "cortex.environments",
    "env_list": "cortex.environments",
    "env_delete": "cortex.environments",
    "run_cli": "cortex.binary",
}


def __getattr__(name: str) -> Any:
    """``cortex.client``, ``cortex.Client`` and Cortex's module functions, imported on first use.

    Only programs that talk to a cluster need the client and httpx under it; a dequeuer (one per
    replica) would otherwise carry them, about 5 MB each (``docs/benchmarks.md``, scenario e).
    """
    import importlib

    if name == "client":
        # the submodule is callable (``cortex.client()`` calls its ``client``), so it may stand as the attribute
        return importlib.import_module("cortex.client")
    if name not in _LAZY:
        raise AttributeError(f"module 'cortex' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
