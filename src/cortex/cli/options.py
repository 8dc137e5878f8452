"""Options shared by several commands."""

from __future__ import annotations

import os
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
    defaults = BackendUrls.for_state_dir(state_dir.expanduser())
    return BackendUrls(
        queue=queue_url or defaults.queue, store=store_url or defaults.store, blobs=blobs_url or defaults.blobs
    )


def configure_logging(*, replica: str | None = None) -> None:
    """Log to stderr at ``CORTEX_LOG_LEVEL`` (default INFO), as JSON lines unless ``CORTEX_DISABLE_JSON_LOGGING=true``.

    ``replica`` (a dequeuer's ``CORTEX_REPLICA_ID``) is written on every line.
    """
    level = os.environ.get("CORTEX_LOG_LEVEL", "INFO")
    console = os.environ.get("CORTEX_DISABLE_JSON_LOGGING", "").strip().lower() in ("1", "true", "yes")
    logformat.configure(level, json_lines=not console, replica=replica)
