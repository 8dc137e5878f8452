"""The dequeuer: the sidecar that feeds queued requests to the user's HTTP server."""

from __future__ import annotations
