"""The control plane: deployed APIs, the runtime that runs them, and the HTTP API the CLI calls."""

from __future__ import annotations
