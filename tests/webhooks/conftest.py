from __future__ import annotations

# the in-process gateway + dequeuer + user server of the dequeuer tests
from tests.dequeuer.conftest import make_cluster, user_server

__all__ = ["make_cluster", "user_server"]
