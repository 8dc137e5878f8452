"""The local runtime end to end: real user servers and dequeuers as processes, real backends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from cortex.errors import CortexError
from cortex.requests import Status
from cortex.runtime import ReplicaState
from tests.runtime.conftest import Harness, alive, api_yaml, processes_with, server, wait_for

pytestmark = pytest.mark.slow


async def test_replicas_get_the_worker_contract(harness: Harness) -> None:
    env = {"TEST_GREETING": "hello $(CORTEX_API_NAME)", "TEST_ESCAPED": "$$(CORTEX_PORT)"}
    container = server("api", "--port=$(CORTEX_PORT)", "$(NOT_DEFINED)", env=env)
    await harness.apply(api_yaml("echo", container), replicas=2)
    replicas = await harness.wait_ready(2)
    assert harness.runtime.requested("echo") == 2
    assert all(r.id.startswith("echo-d1aaaa-") and len(r.id) == len("echo-d1aaaa-") + 5 for r in replicas)

    # one replica runs one request at a time, so two slow requests at once land on both replicas
    ids = [await harness.submit("sleep:1"), await harness.submit("sleep:1")]
    answers = [await harness.result(rid) for rid in ids]
    assert {a["replica"] for a in answers} == {r.id for r in replicas}
    ports = {a["env"]["CORTEX_PORT"] for a in answers}
    assert len(ports) == 2
    assert len({a["env"]["CORTEX_DEQUEUER_URL"] for a in answers}) == 2  # each replica's own dequeuer
    for answer in answers:
        seen = answer["env"]
        port, replica = seen["CORTEX_PORT"], answer["replica"]
        assert seen["CORTEX_MNT"] == str(harness.tmp / "state" / "replicas" / "echo" / replica / "mnt")
        assert seen["CORTEX_GATEWAY_URL"] == harness.marker
        assert seen["CORTEX_DEQUEUER_URL"].startswith("http://127.0.0.1:")
        assert seen["CORTEX_VERSION"] == "9.9.9"
        assert seen["CORTEX_CLI_CONFIG_DIR"] == str(harness.tmp / "cli")
        assert seen["CORTEX_API_NAME"] == "echo" and seen["CORTEX_REPLICA_ID"] == replica
        assert seen["CORTEX_LOG_LEVEL"] == "INFO"
        assert seen["TEST_GREETING"] == "hello echo" and seen["TEST_ESCAPED"] == "$(CORTEX_PORT)"
        assert answer["argv"] == ["api", f"--port={port}", "$(NOT_DEFINED)"]
        assert answer["mnt_files"] == ["api.started"]


async def test_a_replica_reports_progress_to_its_own_dequeuer(harness: Harness) -> None:
    await harness.apply(api_yaml("echo", server("api")), replicas=2)
    await harness.wait_ready(2)
    request_id = await harness.submit('progress:{"step": 1, "of": 3}')
    answer = await harness.result(request_id)
    assert answer["env"]["CORTEX_DEQUEUER_URL"].startswith("http://127.0.0.1:")
    assert answer["progress_status"] == 202  # the dequeuer that runs the request took it
    record = await harness.record(request_id)
    assert record.progress == {"step": 1, "of": 3} and record.progress_at is not None


async def test_containers_of_a_replica_share_cortex_mnt(harness: Harness) -> None:
    sidecar = server("sidecar", "--idle")
    await harness.apply(api_yaml("echo", server("api"), sidecar))
    await harness.wait_ready(1)
    mnt = harness.tmp / "state" / "replicas" / "echo" / harness.runtime.replicas("echo")[0].id / "mnt"
    await wait_for("the sidecar's marker", lambda: (mnt / "sidecar.started").exists())
    answer = await harness.result(await harness.submit("hi"))
    assert answer["mnt_files"] == ["api.started", "sidecar.started"]
    assert len(harness.runtime.pids("echo")) == 3  # api, sidecar, dequeuer


async def test_a_killed_container_is_restarted(harness: Harness) -> None:
    await harness.apply(api_yaml())
    await harness.wait_ready(1)
    first = await harness.result(await harness.submit("one"))
    os.kill(first["pid"], signal.SIGKILL)
    await wait_for("the crash to be noticed", lambda: harness.runtime.replicas("echo")[0].restarts == 1, 10)
    (replica,) = await harness.wait_ready(1)
    # the dequeuer's readiness probe may not have seen the short outage: wait for the new server itself
    await wait_for("the new server", lambda: _log(harness, replica.id, "api").count(" listening on ") == 2)
    assert replica.restarts == 1
    second = await harness.result(await harness.submit("two"))
    assert second["pid"] != first["pid"] and second["replica"] == first["replica"]


async def test_a_crash_shows_failed_with_the_exit_code(harness: Harness) -> None:
    crasher = {"name": "api", "command": [sys.executable, "-c", "raise SystemExit(3)"]}
    await harness.apply(api_yaml("echo", crasher))
    await wait_for("FAILED", lambda: harness.states() == [ReplicaState.FAILED], 10)
    (replica,) = harness.runtime.replicas("echo")
    assert "container api exited with code 3" in replica.detail


async def test_a_failing_liveness_probe_restarts_the_container(harness: Harness) -> None:
    alive_file = harness.tmp / "alive"
    alive_file.touch()
    probe = {"exec": {"command": ["test", "-f", str(alive_file)]}, "period_seconds": 1, "failure_threshold": 1}
    await harness.apply(api_yaml("echo", server("api", liveness_probe=probe)))
    await harness.wait_ready(1)
    first = await harness.result(await harness.submit("one"))
    alive_file.unlink()
    await wait_for("a restart", lambda: harness.runtime.replicas("echo")[0].restarts >= 1, 10)
    alive_file.touch()
    (replica,) = await harness.wait_ready(1)
    await wait_for("the new server", lambda: _log(harness, replica.id, "api").count(" listening on ") >= 2)
    second = await harness.result(await harness.submit("two"))
    assert second["pid"] != first["pid"] and not alive(first["pid"])


async def test_pre_stop_runs_before_sigterm(harness: Harness) -> None:
    pre_stop_file, sigterm_file = harness.tmp / "pre_stop", harness.tmp / "sigterm"
    write_time = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(repr(time.time()))"
    container = server(
        "api",
        env={"TEST_SIGTERM_FILE": str(sigterm_file)},
        pre_stop={"exec": {"command": [sys.executable, "-c", write_time, str(pre_stop_file)]}},
    )
    await harness.apply(api_yaml("echo", container))
    await harness.wait_ready(1)
    await harness.runtime.delete("echo")
    assert pre_stop_file.exists() and sigterm_file.exists()
    assert float(pre_stop_file.read_text()) <= float(sigterm_file.read_text())
    assert harness.runtime.replicas("echo") == [] and harness.runtime.requested("echo") == 0


async def test_scale_out_and_in_then_delete_leaves_nothing(harness: Harness) -> None:
    await harness.apply(api_yaml())
    await harness.wait_ready(1)
    await harness.runtime.scale("echo", 3)
    assert harness.runtime.requested("echo") == 3
    replicas = await harness.wait_ready(3)
    pids = set(harness.runtime.pids("echo")) | processes_with(harness.marker)
    assert len(pids) == 6
    await harness.runtime.scale("echo", 1)
    (kept,) = await harness.wait_ready(1)
    folders = harness.tmp / "state" / "replicas" / "echo"
    assert sorted(p.name for p in folders.iterdir()) == [kept.id]
    assert len([p for p in pids if alive(p)]) == 2
    await harness.runtime.delete("echo")
    assert not [p for p in pids if alive(p)] and not processes_with(harness.marker)
    assert not folders.exists()
    # every replica's logs stay
    logs = harness.tmp / "state" / "logs" / "echo"
    assert sorted(p.name for p in logs.iterdir()) == sorted(r.id for r in replicas)


async def test_scale_in_keeps_the_busy_replica(harness: Harness) -> None:
    trace = harness.tmp / "trace"
    trace.mkdir()
    await harness.apply(api_yaml("echo", server(env={"TEST_TRACE_DIR": str(trace)})), replicas=2)
    await harness.wait_ready(2)
    busy = await harness.submit("sleep:4")
    await wait_for("the slow request to start", lambda: any(trace.iterdir()), 10)
    busy_replica = next(trace.iterdir()).suffix.removeprefix(".")
    await harness.runtime.scale("echo", 1)
    (kept,) = await harness.wait_ready(1, timeout=10)
    assert kept.id == busy_replica
    answer = await harness.result(busy)
    assert answer["replica"] == busy_replica
    assert (await harness.record(busy)).attempts == 1


async def test_a_new_deployment_rolls_one_replica_at_a_time(harness: Harness) -> None:
    await harness.apply(api_yaml("echo", server(env={"TEST_VERSION": "1"})), replicas=2)
    old = {r.id for r in await harness.wait_ready(2)}
    submitted: list[str] = []
    ready_counts: list[int] = []
    done = asyncio.Event()

    async def traffic() -> None:
        while not done.is_set():
            submitted.append(await harness.submit("sleep:0.3"))
            ready = [r for r in harness.runtime.replicas("echo") if r.state.startswith("ready")]
            ready_counts.append(len(ready))
            await asyncio.sleep(0.1)

    load = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(0.5)
        await harness.apply(api_yaml("echo", server(env={"TEST_VERSION": "2"})), deployment_id="d2bbbbbb", replicas=2)
        assert harness.runtime.requested("echo") == 2

        def rolled() -> bool:
            replicas = harness.runtime.replicas("echo")
            return len(replicas) == 2 and all(
                r.deployment_id == "d2bbbbbb" and r.state == ReplicaState.READY for r in replicas
            )

        await wait_for("the roll to finish", rolled, 40)
    finally:
        done.set()
        await load
    assert not {r.id for r in harness.runtime.replicas("echo")} & old
    assert min(ready_counts) >= 1, ready_counts
    records = [await harness.finished(rid) for rid in submitted]
    assert all(r.status == Status.COMPLETED for r in records), [r for r in records if r.status != Status.COMPLETED]
    after = await harness.result(await harness.submit("after"))
    assert after["env"]["TEST_VERSION"] == "2"


async def test_a_newer_apply_cancels_an_ongoing_roll(harness: Harness) -> None:
    await harness.apply(api_yaml("echo", server(env={"TEST_VERSION": "1"})), replicas=1)
    await harness.wait_ready(1)
    await harness.apply(api_yaml("echo", server(env={"TEST_VERSION": "2"})), deployment_id="d2bbbbbb")
    await harness.apply(api_yaml("echo", server(env={"TEST_VERSION": "3"})), deployment_id="d3cccccc")
    await wait_for(
        "the last deployment only",
        lambda: (
            [(r.deployment_id, r.state) for r in harness.runtime.replicas("echo")] == [("d3cccccc", ReplicaState.READY)]
        ),
        30,
    )
    answer = await harness.result(await harness.submit("x"))
    assert answer["env"]["TEST_VERSION"] == "3"


async def test_a_container_without_command_is_refused(harness: Harness) -> None:
    image_only = {"name": "model", "image": "registry.example/model:1"}
    spec_text = api_yaml("echo", server("api"), image_only)
    with pytest.raises(CortexError, match=r"api echo, container model: no command to run"):
        await harness.apply(spec_text, replicas=2)
    assert harness.runtime.replicas("echo") == [] and harness.runtime.requested("echo") == 0
    assert not processes_with(harness.marker)


async def test_logs_tail_and_follow(harness: Harness) -> None:
    await harness.apply(api_yaml())
    (replica,) = await harness.wait_ready(1)
    await harness.result(await harness.submit("first"))
    await wait_for("the dequeuer's log", lambda: _log(harness, replica.id, "dequeuer").count("\n") >= 2)

    lines = [line async for line in harness.runtime.logs("echo", follow=False, tail=3)]
    every = [line async for line in harness.runtime.logs("echo", follow=False)]
    assert len(lines) == 3 and lines == every[-3:], (lines, every)  # three lines overall, not per file
    assert f"[{replica.id} api] api listening on {replica_port(every)}" in every
    # the container's and the dequeuer's lines merged: the request is handled between dequeuer lines about it
    about = [line for line in every if "first" in line or "handling" in line]
    assert {line.split("] ", 1)[0] for line in every} == {f"[{replica.id} api", f"[{replica.id} dequeuer"}, every
    assert about and every.index(about[0]) > every.index(f"[{replica.id} api] api listening on {replica_port(every)}")

    async with contextlib.aclosing(harness.runtime.logs("echo", follow=True, tail=0)) as follow:
        request_id = await harness.submit("second")
        async with asyncio.timeout(15):
            async for line in follow:
                if line == f"[{replica.id} api] handling {request_id} body=second":
                    break
    # a new replica's file is picked up while following
    async with contextlib.aclosing(harness.runtime.logs("echo", follow=True, tail=0)) as follow:
        await harness.runtime.scale("echo", 2)
        async with asyncio.timeout(15):
            async for line in follow:
                if " api] api listening on " in line and replica.id not in line:
                    break


def _log(harness: Harness, replica: str, name: str) -> str:
    path: Path = harness.tmp / "state" / "logs" / "echo" / replica / f"{name}.log"
    return path.read_text() if path.exists() else ""


def replica_port(lines: list[str]) -> str:
    return next(line.rsplit(" ", 1)[-1] for line in lines if " api listening on " in line)
