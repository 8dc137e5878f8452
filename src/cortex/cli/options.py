"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cortex import logformat
from cortex.backends import BackendUrls

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STATE_DIR = Path("~/.cortex/state")


def backend_options(func: F) -> F:
    """``--state-dir``, or ``--queue``/``--store``/``--blobs`` URLs for scale-out backends."""
    decorators = [
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="CORTEX_STATE_DIR",
            default=DEFAULT_STATE_DIR,
            show_default=True,
            help="Where the embedded queue, records and blobs live.",
        ),
        click.option("--queue", "queue_url", envvar="CORTEX_QUEUE_URL", help="Queue URL (default: the state dir)."),
        click.option(
            "--store", "store_url", envvar="CORTEX_STORE_URL", help="Record store URL (default: the state dir)."
        ),
        click.option(
            "--blobs", "blobs_url", envvar="CORTEX_BLOBS_URL", help="Blob store URL (default: the state dir)."
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def backend_urls(state_dir: Path, queue_url: str | None, store_url: str | None, blobs_url: str | None) -> BackendUrls:
    """The URLs the backend options name, defaults filled from the state directory."""
    return BackendUrls.resolve(state_dir, queue=queue_url, store=store_url, blobs=blobs_url)


def configure_logging(*, replica: str | None = None) -> None:
    """Log as ``CORTEX_LOG_LEVEL`` and ``CORTEX_DISABLE_JSON_LOGGING`` say (see :mod:`cortex.logformat`)."""
    logformat.configure_from_environ(replica=replica)


def check_label_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: ``value`` must be a Kubernetes label key (``--node-group-label``), or None."""
    from cortex.spec.kubernetes import check_qualified_name  # pydantic: only for the commands that need it

    if value is None:
        return None
    try:
        return check_qualified_name(value)
    except ValueError as exc:
        raise click.BadParameter(f"must be a Kubernetes label key: {exc}") from None
