"""``python -m cortex.dequeuer``: what the local runtime starts for every replica."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: what a replica's dequeuer never uses, measured with ``python -X importtime -m cortex.dequeuer``: the
#: CLI (click, rich), the client (httpx), the gateway (starlette, uvicorn, anyio), the Kubernetes
#: runtime (httpx2), YAML (its spec comes from the catalog), and the drivers of the other backends
#: (imported when a URL names them: the default is the embedded SQLite)
NEVER_IMPORTED = (
    "click",
    "rich",
    "httpx",
    "httpx2",
    "starlette",
    "uvicorn",
    "anyio",
    "yaml",
    "redis",
    "asyncpg",
    "cortex.cli",
    "cortex.client",
    "cortex.gateway",
    "cortex.operator",
    "cortex.runtime",
    "cortex.spec.loader",
)


def test_the_entry_point_leaves_out_what_a_dequeuer_never_uses() -> None:
    # each costs every replica's start time (docs/autoscaling.md, waking from zero) and its memory
    # (docs/benchmarks.md, scenario e)
    probe = (
        "import sys, cortex.dequeuer.__main__, cortex.dequeuer.service;"
        f" print(sorted(m for m in {NEVER_IMPORTED!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"
    # the list names real modules, so a typo cannot make the check pass
    present = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import importlib.util; print([m for m in {NEVER_IMPORTED!r} if not importlib.util.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert present.stdout.strip() == "[]"


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
