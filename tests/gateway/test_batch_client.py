"""``Client.submit_batch`` against a real gateway process (``cortex gateway``) on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortex.client import Client
from cortex.errors import CortexError
from tests.gateway.live import live_gateway
from tests.helpers import api_yaml


class _Direct(Client):
    """A client of one gateway, without an operator to ask where it is."""

    def __init__(self, gateway: str) -> None:
        super().__init__("http://127.0.0.1:9")  # never called
        self._direct = gateway

    def gateway_url(self) -> str:
        return self._direct


def test_the_client_submits_a_batch_and_is_told_which_payloads_are_bad(tmp_path: Path) -> None:
    apis = [api_yaml("echo", extra="async: {max_payload_size: 1Ki}")]
    with live_gateway(tmp_path / "state", apis, "--max-batch-items", "3") as url, _Direct(url) as cx:
        ids = cx.submit_batch("echo", [{"n": 1}, {"n": 2}], idempotency_key="nightly")
        assert len(ids) == 2 and all(cx.status("echo", request_id)["status"] == "in_queue" for request_id in ids)
        assert cx.submit_batch("echo", [{"n": 1}, {"n": 2}], idempotency_key="nightly") == ids  # replayed
        lines = cx.submit_batch("echo", b'{"n": 3}\n\n[4]\n', content_type="application/jsonl")
        assert len(lines) == 2 and not set(lines) & set(ids)
        with pytest.raises(CortexError, match=r"nothing was stored\n  payload 1: the payload is 2002 bytes"):
            cx.submit_batch("echo", [1, "x" * 2000])
        with pytest.raises(CortexError, match="at most 3 payloads"):
            cx.submit_batch("echo", [1, 2, 3, 4])
