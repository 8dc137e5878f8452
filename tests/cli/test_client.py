"""The client and the API commands against a real HTTP server on loopback (tests/cli/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cortex
from cortex.cli.main import cli
from cortex.client import Client, is_ready
from cortex.errors import ClusterUnavailable, CortexError, NotFound, RequestFailed, ResultTimeout, SpecError
from tests.cli.conftest import FakeCluster, api_response, closed_port, write_cli_config

HELLO_YAML = """
- name: hello
  kind: AsyncAPI
  pod:
    containers:
      - name: api
        command: ["python", "server.py"]
"""


@pytest.fixture
def cx(fake: FakeCluster) -> Iterator[Client]:
    with Client(fake.url, env_name="test") as client:
        yield client


# -- the operator ---------------------------------------------------------------------------------


def test_info(cx: Client, fake: FakeCluster) -> None:
    assert cx.info()["provider"] == "local"


def test_list_and_get(cx: Client) -> None:
    assert [api["metadata"]["name"] for api in cx.list_apis()] == ["hello", "world"]
    hello = cx.get_api("hello")
    assert hello["status"] == {"ready": 1, "requested": 1, "up_to_date": 1}
    assert hello["endpoint"].endswith("/hello")


def test_unknown_api_is_not_found_with_the_servers_message(cx: Client) -> None:
    with pytest.raises(NotFound, match="api nope is not deployed"):
        cx.get_api("nope")
    with pytest.raises(NotFound):
        cx.describe("nope")


def test_describe_refresh_delete(cx: Client) -> None:
    description = cx.describe("hello")
    assert description["replica_counts"]["ready"] == 1
    assert cx.refresh("hello", force=True) == {"message": "updating hello (AsyncAPI)"}
    assert cx.delete("hello") == {"message": "deleting hello"}
    with pytest.raises(NotFound):
        cx.get_api("hello")


def test_deploy_file_sends_the_text_and_absolute_path(cx: Client, fake: FakeCluster, tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(HELLO_YAML.replace("hello", "fresh"))
    result = cx.deploy_from_file(path, force=True)
    assert result["message"] == "creating fresh (AsyncAPI)"
    (sent,) = fake.deploys
    assert sent["body"] == {"config": path.read_text(), "config_path": str(path)}
    assert sent["force"] == "true"


def test_deploy_a_dict_spec_as_a_one_item_list(
    cx: Client, fake: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = yaml.safe_load(HELLO_YAML)[0]
    assert cx.deploy(spec)["message"] == "hello is up to date"
    body = fake.deploys[0]["body"]
    assert yaml.safe_load(body["config"]) == [spec]
    assert Path(body["config_path"]).parent == tmp_path
    assert fake.deploys[0]["force"] == "true"  # Cortex's deploy(api_spec) forces by default


def test_deploy_spec_error_raises_the_servers_message(cx: Client, tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(HELLO_YAML.replace("  pod:\n", "  pod:\n    port: 70000\n"))
    with pytest.raises(SpecError, match=r'api "hello" \(#1\): pod.port: must be <= 65535'):
        cx.deploy(path)


def test_deploy_missing_file(cx: Client, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        cx.deploy(tmp_path / "missing.yaml")


def test_deploy_wait_returns_once_ready(cx: Client, tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(HELLO_YAML)
    started = time.monotonic()
    api = cx.deploy(path, wait=True, timeout=5)
    assert time.monotonic() - started < 1
    # the API, as get_api answers it, not the DeployResult (Cortex's v0.42 client meant to, and broke)
    assert api["metadata"]["name"] == "hello"
    assert api["status"] == {"ready": 1, "requested": 1, "up_to_date": 1}


def test_deploy_wait_times_out(cx: Client, tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(HELLO_YAML.replace("hello", "never"))
    with pytest.raises(ResultTimeout, match=r"never is not ready after 0.3s \(0/1 replicas ready\)"):
        cx.deploy(path, wait=True, timeout=0.3)


def test_wait_ready_follows_the_rollout(cx: Client, fake: FakeCluster) -> None:
    seen: list[str] = []

    def progress(api: dict[str, object]) -> None:
        status = api["status"]
        assert isinstance(status, dict)
        seen.append(f"{status['ready']}/{status['requested']}")
        if len(seen) == 2:
            fake.apis["world"] = api_response("world", ready=2, requested=2, up_to_date=2)

    (api,) = cx.wait_ready("world", timeout=5, interval=0.01, on_status=progress)
    assert seen == ["0/2", "0/2", "2/2"]
    assert api["status"]["ready"] == 2


@pytest.mark.parametrize(
    ("ready", "requested", "up_to_date", "min_replicas", "expected"),
    [
        (1, 1, 1, 1, True),
        (2, 2, 1, 1, False),
        (1, 2, 2, 1, False),
        (0, 0, 0, 1, False),
        (0, 0, 0, 0, True),
    ],
)
def test_is_ready(ready: int, requested: int, up_to_date: int, min_replicas: int, expected: bool) -> None:
    api = api_response("x", ready=ready, requested=requested, up_to_date=up_to_date, min_replicas=min_replicas)
    assert is_ready(api) is expected


def test_logs_stream(cx: Client, fake: FakeCluster) -> None:
    assert list(cx.logs("hello", follow=False, tail=5)) == [f"[hello-0 api] line {i}" for i in range(3)]
    assert fake.logs_params == [{"follow": "false", "tail": "5"}]
    with pytest.raises(NotFound):
        list(cx.logs("nope"))


# -- the gateway ----------------------------------------------------------------------------------


def test_submit_and_result_after_polls(cx: Client, fake: FakeCluster) -> None:
    request_id = cx.submit("hello", {"text": "hi"})
    assert cx.status("hello", request_id)["status"] == "in_queue"
    assert cx.result("hello", request_id, timeout=10, poll=0.01) == {"echo": {"text": "hi"}}
    assert fake.polls[request_id] == 3
    # each read asks the gateway to wait (this fake answers at once, as an older gateway: polled then)
    assert fake.waits[-2:] and all(wait is not None and 0 < float(wait) <= 10 for wait in fake.waits[-2:])
    assert fake.submitted[0][2:] == (b'{"text": "hi"}', "application/json")
    assert fake.info_calls == 1  # the gateway URL is asked once per client


@pytest.mark.parametrize(
    ("payload", "content_type", "body", "sent_type"),
    [
        (b"\x00raw", None, b"\x00raw", "application/octet-stream"),
        ("text", None, b"text", "text/plain; charset=utf-8"),
        ([1, 2], None, b"[1, 2]", "application/json"),
        ("<a/>", "application/xml", b"<a/>", "application/xml"),
    ],
)
def test_submit_bodies(
    cx: Client, fake: FakeCluster, payload: object, content_type: str | None, body: bytes, sent_type: str
) -> None:
    cx.submit("hello", payload, content_type=content_type)
    assert fake.submitted[0][2:] == (body, sent_type)


def test_failed_request_raises_request_failed(cx: Client) -> None:
    request_id = cx.submit("broken", {})
    with pytest.raises(RequestFailed, match="user_error: boom") as caught:
        cx.result("broken", request_id, timeout=5, poll=0.01)
    assert (caught.value.status, caught.value.kind) == ("failed", "user_error")


def test_unfinished_request_times_out(cx: Client) -> None:
    request_id = cx.submit("stuck", {})
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match=r"still in_queue after 0\.3s"):
        cx.result("stuck", request_id, timeout=0.3, poll=0.05)
    assert time.monotonic() - started < 2


def test_purge_answers_how_many_were_cancelled(cx: Client, fake: FakeCluster) -> None:
    cx.submit("hello", {})
    cx.submit("hello", {})
    assert cx.purge("hello") == 2
    assert fake.purged == ["hello"]
    with pytest.raises(NotFound, match="no API is deployed at /nope"):
        cx.purge("nope")


def test_unknown_api_or_request_on_the_gateway(cx: Client) -> None:
    with pytest.raises(NotFound, match="no API is deployed at /nope"):
        cx.submit("nope", {})
    with pytest.raises(NotFound, match="not found"):
        cx.status("hello", "missing")


# -- connection and environments ------------------------------------------------------------------


def test_connection_refused_names_the_url_and_the_fix() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with Client(url) as client, pytest.raises(ClusterUnavailable) as caught:
        client.list_apis()
    assert str(caught.value) == (
        f"cannot reach the cortex operator at {url}: is the cluster running? start it with `cortex cluster up`"
    )


def test_non_json_errors_keep_the_status(cx: Client, fake: FakeCluster) -> None:
    with pytest.raises(CortexError, match="HTTP 405"):
        cx._operator("PUT", "/info")


def test_cortex_client_uses_the_default_environment(
    fake: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cli_config(tmp_path, fake.url)
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    with cortex.client() as client:
        assert client.env_name == "test"
        assert client.get_api("hello")["metadata"]["name"] == "hello"
    with pytest.raises(NotFound, match="no environment named other; run `cortex env list`"):
        cortex.client("other")


def test_cortex_client_without_a_config_is_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    with cortex.client() as client:
        assert client.operator_endpoint == "http://127.0.0.1:8889"


# -- the commands, end to end ---------------------------------------------------------------------


@pytest.fixture
def run(fake: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    write_cli_config(tmp_path / "config", fake.url)
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path / "config"))
    return CliRunner()


def test_cli_get_table(run: CliRunner) -> None:
    result = run.invoke(cli, ["get"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["async", "api", "live", "up-to-date", "last", "update"]
    assert lines[1].split()[:3] == ["hello", "1/1", "1"]
    assert lines[2].split()[:3] == ["world", "0/2", "0"]


def test_cli_get_json_is_cortexs_list_of_environments(run: CliRunner, fake: FakeCluster) -> None:
    result = run.invoke(cli, ["get", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"env_name": "test", "apis": list(fake.apis.values()), "error": None}]
    assert result.stdout.startswith("[\n  {")
    # with an environment named, the operator's list as it answered
    result = run.invoke(cli, ["get", "-o", "json", "-e", "test"])
    assert json.loads(result.stdout) == list(fake.apis.values())


def test_cli_get_across_environments_reports_the_one_that_is_down(
    run: CliRunner, fake: FakeCluster, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    assert run.invoke(cli, ["env", "configure", "stopped", "--operator-endpoint", down]).exit_code == 0
    listed = json.loads(run.invoke(cli, ["get", "-o", "json"]).stdout)
    assert [(entry["env_name"], len(entry["apis"])) for entry in listed] == [("test", 2), ("stopped", 0)]
    assert listed[0]["error"] is None
    assert listed[1]["error"].startswith(f"cannot reach the cortex operator at {down}")
    result = run.invoke(cli, ["get"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["env", "async", "api", "live", "up-to-date", "last", "update"]
    assert lines[1].split()[:3] == ["test", "hello", "1/1"]
    assert lines[-1] == (
        "unable to detect apis from the stopped environment; run `cortex get --env stopped` if this is unexpected"
    )


def test_cli_get_shows_the_secret_only_when_asked(run: CliRunner) -> None:
    assert "whsec_" not in run.invoke(cli, ["get", "hello"]).stdout
    assert "whsec_" not in run.invoke(cli, ["get", "hello", "-o", "json"]).stdout
    shown = run.invoke(cli, ["get", "hello", "--show-secrets"])
    assert "webhook secret: whsec_hello" in shown.stdout


def test_cli_get_one_json(run: CliRunner) -> None:
    result = run.invoke(cli, ["get", "hello", "-o", "json"])
    assert result.exit_code == 0, result.output
    (api,) = json.loads(result.stdout)
    assert api["status"] == {"ready": 1, "requested": 1, "up_to_date": 1}


def test_cli_get_one_pretty(run: CliRunner, fake: FakeCluster) -> None:
    result = run.invoke(cli, ["get", "hello"])
    assert result.exit_code == 0, result.output
    assert "endpoint: http://127.0.0.1:8888/hello" in result.stdout
    assert "hello-spec-id" in result.stdout


def test_cli_get_unknown(run: CliRunner) -> None:
    result = run.invoke(cli, ["get", "nope"])
    assert result.exit_code == 1
    assert result.stderr == "error: api nope is not deployed\n"


def test_cli_describe(run: CliRunner) -> None:
    result = run.invoke(cli, ["describe", "hello"])
    assert result.exit_code == 0, result.output
    assert "ReadyOutOfDate" in result.stdout
    assert "Failed" not in result.stdout
    assert "hello-0" in result.stdout


def test_cli_deploy(run: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(HELLO_YAML.replace("hello", "fresh"))
    result = run.invoke(cli, ["deploy", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "creating fresh (AsyncAPI)\n"


def test_cli_deploy_default_file_and_json(run: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cortex.yaml").write_text(HELLO_YAML)
    result = run.invoke(cli, ["deploy", "-o", "json", "--wait"])
    assert result.exit_code == 0, result.output
    (deployed,) = json.loads(result.stdout)
    assert deployed["message"] == "hello is up to date"
    assert deployed["error"] is None


def test_cli_deploy_spec_error(run: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(HELLO_YAML.replace("  pod:\n", "  pod:\n    port: 70000\n"))
    result = run.invoke(cli, ["deploy", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f'error: {path}: api "hello" (#1): pod.port: must be <= 65535 (got 70000)\n'


def test_cli_deploy_wait_timeout(run: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(HELLO_YAML.replace("hello", "never"))
    result = run.invoke(cli, ["deploy", str(path), "--wait", "--timeout", "0.2"])
    assert result.exit_code == 1
    assert "error: never is not ready after 0.2s" in result.stderr


def test_cli_refresh_and_delete(run: CliRunner) -> None:
    result = run.invoke(cli, ["refresh", "hello", "-f"])
    assert (result.exit_code, result.stdout) == (0, "updating hello (AsyncAPI)\n")
    result = run.invoke(cli, ["delete", "hello", "-y", "-c", "-o", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"message": "deleting hello"}


def test_cli_logs(run: CliRunner, fake: FakeCluster) -> None:
    result = run.invoke(cli, ["logs", "hello", "--tail", "10"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"[hello-0 api] line {i}" for i in range(3)]
    assert fake.logs_params == [{"follow": "true", "tail": "10"}]


def test_cli_request_submit_and_get(run: CliRunner, fake: FakeCluster) -> None:
    result = run.invoke(cli, ["request", "submit", "hello", "--data", '{"a": 1}'])
    assert result.exit_code == 0, result.output
    request_id = result.stdout.strip()
    result = run.invoke(cli, ["request", "get", "hello", request_id])
    assert json.loads(result.stdout) == {"id": request_id, "status": "in_queue"}
    result = run.invoke(cli, ["request", "submit", "hello", "--data", '{"a": 2}', "--wait"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"echo": {"a": 2}}


def test_cli_request_purge(run: CliRunner, fake: FakeCluster) -> None:
    assert run.invoke(cli, ["request", "submit", "hello", "--data", "{}"]).exit_code == 0
    result = run.invoke(cli, ["request", "purge", "hello"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "cancelled 1 queued request of hello\n"
    assert fake.purged == ["hello"]


@pytest.mark.parametrize(
    ("name", "text", "sent_type"),
    [
        ("many.jsonl", '{"a": 1}\n\n{"a": 2}\n', "application/x-ndjson"),
        ("many.ndjson", '{"a": 1}\n{"a": 2}', "application/x-ndjson"),
        ("many.json", '[{"a": 1}, {"a": 2}]', "application/json"),
    ],
)
def test_cli_request_submit_batch(
    run: CliRunner, fake: FakeCluster, tmp_path: Path, name: str, text: str, sent_type: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run.invoke(cli, ["request", "submit", "hello", "--batch", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["hello-0", "hello-1"]
    assert fake.batches == [sent_type]
    result = run.invoke(cli, ["request", "submit", "hello", "--batch", str(path), "--wait"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"echo": {"a": 1}}, {"echo": {"a": 2}}]


def test_cli_request_submit_batch_names_the_bad_payloads(run: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    result = run.invoke(cli, ["request", "submit", "hello", "--batch", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: 1 payload of the batch is invalid; nothing was stored\n  payload 1: not JSON"
    )


def test_client_submit_batch(cx: Client, fake: FakeCluster) -> None:
    assert cx.submit_batch("hello", [{"a": 1}, [2]], idempotency_key="k") == ["hello-0", "hello-1"]
    assert [item[2] for item in fake.submitted] == [b'{"a":1}', b"[2]"]
    assert fake.batches == ["application/json"]


def test_cli_request_submit_needs_one_payload(run: CliRunner) -> None:
    result = run.invoke(cli, ["request", "submit", "hello"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: give the payload")
    result = run.invoke(cli, ["request", "submit", "hello", "--data", "{nope"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --data is not valid JSON")


def test_cli_request_failed(run: CliRunner) -> None:
    result = run.invoke(cli, ["request", "submit", "broken", "--data", "{}", "--wait"])
    assert result.exit_code == 1
    assert result.stderr == "error: request broken-0 of api broken failed: user_error: boom\n"


def test_cli_cluster_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    write_cli_config(tmp_path, url)
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["get"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot reach the cortex operator at {url}: is the cluster running? start it with `cortex cluster up`\n"
    )


def test_cli_get_watch_prints_each_refresh_when_piped(fake: FakeCluster, tmp_path: Path) -> None:
    write_cli_config(tmp_path, fake.url)
    environ = {**os.environ, "CORTEX_CLI_CONFIG_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "cortex", "get", "-w", "-e", "test"]
    with subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        seen = 0
        try:
            for line in process.stdout:
                seen += line.split()[:1] == ["hello"]
                if seen == 2:  # a second refresh reached the pipe while the command still runs
                    break
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)
    assert seen == 2
    assert process.returncode == 0


def test_cli_version_prints_the_cli_and_the_cluster(run: CliRunner) -> None:
    result = run.invoke(cli, ["version"])
    assert (result.exit_code, result.stdout) == (0, f"cli version:     {cortex.__version__}\ncluster version: 0.1.0\n")


def test_cli_version_without_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cli_config(tmp_path, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["version"])
    assert (result.exit_code, result.stdout) == (0, f"cli version: {cortex.__version__}\n")
    result = CliRunner().invoke(cli, ["version", "-e", "test"])
    assert result.exit_code == 1
    assert "cannot reach the cortex operator" in result.stderr


def test_cli_logs_random_pod_streams_one_ready_replica(run: CliRunner, fake: FakeCluster) -> None:
    result = run.invoke(cli, ["logs", "hello", "--random-pod", "--no-follow"])
    assert result.exit_code == 0, result.output
    assert fake.logs_params[-1]["replica"] == "hello-0"  # the one ready replica of the API's deployment
    assert result.stdout.splitlines()[0] == "[hello-0 api] line 0"
