"""CLI environments: ``cli.yaml`` round trips, errors, and the ``cortex env`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cortex.cli.main import cli
from cortex.env import EnvConfig, Environment, config_dir_from
from cortex.errors import CortexError, NotFound


def test_config_dir_from_environ(tmp_path: Path) -> None:
    assert config_dir_from({"CORTEX_CLI_CONFIG_DIR": str(tmp_path)}) == tmp_path
    assert config_dir_from({}) == Path("~/.cortex").expanduser()


def test_missing_file_is_the_local_environment(tmp_path: Path) -> None:
    config = EnvConfig.load(tmp_path)
    assert config.get() == Environment("local", "http://127.0.0.1:8889")
    assert not (tmp_path / "cli.yaml").exists()


def test_round_trip_in_cortex_format(tmp_path: Path) -> None:
    config = EnvConfig.load(tmp_path / "nested")
    config.set("prod", "https://cortex.example.com/")
    config.set_default("prod")
    config.save()
    data = yaml.safe_load((tmp_path / "nested" / "cli.yaml").read_text())
    assert data == {
        "default_environment": "prod",
        "environments": [
            {"name": "local", "operator_endpoint": "http://127.0.0.1:8889"},
            {"name": "prod", "operator_endpoint": "https://cortex.example.com"},
        ],
    }
    again = EnvConfig.load(tmp_path / "nested")
    assert again == config
    assert again.get().operator_endpoint == "https://cortex.example.com"
    assert again.get("local").name == "local"
    assert [path.name for path in (tmp_path / "nested").iterdir()] == ["cli.yaml"]  # no temporary left


def test_first_configured_becomes_default(tmp_path: Path) -> None:
    (tmp_path / "cli.yaml").write_text("environments: []\n")
    config = EnvConfig.load(tmp_path)
    with pytest.raises(NotFound, match=r"no default environment: run `cortex cluster up` or `cortex env configure`"):
        config.get()
    config.set("a", "http://a:1")
    config.set("b", "http://b:1")
    assert config.default_environment == "a"


def test_delete_default_leaves_no_default(tmp_path: Path) -> None:
    config = EnvConfig.load(tmp_path)
    config.delete("local")
    with pytest.raises(NotFound, match="no default environment"):
        config.get()
    with pytest.raises(NotFound, match=r"no environment named local; run `cortex env list`"):
        config.get("local")
    with pytest.raises(NotFound, match="no environment named x"):
        config.delete("x")
    with pytest.raises(NotFound, match="no environment named x"):
        config.set_default("x")


def test_configure_saves(tmp_path: Path) -> None:
    config = EnvConfig.from_environ({"CORTEX_CLI_CONFIG_DIR": str(tmp_path)})
    config.configure("dev", "http://127.0.0.1:9999", make_default=True)
    assert EnvConfig.load(tmp_path).get() == Environment("dev", "http://127.0.0.1:9999")


@pytest.mark.parametrize(("name", "endpoint"), [("bad name", "http://x"), ("ok", "ftp://x"), ("ok", "http://")])
def test_invalid_environment(tmp_path: Path, name: str, endpoint: str) -> None:
    with pytest.raises(CortexError, match="invalid"):
        EnvConfig.load(tmp_path).set(name, endpoint)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid YAML"),
        ("[1, 2]", "expected a mapping"),
        ("environments: {}", "environments: must be a list"),
        ("environments: [{name: a}]", "operator_endpoint: must be a URL"),
        ("environments: [3]", r"environments\[0\]: must be a mapping with a name"),
        ("default_environment: 3", "default_environment: must be a string"),
    ],
)
def test_malformed_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "cli.yaml").write_text(text)
    with pytest.raises(CortexError, match=message):
        EnvConfig.load(tmp_path)


def test_empty_file_has_no_environments(tmp_path: Path) -> None:
    (tmp_path / "cli.yaml").write_text("")
    assert EnvConfig.load(tmp_path).environments == {}


# -- the commands --


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CORTEX_CLI_CONFIG_DIR", str(tmp_path))
    return CliRunner()


def env_list(run: CliRunner) -> object:
    result = run.invoke(cli, ["env", "list", "-o", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_env_commands(run: CliRunner, tmp_path: Path) -> None:
    assert env_list(run) == {
        "default_environment": "local",
        "environments": [{"name": "local", "operator_endpoint": "http://127.0.0.1:8889"}],
    }
    result = run.invoke(cli, ["env", "configure", "prod", "--operator-endpoint", "https://cortex.example.com"])
    assert result.exit_code == 0, result.output
    assert "configured the prod environment" in result.stdout
    result = run.invoke(cli, ["env", "default", "prod"])
    assert (result.exit_code, result.stdout) == (0, "set the default environment to prod\n")
    result = run.invoke(cli, ["env", "list"])
    assert "name: prod (default)" in result.stdout
    assert "name: local\n" in result.stdout
    result = run.invoke(cli, ["env", "delete", "local"])
    assert (result.exit_code, result.stdout) == (0, "deleted the local environment\n")
    assert env_list(run) == {
        "default_environment": "prod",
        "environments": [{"name": "prod", "operator_endpoint": "https://cortex.example.com"}],
    }
    assert (tmp_path / "cli.yaml").exists()


def test_env_configure_defaults_to_local(run: CliRunner) -> None:
    result = run.invoke(cli, ["env", "configure"])
    assert result.exit_code == 0, result.output
    assert env_list(run) == {
        "default_environment": "local",
        "environments": [{"name": "local", "operator_endpoint": "http://127.0.0.1:8889"}],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["env", "default", "nope"], "error: no environment named nope; run `cortex env list`\n"),
        (["env", "delete", "nope"], "error: no environment named nope; run `cortex env list`\n"),
        (
            ["env", "configure", "x", "--operator-endpoint", "localhost"],
            "error: invalid operator endpoint 'localhost': expected http://host:port\n",
        ),
    ],
)
def test_env_command_errors(run: CliRunner, args: list[str], message: str) -> None:
    result = run.invoke(cli, args)
    assert (result.exit_code, result.stderr) == (1, message)


def test_no_default_environment(run: CliRunner, tmp_path: Path) -> None:
    assert run.invoke(cli, ["env", "delete", "local"]).exit_code == 0
    result = run.invoke(cli, ["get"])
    assert result.exit_code == 1
    assert result.stderr == "error: no default environment: run `cortex cluster up` or `cortex env configure`\n"
    result = run.invoke(cli, ["get", "-e", "other"])
    assert result.stderr == "error: no environment named other; run `cortex env list`\n"


def test_env_rename_keeps_the_place_and_the_default(run: CliRunner) -> None:
    for name, port in (("first", 1), ("second", 2)):
        endpoint = f"http://127.0.0.1:{port}"
        assert run.invoke(cli, ["env", "configure", name, "--operator-endpoint", endpoint]).exit_code == 0
    assert run.invoke(cli, ["env", "default", "first"]).exit_code == 0
    result = run.invoke(cli, ["env", "rename", "first", "renamed"])
    assert (result.exit_code, result.stdout) == (0, "renamed the first environment to renamed\n")
    listed = env_list(run)
    assert isinstance(listed, dict)
    assert listed["default_environment"] == "renamed"
    names = [(env["name"], env["operator_endpoint"]) for env in listed["environments"]]
    assert names[-2:] == [("renamed", "http://127.0.0.1:1"), ("second", "http://127.0.0.1:2")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["env", "rename", "nope", "other"], "error: no environment named nope; run `cortex env list`\n"),
        (
            ["env", "rename", "local", "bad name"],
            "error: invalid environment name 'bad name': use letters, digits, '-', '_' and '.'\n",
        ),
    ],
)
def test_env_rename_errors(run: CliRunner, args: list[str], message: str) -> None:
    run.invoke(cli, ["env", "configure", "local"])
    result = run.invoke(cli, args)
    assert (result.exit_code, result.stderr) == (1, message)


def test_env_rename_onto_another_is_refused(run: CliRunner) -> None:
    run.invoke(cli, ["env", "configure", "local"])
    run.invoke(cli, ["env", "configure", "other", "--operator-endpoint", "http://127.0.0.1:3"])
    result = run.invoke(cli, ["env", "rename", "local", "other"])
    assert result.exit_code == 1
    assert result.stderr == "error: an environment named other already exists; delete it first or choose another name\n"
