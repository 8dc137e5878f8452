"""CLI environments: which operator each ``-e/--env`` name talks to.

They live in ``$CORTEX_CLI_CONFIG_DIR/cli.yaml`` (default ``~/.cortex/cli.yaml``), in Cortex's format::

    default_environment: local
    environments:
      - name: local
        operator_endpoint: http://127.0.0.1:8889
        operator_token: ...     # optional: sent to the operator (Authorization: Bearer)
        api_key: ...            # optional: sent to the gateway (Authorization: Bearer)

The file is written readable by its owner only, since it may hold those secrets.
Until the file exists, the one environment is ``local`` at :data:`LOCAL_OPERATOR_ENDPOINT`, the
address ``cortex cluster up`` serves the operator on.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cortex.errors import CortexError, NotFound

#: the directory when ``CORTEX_CLI_CONFIG_DIR`` is not set
DEFAULT_CONFIG_DIR = Path("~/.cortex")
#: where ``cortex cluster up`` serves the operator
LOCAL_OPERATOR_ENDPOINT = "http://127.0.0.1:8889"
LOCAL_ENVIRONMENT = "local"
CONFIG_FILE = "cli.yaml"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def config_dir_from(environ: Mapping[str, str]) -> Path:
    """The CLI configuration directory: ``CORTEX_CLI_CONFIG_DIR``, else ``~/.cortex``.

    Args:
        environ: the process environment, read once by the caller (usually ``os.environ``).
    """
    value = environ.get("CORTEX_CLI_CONFIG_DIR")
    return Path(value).expanduser() if value else DEFAULT_CONFIG_DIR.expanduser()


#: what ``cortex env list`` shows instead of a secret
HIDDEN = "(hidden)"


@dataclasses.dataclass(frozen=True)
class Environment:
    """One named environment.

    Attributes:
        name: its name.
        operator_endpoint: the operator's base URL.
        operator_token: sent to the operator as ``Authorization: Bearer``, if the cluster requires one.
        api_key: sent to the gateway as ``Authorization: Bearer``, if its APIs require one.
    """

    name: str
    operator_endpoint: str
    operator_token: str | None = dataclasses.field(default=None, repr=False)
    api_key: str | None = dataclasses.field(default=None, repr=False)

    def to_dict(self, *, secrets: bool = True) -> dict[str, str]:
        """The environment as ``cli.yaml`` holds it; with ``secrets=False``, as ``cortex env list`` shows it."""
        data = {"name": self.name, "operator_endpoint": self.operator_endpoint}
        for key, value in (("operator_token", self.operator_token), ("api_key", self.api_key)):
            if value is not None:
                data[key] = value if secrets else HIDDEN
        return data


@dataclasses.dataclass
class EnvConfig:
    """The environments of one ``cli.yaml``; change them in memory, then :meth:`save`.

    Attributes:
        path: the ``cli.yaml`` file.
        default_environment: the environment used when none is named, if any.
        environments: by name, in the order they were configured.
    """

    path: Path
    default_environment: str | None = None
    environments: dict[str, Environment] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, config_dir: str | os.PathLike[str]) -> EnvConfig:
        """Read ``cli.yaml`` in ``config_dir``; a missing file means the built-in ``local`` environment.

        Raises:
            CortexError: the file can't be read, isn't valid YAML, or doesn't have Cortex's shape.
        """
        path = Path(config_dir) / CONFIG_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            local = Environment(LOCAL_ENVIRONMENT, LOCAL_OPERATOR_ENDPOINT)
            return cls(path, LOCAL_ENVIRONMENT, {local.name: local})
        except (OSError, UnicodeDecodeError) as exc:
            raise CortexError(f"{path}: can't read the CLI configuration: {exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CortexError(f"{path}: not valid YAML: {exc}") from exc
        return cls._from_data(path, data)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> EnvConfig:
        """:meth:`load` the directory :func:`config_dir_from` names (``environ`` defaults to ``os.environ``)."""
        return cls.load(config_dir_from(os.environ if environ is None else environ))

    @classmethod
    def _from_data(cls, path: Path, data: Any) -> EnvConfig:
        if data is None:
            return cls(path)
        if not isinstance(data, dict):
            raise CortexError(f"{path}: expected a mapping with default_environment and environments")
        default = data.get("default_environment")
        if default is not None and not isinstance(default, str):
            raise CortexError(f"{path}: default_environment: must be a string")
        items = data.get("environments")
        items = [] if items is None else items
        if not isinstance(items, list):
            raise CortexError(f"{path}: environments: must be a list")
        environments: dict[str, Environment] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise CortexError(f"{path}: environments[{index}]: must be a mapping with a name")
            endpoint = item.get("operator_endpoint")
            if not isinstance(endpoint, str):
                raise CortexError(f"{path}: environment {item['name']}: operator_endpoint: must be a URL")
            for key in ("operator_token", "api_key"):
                if item.get(key) is not None and not isinstance(item[key], str):
                    raise CortexError(f"{path}: environment {item['name']}: {key}: must be a string")
            environments[item["name"]] = Environment(
                item["name"], endpoint, operator_token=item.get("operator_token"), api_key=item.get("api_key")
            )
        return cls(path, default or None, environments)

    def to_dict(self, *, secrets: bool = True) -> dict[str, Any]:
        """Cortex's shape: ``{"default_environment", "environments": [{"name", "operator_endpoint"}]}``.

        With ``secrets=False`` (for display), tokens and keys read ``(hidden)``.
        """
        return {
            "default_environment": self.default_environment,
            "environments": [env.to_dict(secrets=secrets) for env in self.environments.values()],
        }

    def save(self) -> None:
        """Write ``cli.yaml`` atomically (a temporary file renamed over it).

        Raises:
            CortexError: the directory or the file can't be written.
        """
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cli-", suffix=".yaml.tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CortexError(f"{self.path}: can't write the CLI configuration: {exc}") from exc

    def get(self, name: str | None = None) -> Environment:
        """The environment called ``name``, or the default one.

        Raises:
            NotFound: no environment has that name, or no name was given and there is no default.
        """
        if name is None:
            if self.default_environment is None:
                raise NotFound("no default environment: run `cortex cluster up` or `cortex env configure`")
            name = self.default_environment
        try:
            return self.environments[name]
        except KeyError:
            raise NotFound(f"no environment named {name}; run `cortex env list`") from None

    def set(
        self, name: str, operator_endpoint: str, *, operator_token: str | None = None, api_key: str | None = None
    ) -> Environment:
        """Add or replace an environment; the first one configured becomes the default.

        Raises:
            CortexError: the name or the endpoint is not valid.
        """
        if not _NAME.match(name):
            raise CortexError(f"invalid environment name {name!r}: use letters, digits, '-', '_' and '.'")
        endpoint = operator_endpoint.strip().rstrip("/")
        if not endpoint.startswith(("http://", "https://")) or len(endpoint.split("://", 1)[1]) == 0:
            raise CortexError(f"invalid operator endpoint {operator_endpoint!r}: expected http://host:port")
        env = Environment(name, endpoint, operator_token=operator_token or None, api_key=api_key or None)
        self.environments[name] = env
        if self.default_environment is None:
            self.default_environment = name
        return env

    def configure(
        self,
        name: str,
        operator_endpoint: str,
        *,
        make_default: bool = False,
        operator_token: str | None = None,
        api_key: str | None = None,
    ) -> Environment:
        """:meth:`set` then :meth:`save`; with ``make_default``, it becomes the default environment too."""
        env = self.set(name, operator_endpoint, operator_token=operator_token, api_key=api_key)
        if make_default:
            self.default_environment = name
        self.save()
        return env

    def delete(self, name: str) -> None:
        """Remove an environment; if it was the default, there is no default any more.

        Raises:
            NotFound: no environment has that name.
        """
        if name not in self.environments:
            raise NotFound(f"no environment named {name}; run `cortex env list`")
        del self.environments[name]
        if self.default_environment == name:
            self.default_environment = None

    def rename(self, old: str, new: str) -> Environment:
        """Give the environment ``old`` the name ``new``, in its place; the default follows it.

        Raises:
            NotFound: no environment is called ``old``.
            CortexError: ``new`` is not a valid name, or another environment has it.
        """
        if old not in self.environments:
            raise NotFound(f"no environment named {old}; run `cortex env list`")
        if not _NAME.match(new):
            raise CortexError(f"invalid environment name {new!r}: use letters, digits, '-', '_' and '.'")
        if new != old and new in self.environments:
            raise CortexError(f"an environment named {new} already exists; delete it first or choose another name")
        renamed = dataclasses.replace(self.environments[old], name=new)
        self.environments = {(new if name == old else name): env for name, env in self.environments.items()}
        self.environments[new] = renamed
        if self.default_environment == old:
            self.default_environment = new
        return renamed

    def set_default(self, name: str) -> None:
        """Make ``name`` the default environment.

        Raises:
            NotFound: no environment has that name.
        """
        if name not in self.environments:
            raise NotFound(f"no environment named {name}; run `cortex env list`")
        self.default_environment = name
