"""Cortex v0.42's Python client, call by call: every call a Cortex script makes still binds here.

The table is Cortex's public surface as ``python/client/cortex/__init__.py`` and ``client.py`` of
cortexlabs/cortex v0.42 declare it: each parameter's name and default, in order. This project may
add parameters after them, keyword-only or with a default, so that no Cortex call changes meaning.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cortex
from cortex.client import Client
from cortex.errors import CortexBinaryException
from tests.cli.conftest import FakeCluster, write_cli_config

REQUIRED = inspect.Parameter.empty

#: (where, [(parameter, default or REQUIRED), ...]) as Cortex v0.42 declares them
CORTEX_V042: dict[str, list[tuple[str, Any]]] = {
    "cortex.client": [("env_name", None)],
    "cortex.new_client": [("env_name", REQUIRED), ("operator_endpoint", REQUIRED)],
    "cortex.env_list": [],
    "cortex.env_delete": [("name", REQUIRED)],
    "cortex.run_cli": [("args", REQUIRED), ("hide_output", False)],
    "Client.deploy": [("self", REQUIRED), ("api_spec", REQUIRED), ("force", True), ("wait", False)],
    "Client.deploy_from_file": [("self", REQUIRED), ("config_file", REQUIRED), ("force", False), ("wait", False)],
    "Client.get_api": [("self", REQUIRED), ("api_name", REQUIRED)],
    "Client.list_apis": [("self", REQUIRED)],
    "Client.refresh": [("self", REQUIRED), ("api_name", REQUIRED), ("force", False)],
    "Client.delete": [("self", REQUIRED), ("api_name", REQUIRED), ("keep_cache", False)],
}


def _resolve(where: str) -> Callable[..., Any]:
    owner, name = where.split(".")
    target = getattr(cortex if owner == "cortex" else Client, name)
    if where == "cortex.client":  # the callable module stands for the function
        from cortex.client import client

        return client
    assert callable(target), where
    return target  # type: ignore[no-any-return]


@pytest.mark.parametrize("where", sorted(CORTEX_V042))
def test_cortex_signature_binds(where: str) -> None:
    expected = CORTEX_V042[where]
    params = list(inspect.signature(_resolve(where)).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert [(p.name, p.default) for p in positional[: len(expected)]] == expected, where
    extra = params[len(expected) :]
    # anything added must not change a Cortex call: optional, and after Cortex's parameters
    assert all(p.default is not REQUIRED or p.kind is p.VAR_KEYWORD for p in extra), (where, extra)


def test_cortex_client_is_callable_and_a_module_attribute() -> None:
    # `import cortex as cx; cx.client(...)` and `from cortex.client import Client` both keep working
    from cortex.client import Client as Imported

    assert callable(cortex.client)
    assert cortex.Client is Imported


def test_module_functions_manage_environments(
    fake: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cli_config(tmp_path, fake.url)
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    with cortex.new_client("second", fake.url) as cx:
        assert cx.env == {"name": "second", "operator_endpoint": fake.url}
        assert cx.env_name == "second"
        assert cx.get_api(api_name="hello")["metadata"]["name"] == "hello"
    listed = cortex.env_list()
    assert listed["default_environment"] == "test"
    assert [env["name"] for env in listed["environments"]] == ["test", "second"]
    cortex.env_delete("second")
    assert [env["name"] for env in cortex.env_list()["environments"]] == ["test"]
    with cortex.client(env_name="test") as cx:
        assert cx.env["operator_endpoint"] == fake.url


def test_deploy_keyword_call_of_cortex_e2e(fake: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # test_async_api: client.deploy(api_spec=api_specs[0]); no wait, the DeployResult comes back
    write_cli_config(tmp_path, fake.url)
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    spec = {"name": "hello", "kind": "AsyncAPI", "pod": {"containers": [{"name": "api", "image": "x"}]}}
    with cortex.client("test") as cx:
        result = cx.deploy(api_spec=spec)
        assert set(result) == {"api", "message", "error"}
        assert fake.deploys[-1]["force"] == "true"
        cx.delete(api_name="hello", keep_cache=True)
        assert "hello" not in fake.apis


def test_run_cli_returns_the_output_and_raises_on_failure(
    fake: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cli_config(tmp_path, fake.url)
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    output = cortex.run_cli(["env", "list", "-o", "json"], hide_output=True)
    assert json.loads(output)["default_environment"] == "test"
    assert capsys.readouterr().out == ""
    shown = cortex.run_cli(["get", "hello", "-o", "json", "-e", "test"])
    assert json.loads(shown)[0]["metadata"]["name"] == "hello"
    assert capsys.readouterr().out == shown  # streamed as it came, unless hide_output
    with pytest.raises(CortexBinaryException, match="error: api nope is not deployed"):
        cortex.run_cli(["get", "nope", "-e", "test"], hide_output=True)
