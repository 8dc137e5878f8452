"""The gateway: the ASGI app that accepts, stores and queues requests and serves their status."""

from __future__ import annotations

from cortex.gateway.app import GatewaySettings, create_app

__all__ = ["GatewaySettings", "create_app"]
