"""``python -m cortex.dequeuer``: what the local runtime starts for every replica."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_entry_point_leaves_out_the_cli_and_the_client() -> None:
    # what a dequeuer never uses must not sit in every replica's memory (docs/benchmarks.md, scenario e)
    probe = (
        "import sys, cortex.dequeuer.__main__; print(sorted(m for m in ('click', 'rich', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


def test_an_api_that_is_not_deployed_is_a_clear_error(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "cortex.dequeuer", "--api", "nope", "--user-port", "9", "--state-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "api nope is not deployed" in done.stderr and "Traceback" not in done.stderr


def test_cortex_dequeuer_still_runs_the_same_code(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "cortex",
        "dequeuer",
        "--api",
        "nope",
        "--user-port",
        "9",
        "--state-dir",
        str(tmp_path),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "api nope is not deployed" in done.stderr


def test_the_quickack_remedy_is_on_unless_the_private_knob_turns_it_off() -> None:
    # CORTEX_DEQUEUER_QUICKACK=0 exists for bench/keepalive.py, which measures what the remedy saves
    from cortex.dequeuer.__main__ import parse, settings_of

    args = parse(["--api", "a", "--user-port", "8080"])
    assert settings_of(args, {}).quick_ack is True
    assert settings_of(args, {"CORTEX_DEQUEUER_QUICKACK": "1"}).quick_ack is True
    assert settings_of(args, {"CORTEX_DEQUEUER_QUICKACK": "0"}).quick_ack is False
