"""Size-based rotation of the log files a local cluster's processes append to.

The gateway, the dequeuers and the user containers write their stdout and stderr straight to a
file under ``<state>/logs`` (opened for appending, so that a process that dies loses nothing
buffered). Those processes cannot reopen their file, so the cluster rotates it the way
logrotate's ``copytruncate`` does: past :attr:`Rotation.max_bytes`, the file is copied to
``<name>.1`` (older copies shift to ``.2``, ... up to :attr:`Rotation.keep`) and truncated; the
writer, appending, goes on at its new end. A line written between the copy and the truncation
may be lost, the price of rotating a file its writer keeps open. ``cortex logs`` reads from the
start of a file it finds shorter than where it had got to.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Rotation:
    """When and how the logs of a cluster are rotated."""

    #: a log past this size is rotated
    max_bytes: int = 10 * 2**20
    #: rotated copies kept of each log (``<name>.1`` the newest)
    keep: int = 3
    #: seconds between two looks at the sizes
    interval: float = 5.0


def rotate_if_large(path: Path, rotation: Rotation) -> bool:
    """Rotate ``path`` if it is larger than ``rotation.max_bytes``; whether it was."""
    try:
        if path.stat().st_size <= rotation.max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(rotation.keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    if rotation.keep > 0:
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True


def rotate_all(root: Path, rotation: Rotation) -> int:
    """Rotate every ``*.log`` under ``root`` that is too large; how many were."""
    rotated = 0
    for path in sorted(root.rglob("*.log")):
        try:
            rotated += rotate_if_large(path, rotation)
        except OSError as exc:  # a full disk, a file removed meanwhile: try again next time
            log.warning("could not rotate %s: %s", path, exc)
    return rotated


async def rotate_forever(root: Path, rotation: Rotation | None = None) -> None:
    """Rotate the logs under ``root`` every ``rotation.interval`` seconds, until cancelled."""
    rotation = rotation or Rotation()
    while True:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(rotate_all, root, rotation)
        await asyncio.sleep(rotation.interval)
