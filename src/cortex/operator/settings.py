"""Where a local cluster listens and keeps its state, and the file a running cluster leaves there.

Kept apart from the cluster itself so that the CLI can read it without importing the servers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal

CLUSTER_FILE = "cluster.json"


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Where a local cluster keeps its state and listens."""

    state_dir: Path
    host: str = "127.0.0.1"
    gateway_port: int = 8888
    operator_port: int = 8889
    lease_seconds: float = 30.0
    #: scale-out backends (None: the embedded ones in the state directory)
    queue_url: str | None = None
    store_url: str | None = None
    blobs_url: str | None = None
    grace_period: float = 30.0
    #: seconds between two autoscaler ticks (Cortex: 10)
    autoscaler_tick: float = 10.0
    #: digests of the keys every API accepts, and then requires (empty: only APIs with their own keys need one)
    api_keys: frozenset[str] = frozenset()
    #: the token the operator requires (None: none); it is written into the replicas' cli.yaml
    operator_token: str | None = dataclasses.field(default=None, repr=False)
    #: refuse webhooks to loopback, private, link-local and other non-public addresses
    refuse_private_webhooks: bool = False
    #: ``podman`` or ``docker`` (None: the first found); ``containers``: ``auto``, ``always`` or ``never``
    container_engine: str | None = None
    containers: Literal["auto", "always", "never"] = "auto"

    @property
    def gateway_url(self) -> str:
        """Where APIs are served."""
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def operator_url(self) -> str:
        """Where the CLI and client reach the operator."""
        return f"http://{self.host}:{self.operator_port}"


def read_cluster_file(state_dir: Path) -> dict[str, Any] | None:
    """What a running cluster wrote about itself; None if no cluster is running there."""
    path = state_dir / CLUSTER_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(int(data["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        return None  # left by a cluster that was killed
    except PermissionError:
        pass
    return data
