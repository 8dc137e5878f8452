"""The operator token and the gateway key: kept in cli.yaml, hidden on display, sent by the client and the CLI.

The operator is the real app over a real (empty) local runtime, served by uvicorn on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from click.testing import CliRunner

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.cli.main import cli
from cortex.client import client
from cortex.env import EnvConfig, Environment
from cortex.errors import AccessDenied, CortexError, NotFound
from cortex.operator.app import create_operator_app
from cortex.operator.service import Operator
from cortex.runtime.local import ClusterEnv, LocalRuntime
from tests.servers.databases import urls_for

TOKEN = "operator-token-8d2f6a1c4e"
KEY = "gateway-key-1f5b9d3e7a"


def test_secrets_round_trip_in_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    config = EnvConfig.load(tmp_path)
    config.configure("prod", "https://cortex.example.com", operator_token=TOKEN, api_key=KEY)
    path = tmp_path / "cli.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = yaml.safe_load(path.read_text())
    assert data["environments"][1] == {
        "name": "prod",
        "operator_endpoint": "https://cortex.example.com",
        "operator_token": TOKEN,
        "api_key": KEY,
    }
    again = EnvConfig.load(tmp_path).get("prod")
    assert (again.operator_token, again.api_key) == (TOKEN, KEY)
    assert TOKEN not in repr(again) and KEY not in repr(again)
    shown = EnvConfig.load(tmp_path).to_dict(secrets=False)["environments"][1]
    assert shown["operator_token"] == shown["api_key"] == "(hidden)"


@pytest.mark.parametrize("key", ["operator_token", "api_key"])
def test_a_secret_must_be_a_string(tmp_path: Path, key: str) -> None:
    (tmp_path / "cli.yaml").write_text(f"environments: [{{name: a, operator_endpoint: 'http://a', {key}: 3}}]")
    with pytest.raises(CortexError, match=f"environment a: {key}: must be a string"):
        EnvConfig.load(tmp_path)


def test_env_commands_keep_and_hide_the_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    run = CliRunner()
    endpoint = ["--operator-endpoint", "http://127.0.0.1:9"]
    result = run.invoke(cli, ["env", "configure", "c", *endpoint, "--operator-token", TOKEN, "--api-key", KEY])
    assert result.exit_code == 0, result.output
    # configured again without them: they are kept
    assert run.invoke(cli, ["env", "configure", "c", "--operator-endpoint", "http://127.0.0.1:10"]).exit_code == 0
    assert EnvConfig.load(tmp_path).get("c") == Environment("c", "http://127.0.0.1:10", TOKEN, KEY)
    listed = run.invoke(cli, ["env", "list", "-o", "json"])
    pretty = run.invoke(cli, ["env", "list"])
    for output in (listed.stdout, pretty.stdout):
        assert TOKEN not in output and KEY not in output
    (_, shown) = json.loads(listed.stdout)["environments"]
    assert shown == {
        "name": "c",
        "operator_endpoint": "http://127.0.0.1:10",
        "operator_token": "(hidden)",
        "api_key": "(hidden)",
    }
    # an empty value removes one
    assert run.invoke(cli, ["env", "configure", "c", *endpoint, "--operator-token", ""]).exit_code == 0
    assert EnvConfig.load(tmp_path).get("c") == Environment("c", "http://127.0.0.1:9", None, KEY)


# -- the operator --


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[Backends]:
    async with urls_for("sqlite", tmp_path / "state") as urls:
        opened = await open_backends(urls)
        try:
            yield opened
        finally:
            await opened.aclose()


@pytest.fixture
async def operator(backends: Backends, tmp_path: Path) -> AsyncIterator[str]:
    """The operator, requiring :data:`TOKEN`, on a loopback port; its URL."""
    env = ClusterEnv(gateway_url="http://127.0.0.1:9", cli_config_dir=tmp_path / "client", version="0")
    runtime = LocalRuntime(tmp_path / "state", BackendUrls.for_state_dir(tmp_path / "state"), env)
    app = create_operator_app(Operator(backends.catalog, runtime, gateway_url="http://127.0.0.1:9"), {}, token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="error"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the operator did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, timeout=10)
        await runtime.aclose()


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/get", {}, 401),
        ("/get", {"Authorization": f"Basic {TOKEN}"}, 401),
        ("/get", {"Authorization": "Bearer wrong-token-0123456789"}, 403),
        ("/get", {"Authorization": f"Bearer {TOKEN}"}, 200),
        ("/info", {}, 401),
        ("/no-such-route", {}, 401),  # nothing is told about the routes before the token
        ("/healthz", {}, 200),
        ("/metrics", {}, 200),
    ],
)
async def test_the_operator_needs_its_token(operator: str, path: str, headers: dict[str, str], status: int) -> None:
    async with httpx.AsyncClient(base_url=operator) as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="cortex-operator"'
        assert "cortex env configure <env> --operator-token" in response.json()["error"]
    if status == 403:
        assert "refused the token" in response.json()["error"]
    assert TOKEN not in response.text


async def test_the_client_and_the_cli_send_the_token_from_cli_yaml(
    operator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "cli"
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(config_dir))
    EnvConfig.load(config_dir).configure("c", operator, make_default=True, operator_token=TOKEN)

    def use_client() -> list[str]:
        with client() as cx:
            with pytest.raises(NotFound):  # past the token: the operator looked for the API
                list(cx.logs("nope", follow=False))
            return [api["metadata"]["name"] for api in cx.list_apis()]

    assert await asyncio.to_thread(use_client) == []
    run = CliRunner()
    result = await asyncio.to_thread(run.invoke, cli, ["get", "-o", "json", "-e", "c"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []

    EnvConfig.load(config_dir).configure("c", operator, operator_token="wrong-token-0123456789")
    with pytest.raises(AccessDenied, match=r"refused the token.*--operator-token"):
        await asyncio.to_thread(use_client)
    result = await asyncio.to_thread(run.invoke, cli, ["get", "-e", "c"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the cortex operator refused the token")
