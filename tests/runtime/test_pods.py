"""A pod's image pull, against a stand-in engine program (a real subprocess) that prints a pull's progress."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cortex.runtime.engine import Engine
from cortex.runtime.plan import SandboxError
from cortex.runtime.pods import Pod

ENGINE = """#!/bin/sh
# a stand-in engine: no image is here; pulls print two steps, and "missing" images fail
case "$1 $2" in
  "image exists") exit 1 ;;
  "pull "*) echo "Copying blob 1 of 2"; echo "Copying blob 2 of 2"
            case "$2" in *missing*) echo "Error: manifest unknown" ; exit 125 ;; esac; exit 0 ;;
  *) exit 0 ;;
esac
"""


def stand_in(tmp_path: Path) -> Engine:
    program = tmp_path / "engine"
    program.write_text(ENGINE)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return Engine(str(program))


async def test_a_pull_reports_each_step_then_creates_the_pod(tmp_path: Path) -> None:
    reports: list[str] = []
    pod = Pod(stand_in(tmp_path), "cx-1", images=["example/model:1"], publish={8080: 40000}, labels={})
    await pod.prepare(reports.append)
    assert reports[:3] == [
        "pulling image example/model:1",
        "pulling image example/model:1: Copying blob 1 of 2",
        "pulling image example/model:1: Copying blob 2 of 2",
    ]
    assert reports[-1] == "starting the containers"


async def test_an_image_that_cannot_be_pulled_is_err_image_pull_with_the_engines_words(tmp_path: Path) -> None:
    pod = Pod(stand_in(tmp_path), "cx-1", images=["example/missing:1"], publish={8080: 40000}, labels={})
    words = "image example/missing:1 could not be pulled: Error: manifest unknown"
    with pytest.raises(SandboxError, match=words) as err:
        await pod.prepare(lambda _: None)
    assert err.value.reason == "ErrImagePull"
