"""The gateway as uvicorn starts it: backends named by environment variables, opened per process."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from cortex.backends import BackendUrls, open_backends
from cortex.gateway.app import create_app


def app_from_environ() -> Starlette:
    """Build the app from ``CORTEX_QUEUE_URL``, ``CORTEX_STORE_URL`` and ``CORTEX_BLOBS_URL``.

    ``CORTEX_GATEWAY_OPERATOR_URL``, when set, is the operator whose ``/metrics`` the gateway's include.
    """
    urls = BackendUrls(
        queue=os.environ["CORTEX_QUEUE_URL"], store=os.environ["CORTEX_STORE_URL"], blobs=os.environ["CORTEX_BLOBS_URL"]
    )
    operator_url = os.environ.get("CORTEX_GATEWAY_OPERATOR_URL") or None
    return create_app(open_backends=lambda: open_backends(urls), operator_url=operator_url)
