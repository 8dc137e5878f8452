"""The engines' command lines: Docker's is tested by the arguments it builds (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortex.runtime.engine import Docker, Engine, EngineError, Resources, RunSpec, advice, find_engine

SPEC = RunSpec(
    name="cx-pod-api",
    image="example/model:1",
    command=["python", "-m", "server"],
    args=["--port", "8080"],
    env_file=Path("/state/api.env"),
    mounts={Path("/state/mnt"): "/mnt"},
    resources=Resources(cpus=0.5, memory=2**30, shm=2**26, gpus=2),
    labels={"dev.cortex-async.state-dir": "/state"},
)


def test_docker_runs_a_container_in_the_infrastructure_containers_network_with_gpus() -> None:
    argv = Docker("docker").run("cx-pod", SPEC)
    assert argv[:5] == ["docker", "run", "--rm", "--network", "container:cx-pod"]
    assert argv[argv.index("--gpus") : argv.index("--gpus") + 2] == ["--gpus", "2"]
    assert "nvidia.com/gpu=0" not in argv
    # command overrides the entrypoint, args follow, as on Kubernetes
    assert argv[-7:] == ["--entrypoint", "python", "example/model:1", "-m", "server", "--port", "8080"]
    assert "--cpu-shares" in argv and argv[argv.index("--cpu-shares") + 1] == "512"
    assert argv[argv.index("--memory") + 1] == str(2**30) and argv[argv.index("--shm-size") + 1] == str(2**26)
    assert "/state/mnt:/mnt:z" in argv and "--env-file" in argv


def test_docker_pod_is_a_sleeping_infrastructure_container_publishing_on_loopback() -> None:
    argv = Docker("docker").pod_create("cx-pod", publish={8080: 41234}, labels={"l": "v"}, image="example/model:1")
    assert argv[:4] == ["docker", "run", "--detach", "--name"]
    assert "127.0.0.1:41234:8080" in argv and "dev.cortex-async.infra=true" in argv
    assert argv[-4:] == ["--entrypoint", "sleep", "example/model:1", "infinity"]


def test_podman_requests_gpus_through_cdi_and_keeps_the_image_command_without_one() -> None:
    argv = Engine("podman").run("cx-pod", SPEC)
    assert argv[argv.index("--pod") + 1] == "cx-pod"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--device"] == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    plain = Engine("podman").run("cx-pod", RunSpec("n", "img", None, None, Path("/e"), {}, Resources(), {}))
    assert plain[-1] == "img" and "--entrypoint" not in plain


def test_an_unknown_or_missing_engine_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match="unknown container engine 'rkt'"):
        find_engine("rkt")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineError, match="container engine docker is not installed"):
        find_engine("docker")
    assert find_engine(None) is None


def test_a_known_machine_problem_gets_what_to_set() -> None:
    assert 'runtime = "runc"' in advice("Error: crun: cgroups in hybrid mode not supported")
    assert "default_ulimits" in advice("error setting rlimit type 7: operation not permitted")
    assert advice("image not known") == ""
