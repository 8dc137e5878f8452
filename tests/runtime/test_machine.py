"""Which runtime a local cluster gets, against stand-in engine programs (real subprocesses) on PATH."""

from __future__ import annotations

import resource
import stat
from pathlib import Path

import pytest

from cortex.backends import BackendUrls
from cortex.errors import CortexError
from cortex.runtime import engine
from cortex.runtime.containers import ContainerRuntime
from cortex.runtime.engine import EngineError, check_engine, find_engine
from cortex.runtime.local import ClusterEnv, LocalRuntime, LocalSettings
from cortex.runtime.machine import ContainersFlag, machine_runtime
from cortex.spec import load_text

#: `info` answers as the machine in the test wants; listing finds nothing
PROGRAM = """#!/bin/sh
case "$*" in
  "info --format {{.Host.OCIRuntime.Name}}") echo "$OCI_RUNTIME" ;;
  info) [ -n "$INFO_FAILS" ] && { echo "Cannot connect to the Docker daemon"; exit 1; }; echo ok ;;
esac
exit 0
"""


def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **env: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / name
    program.write_text(PROGRAM)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    for key, value in env.items():
        monkeypatch.setenv(key, value)


async def make(tmp_path: Path, *, engine_name: str | None = None, containers: ContainersFlag = "auto") -> LocalRuntime:
    env = ClusterEnv(gateway_url="http://127.0.0.1:1", cli_config_dir=tmp_path / "cli", version="0")
    urls = BackendUrls.for_state_dir(tmp_path)
    return await machine_runtime(tmp_path, urls, env, LocalSettings(), engine_name=engine_name, containers=containers)


@pytest.mark.skipif(not Path("/sys/fs/cgroup/unified").is_dir(), reason="needs a machine with hybrid cgroups")
async def test_crun_on_hybrid_cgroups_is_refused_saying_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path(tmp_path, monkeypatch, "podman", OCI_RUNTIME="crun")
    engine = find_engine("podman")
    assert engine is not None
    with pytest.raises(EngineError, match='runtime = "runc"'):
        await check_engine(engine)


async def test_an_engine_found_but_not_working_is_left_aside_and_a_deploy_needing_it_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path(tmp_path, monkeypatch, "docker", INFO_FAILS="1", OCI_RUNTIME="runc")
    runtime = await make(tmp_path)
    assert not isinstance(runtime, ContainerRuntime)
    (spec,) = load_text("- {name: hi, kind: AsyncAPI, pod: {containers: [{name: api, image: x/y:1}]}}", "c.yaml")
    with pytest.raises(CortexError, match=r"api hi, container api: .*Cannot connect to the Docker daemon"):
        runtime.check(spec, tmp_path)


async def test_an_engine_asked_for_must_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path(tmp_path, monkeypatch, "docker", INFO_FAILS="1")
    with pytest.raises(EngineError, match="docker does not work here"):
        await make(tmp_path, engine_name="docker")


async def test_a_working_engine_runs_pods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path(tmp_path, monkeypatch, "docker", OCI_RUNTIME="runc")
    runtime = await make(tmp_path, containers="always")
    assert isinstance(runtime, ContainerRuntime) and runtime.mode == "always"


def test_a_hard_open_file_limit_below_podmans_default_needs_default_ulimits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 20000))  # a sandbox's limits
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime = "runc"\n')
    assert "default_ulimits" in engine.ulimits_problem([conf]) and "20000" in engine.ulimits_problem([conf])
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000"]\n')
    assert engine.ulimits_problem([conf]) == ""
