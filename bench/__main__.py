"""``python -m bench``: run every scenario, write docs/benchmarks.md and bench/results.json."""

from __future__ import annotations

from bench.main import main

main()
