"""Options that control who may call a cluster: gateway keys, the operator token, webhook targets.

Secrets are best given through the environment (``CORTEX_API_KEYS``, ``CORTEX_OPERATOR_TOKEN``):
a command line can be read by every user of the machine (``ps``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from cortex.auth import KEY_HINT, MIN_KEY_LENGTH, normalize_key

F = TypeVar("F", bound=Callable[..., Any])


def api_key_option(func: F) -> F:
    """``--api-key KEY`` (repeatable; ``CORTEX_API_KEYS``, blank-separated): keys every API accepts."""
    return click.option(
        "--api-key",
        "api_keys",
        multiple=True,
        envvar="CORTEX_API_KEYS",
        metavar="KEY",
        help="A key every API accepts and then requires (Authorization: Bearer KEY), in clear or as"
        " sha256:<hex>; repeatable. Prefer the CORTEX_API_KEYS variable (blank-separated).",
    )(func)


def refuse_private_webhooks_option(func: F) -> F:
    """``--refuse-private-webhooks`` (``CORTEX_REFUSE_PRIVATE_WEBHOOKS``)."""
    return click.option(
        "--refuse-private-webhooks/--allow-private-webhooks",
        envvar="CORTEX_REFUSE_PRIVATE_WEBHOOKS",
        default=False,
        show_default=True,
        help="Refuse webhooks to loopback, private, link-local and other non-public addresses.",
    )(func)


def operator_token_option(func: F) -> F:
    """``--operator-token TOKEN`` (``CORTEX_OPERATOR_TOKEN``): the token the operator requires."""
    return click.option(
        "--operator-token",
        envvar="CORTEX_OPERATOR_TOKEN",
        default=None,
        metavar="TOKEN",
        help="Require this token (Authorization: Bearer TOKEN) on the operator; the CLI environment"
        " gets it in cli.yaml. Prefer the CORTEX_OPERATOR_TOKEN variable.",
    )(func)


def key_digests(keys: Iterable[str]) -> frozenset[str]:
    """The digests of ``--api-key`` values; a bad one is a usage error that never repeats the key."""
    digests = set()
    for index, key in enumerate(keys, start=1):
        try:
            digests.add(normalize_key(key))
        except ValueError as exc:
            raise click.BadParameter(f"key #{index}: {exc}", param_hint="--api-key / CORTEX_API_KEYS") from None
    return frozenset(digests)


def check_token(token: str | None) -> str | None:
    """The operator token, checked as a key is (long enough, no blanks); None when not set."""
    if token is None or token == "":
        return None
    if len(token) < MIN_KEY_LENGTH or any(c.isspace() for c in token) or not token.isprintable():
        raise click.BadParameter(
            f"the token must be at least {MIN_KEY_LENGTH} printable characters without blanks; {KEY_HINT}",
            param_hint="--operator-token / CORTEX_OPERATOR_TOKEN",
        )
    return token
