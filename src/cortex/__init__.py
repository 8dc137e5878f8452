"""cortex-async: any HTTP server becomes a durable, autoscaled asynchronous API."""

from __future__ import annotations

__version__ = "0.1.0"

# imported here, after __version__, so that ``cortex.client`` is the function, not the submodule
from cortex.client import Client, client

__all__ = ["Client", "__version__", "client"]
