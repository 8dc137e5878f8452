"""``cortex logs`` on a local cluster: two replicas' lines merged in the order they were written, ``--tail`` overall."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from cortex.runtime.stamp import parse
from tests.cluster.conftest import LocalCluster

USER_SERVER = Path(__file__).resolve().parents[1] / "runtime" / "user_server.py"

# A container that says "say <n>" when the turn file holds n and n is its turn: the first replica
# to claim slot0 speaks on even turns, the other on odd ones, so the two replicas alternate.
TALKER = """
import os, sys, time
folder = sys.argv[1]
try:
    os.close(os.open(os.path.join(folder, "slot0"), os.O_CREAT | os.O_EXCL))
    slot = 0
except FileExistsError:
    slot = 1
said = -1
while True:
    try:
        turn = int(open(os.path.join(folder, "turn")).read())
    except (OSError, ValueError):
        turn = -1
    if turn > said and turn % 2 == slot:
        print(f"say {turn}", flush=True)
        said = turn
    time.sleep(0.05)
"""


def _said(cluster: LocalCluster, text: str) -> bool:
    """Whether some replica's talker log holds the line ``text`` (stamped: what it said has been received)."""
    for path in (cluster.state_dir / "logs" / "talk").glob("*/talker.log"):
        if text in (parse(line)[1] for line in path.read_text().splitlines()):
            return True
    return False


def _wait(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def test_logs_merge_two_replicas_in_time_order_and_tail_counts_overall(local_cluster: LocalCluster) -> None:
    turns = local_cluster.workdir / "turns"
    turns.mkdir()
    (local_cluster.workdir / "talker.py").write_text(TALKER)
    api = {
        "name": "talk",
        "kind": "AsyncAPI",
        "pod": {
            "containers": [
                {"name": "api", "command": [sys.executable, str(USER_SERVER), "api"]},
                {"name": "talker", "command": [sys.executable, "talker.py", str(turns)]},
            ]
        },
        "autoscaling": {"min_replicas": 2, "max_replicas": 2},
    }
    config = local_cluster.workdir / "cortex.yaml"
    config.write_text(yaml.safe_dump([api]))
    local_cluster.cortex("deploy", str(config))
    local_cluster.wait_live("talk", replicas=2)
    _wait("both talkers to take a slot", lambda: (turns / "slot0").exists() and len(list(turns.iterdir())) == 1)
    for turn in range(6):  # each line written (and stamped) before the next is asked for
        (turns / "turn.new").write_text(str(turn))
        os.replace(turns / "turn.new", turns / "turn")
        _wait(f"say {turn}", functools.partial(_said, local_cluster, f"say {turn}"))

    every = local_cluster.cortex("logs", "talk", "--no-follow").stdout.splitlines()
    talk = [line for line in every if " talker] " in line]
    assert [line.rsplit(" ", 1)[-1] for line in talk] == ["0", "1", "2", "3", "4", "5"], every
    speakers = [line.split(" ", 1)[0] for line in talk]
    assert speakers[0::2] == [speakers[0]] * 3 and speakers[1::2] == [speakers[1]] * 3 != [speakers[0]] * 3, talk

    last3 = local_cluster.cortex("logs", "talk", "--tail", "3", "--no-follow").stdout.splitlines()
    assert last3 == talk[3:] == every[-3:], (last3, every)

    # one replica's (Cortex's --random-pod): the tail counts that replica's lines only
    one = local_cluster.cortex("logs", "talk", "--random-pod", "--tail", "2", "--no-follow").stdout.splitlines()
    replica = one[0].split(" ", 1)[0] if one else "(none)"
    assert one == [line for line in every if line.startswith(replica + " ")][-2:], (one, every)

    # following starts with the same three lines overall
    with subprocess.Popen(
        [sys.executable, "-m", "cortex", "logs", "talk", "--tail", "3"],
        env=local_cluster.env,
        cwd=local_cluster.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as follow:
        try:
            assert follow.stdout is not None
            followed = [follow.stdout.readline().rstrip("\n") for _ in range(3)]
        finally:
            follow.kill()
    assert followed == last3
