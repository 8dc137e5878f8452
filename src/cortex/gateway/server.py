"""The gateway as uvicorn starts it: backends named by environment variables, opened per process."""

from __future__ import annotations

import os
from collections.abc import Mapping

from starlette.applications import Starlette

from cortex.auth import KeyRing, normalize_keys
from cortex.backends import BackendUrls, open_backends
from cortex.gateway.app import DEFAULT_BODY_TIMEOUT, GatewaySettings, create_app
from cortex.gateway.batch import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS

#: the keys every API accepts, blank-separated, each in clear or as ``sha256:<hex>`` (``cortex gateway --api-key``)
KEYS_VAR = "CORTEX_API_KEYS"
#: the cluster's internal (chaining) keys: accepted everywhere, they never make a key necessary
INTERNAL_KEYS_VAR = "CORTEX_GATEWAY_INTERNAL_KEYS"
#: ``true`` to refuse webhooks to non-public addresses (``--refuse-private-webhooks``)
REFUSE_PRIVATE_VAR = "CORTEX_REFUSE_PRIVATE_WEBHOOKS"
#: seconds a request body may stop arriving before it is answered 408 (``cortex gateway --body-timeout``)
BODY_TIMEOUT_VAR = "CORTEX_GATEWAY_BODY_TIMEOUT"
#: payloads one ``POST /<api>/batch`` may hold (``cortex gateway --max-batch-items``)
MAX_BATCH_ITEMS_VAR = "CORTEX_GATEWAY_MAX_BATCH_ITEMS"
#: bytes the body of one ``POST /<api>/batch`` may take (``cortex gateway --max-batch-bytes``)
MAX_BATCH_BYTES_VAR = "CORTEX_GATEWAY_MAX_BATCH_BYTES"


def settings_from_environ(environ: Mapping[str, str]) -> GatewaySettings:
    """The settings of :data:`KEYS_VAR`, :data:`INTERNAL_KEYS_VAR`, :data:`REFUSE_PRIVATE_VAR`, the body
    timeout and the batch limits."""
    keys = KeyRing(
        cluster=normalize_keys(environ.get(KEYS_VAR, "").split()),
        internal=normalize_keys(environ.get(INTERNAL_KEYS_VAR, "").split()),
    )
    refuse = environ.get(REFUSE_PRIVATE_VAR, "").strip().lower() in ("1", "true", "yes")
    body_timeout = float(environ.get(BODY_TIMEOUT_VAR) or DEFAULT_BODY_TIMEOUT)
    return GatewaySettings(
        keys=keys,
        refuse_private_webhooks=refuse,
        body_timeout=body_timeout,
        max_batch_items=int(environ.get(MAX_BATCH_ITEMS_VAR) or DEFAULT_MAX_ITEMS),
        max_batch_bytes=int(environ.get(MAX_BATCH_BYTES_VAR) or DEFAULT_MAX_BYTES),
    )


def app_from_environ() -> Starlette:
    """Build the app from ``CORTEX_QUEUE_URL``, ``CORTEX_STORE_URL`` and ``CORTEX_BLOBS_URL``.

    ``CORTEX_GATEWAY_OPERATOR_URL``, when set, is the operator whose ``/metrics`` the gateway's include;
    the keys and the webhook policy come from :func:`settings_from_environ`.
    """
    urls = BackendUrls(
        queue=os.environ["CORTEX_QUEUE_URL"], store=os.environ["CORTEX_STORE_URL"], blobs=os.environ["CORTEX_BLOBS_URL"]
    )
    operator_url = os.environ.get("CORTEX_GATEWAY_OPERATOR_URL") or None
    return create_app(
        open_backends=lambda: open_backends(urls), operator_url=operator_url, settings=settings_from_environ(os.environ)
    )
