"""``python -m cortex``: the same as the ``cortex`` command (used to start child processes)."""

from __future__ import annotations

from cortex.cli.main import main

main()
