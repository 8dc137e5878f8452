"""cortex-async: any HTTP server becomes a durable, autoscaled asynchronous API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__", "client"]

if TYPE_CHECKING:
    from cortex.client import Client, client


def __getattr__(name: str) -> Any:
    """``cortex.client`` and ``cortex.Client``, imported on first use.

    Only programs that talk to a cluster need the client and httpx under it; a dequeuer (one per
    replica) would otherwise carry them, about 5 MB each (``docs/benchmarks.md``, scenario e).
    """
    if name not in ("client", "Client"):
        raise AttributeError(f"module 'cortex' has no attribute {name!r}")
    import importlib

    # the submodule is callable (``cortex.client()`` calls its ``client``), so it may stand as the attribute
    module = importlib.import_module("cortex.client")
    return module if name == "client" else module.Client
