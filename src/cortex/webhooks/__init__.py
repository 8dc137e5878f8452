"""Webhooks: request events pushed to a URL, signed per the Standard Webhooks scheme, retried until delivered."""

from __future__ import annotations
