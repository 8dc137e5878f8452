"""``cortex deploy`` with a broken configuration file, in a subprocess as a user runs it.

The file is checked before the operator is called, so these need no cluster: each error names the
file and where in it, on stderr, with exit status 1 and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"- name: a\n\tkind: AsyncAPI\n", "cortex.yaml: invalid YAML at line 2, column 1: found a tab character"),
        (b"\xff\xfe- name: a\n", "cortex.yaml: not UTF-8 text (invalid byte at offset 0)"),
        (b"", "cortex.yaml: the file is empty"),
        (b"name: a\nkind: AsyncAPI\n", "cortex.yaml: the top level must be a list of APIs, not a mapping"),
        (
            b"- name: hello\n  kind: AsyncAPI\n  pod: {port: 70000, containers: [{name: web, command: [x]}]}\n",
            'cortex.yaml: api "hello" (#1): pod.port: must be <= 65535 (got 70000)',
        ),
    ],
    ids=["invalid-yaml", "not-utf8", "empty", "mapping", "invalid-field"],
)
def test_deploy_names_the_file_and_where(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "cortex.yaml").write_bytes(content)
    env = {**os.environ, "CORTEX_CLI_CONFIG_DIR": str(tmp_path / "cli")}
    result = subprocess.run(
        [sys.executable, "-m", "cortex", "deploy", "cortex.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {expected}"), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
