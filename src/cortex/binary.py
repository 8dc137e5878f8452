"""``run_cli``: the ``cortex`` command run from Python, as Cortex's client package offered it.

Cortex's e2e helpers call ``cortex.run_cli(["logs", api, "--random-pod", "-e", env])``. Here the
command is this package's own CLI, run with the current interpreter (``python -m cortex``), so it
needs no binary on ``PATH``; ``CORTEX_CLI_PATH`` names another executable to run instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO

from cortex.errors import CortexBinaryException


def cli_command() -> list[str]:
    """The command that runs the CLI: ``$CORTEX_CLI_PATH``, else this interpreter with ``-m cortex``."""
    path = os.environ.get("CORTEX_CLI_PATH")
    if path:
        if not os.path.exists(path):
            raise CortexBinaryException(f"CORTEX_CLI_PATH names {path}, which does not exist")
        return [path]
    return [sys.executable, "-m", "cortex"]


def run_cli(args: Sequence[str], hide_output: bool = False) -> str:
    """Run the ``cortex`` command with ``args`` and return what it printed on stdout.

    Unless ``hide_output``, the output is also copied to this process's stdout as it comes (what
    Cortex's helper did: its callers stream logs this way). The command runs until it exits; a
    followed ``logs`` runs until it is interrupted, so run that one in a thread.

    Raises:
        CortexBinaryException: the command exited with a non-zero status (its stderr is the message).
    """
    environ = {**os.environ, "CORTEX_CLI_INVOKER": "python"}
    with subprocess.Popen(
        [*cli_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=environ,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        errors: list[str] = []
        # stderr is drained beside stdout, so that a command writing much to both never blocks
        drain = threading.Thread(target=lambda: errors.append(_read_all(process.stderr)), daemon=True)
        drain.start()
        output: list[str] = []
        for line in process.stdout:
            output.append(line)
            if not hide_output:
                sys.stdout.write(line)
                sys.stdout.flush()
        process.wait()
        drain.join()
    if process.returncode != 0:
        raise CortexBinaryException("".join(errors).strip() or f"cortex exited with status {process.returncode}")
    return "".join(output)


def _read_all(stream: IO[str] | None) -> str:
    return stream.read() if stream is not None else ""
