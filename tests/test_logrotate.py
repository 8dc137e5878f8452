"""Size-based rotation of the logs a cluster's processes append to (issue 18, point 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cortex.logrotate import Rotation, rotate_all, rotate_if_large

SMALL = Rotation(max_bytes=100, keep=2)

_WRITER = """
import sys
with open(sys.argv[1], "ab", buffering=0) as log:  # as the cluster opens its processes' logs
    for n in range(50):
        log.write(b"line %d\\n" % n)
    print("written", flush=True)
    sys.stdin.readline()
    log.write(b"after the rotation\\n")
"""


def test_a_log_over_the_limit_is_copied_and_truncated(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_bytes(b"a" * 100)
    assert not rotate_if_large(log, SMALL)  # at the limit: kept
    for content in (b"first" * 30, b"second" * 30, b"third" * 30):
        log.write_bytes(content)
        assert rotate_if_large(log, SMALL)
        assert log.read_bytes() == b""
    assert (tmp_path / "gateway.log.1").read_bytes() == b"third" * 30
    assert (tmp_path / "gateway.log.2").read_bytes() == b"second" * 30
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gateway.log", "gateway.log.1", "gateway.log.2"]


def test_every_log_under_the_folder_is_looked_at(tmp_path: Path) -> None:
    replica = tmp_path / "echo" / "r-1"
    replica.mkdir(parents=True)
    (replica / "dequeuer.log").write_bytes(b"x" * 500)
    (replica / "api.log").write_bytes(b"y" * 10)
    (tmp_path / "cluster.log").write_bytes(b"z" * 500)
    assert rotate_all(tmp_path, SMALL) == 2
    assert rotate_all(tmp_path, SMALL) == 0  # the copies (.1) are not logs to rotate
    assert (replica / "api.log").read_bytes() == b"y" * 10
    assert (replica / "dequeuer.log.1").read_bytes() == b"x" * 500


def test_a_process_appending_goes_on_at_the_start_of_the_truncated_file(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(log)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "written\n"
        assert rotate_if_large(log, SMALL)
        writer.communicate("go\n", timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0
    assert log.read_bytes() == b"after the rotation\n"  # no hole of zeros where the old content was
    assert (tmp_path / "gateway.log.1").read_text().splitlines() == [f"line {n}" for n in range(50)]
