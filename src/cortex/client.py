"""The Python client: deploy and inspect APIs through the operator, submit and await requests.

Cortex's client ran the CLI binary; this one speaks HTTP to the operator (``/deploy``, ``/get``,
``/describe``, ...) and to the gateway (``POST /<api>``, ``GET /<api>/<id>``)::

    import cortex

    cx = cortex.client()                      # the default environment of ~/.cortex/cli.yaml
    cx.deploy("cortex.yaml", wait=True)
    request_id = cx.submit("hello", {"text": "hi"})
    print(cx.result("hello", request_id, timeout=60))
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import types
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import httpx
import yaml

from cortex.env import EnvConfig, config_dir_from
from cortex.errors import (
    AccessDenied,
    ClusterUnavailable,
    CortexError,
    NotFound,
    RequestFailed,
    ResultTimeout,
    SpecError,
)

#: the longest wait the gateway grants one read (``GET ...?wait=N``)
MAX_WAIT = 60.0
#: seconds between two polls of ``result`` never grow past this
MAX_POLL_INTERVAL = 2.0
_TERMINAL_FAILURES = ("failed", "cancelled")


def client(env_name: str | None = None, *, api_key: str | None = None) -> Client:
    """A client for a configured environment (``CORTEX_CLI_CONFIG_DIR`` is read once, here).

    The operator token is the environment's ``operator_token``; the gateway key is ``api_key``, else
    the environment's, else ``CORTEX_API_KEY`` (what a replica is given, so chaining works).

    Args:
        env_name: the environment's name; the default environment when ``None``.
        api_key: the key to send to the gateway.

    Raises:
        NotFound: there is no environment of that name, or no default one.
    """
    environment = EnvConfig.load(config_dir_from(os.environ)).get(env_name)
    return Client(
        environment.operator_endpoint,
        env_name=environment.name,
        operator_token=environment.operator_token,
        api_key=api_key or environment.api_key or os.environ.get("CORTEX_API_KEY") or None,
    )


def is_ready(api: dict[str, Any]) -> bool:
    """Whether an APIResponse shows a finished rollout.

    Every requested replica is ready and up to date, and at least one is requested unless the
    API may scale to zero (the check Cortex's e2e tests use).
    """
    status = api.get("status") or {}
    requested, ready, up_to_date = status.get("requested", 0), status.get("ready", 0), status.get("up_to_date", 0)
    min_replicas = ((api.get("spec") or {}).get("autoscaling") or {}).get("min_replicas", 1)
    return bool(requested == ready == up_to_date and (requested >= 1 or min_replicas == 0))


class Client:
    """A synchronous client of one environment's operator and gateway.

    Close it (or use it as a context manager) to release its connections.

    Args:
        operator_endpoint: the operator's base URL, e.g. ``http://127.0.0.1:8889``.
        env_name: the environment it came from, for messages.
        timeout: seconds each HTTP call may take (streams of logs excepted).
        operator_token: sent to the operator as ``Authorization: Bearer``.
        api_key: sent to the gateway as ``Authorization: Bearer``.
    """

    def __init__(
        self,
        operator_endpoint: str,
        *,
        env_name: str | None = None,
        timeout: float = 30.0,
        operator_token: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.operator_endpoint = operator_endpoint.rstrip("/")
        self.env_name = env_name
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)
        self._auth = {
            "operator": _bearer(operator_token),
            "gateway": _bearer(api_key),
        }
        self._gateway_url: str | None = None

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.operator_endpoint!r}, env_name={self.env_name!r})"

    # -- the operator ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The operator's ``/info``: version, provider, state_dir, operator_url, gateway_url, pid."""
        return cast(dict[str, Any], self._operator("GET", "/info"))

    @property
    def env(self) -> dict[str, str | None]:
        """The environment this client talks to, as Cortex's ``client.env``: ``{"name", "operator_endpoint"}``."""
        return {"name": self.env_name, "operator_endpoint": self.operator_endpoint}

    def deploy(
        self,
        api_spec: dict[str, Any] | str | os.PathLike[str],
        force: bool = True,
        wait: bool = False,
        *,
        project_dir: str | os.PathLike[str] | None = None,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """Create or update one API from its spec (Cortex v0.42's ``deploy``).

        Args:
            api_spec: one API as a dict, sent as a one-item YAML list; a configuration file's path
                is accepted too (then as :meth:`deploy_from_file`).
            force: override an update in progress.
            wait: return only once the API is ready (see :func:`is_ready`).
            project_dir: where the spec's relative paths (a local ``command``'s files) are found;
                the current directory by default (Cortex before v0.36 took it as the second argument).
            timeout: seconds ``wait`` may take.

        Returns:
            Without ``wait``, the DeployResult ``{"api": {"spec", "endpoint"}, "message", "error"}``;
            with it, the ready API as :meth:`get_api` returns it.

        Raises:
            SpecError: the configuration is invalid (the message names file, API and field).
            CortexError: the API could not be deployed.
            ResultTimeout: ``wait`` ran past ``timeout``.
        """
        if not isinstance(api_spec, dict):
            return self.deploy_from_file(api_spec, force=force, wait=wait, timeout=timeout)
        config = yaml.safe_dump([api_spec], sort_keys=False)
        base = Path(project_dir) if project_dir is not None else Path.cwd()
        # the operator resolves relative paths next to the configuration: here, project_dir
        results = self.deploy_config(config, str(base.absolute() / "cortex.yaml"), force=force)
        return self._deployed(results, wait=wait, timeout=timeout)

    def deploy_from_file(
        self,
        config_file: str | os.PathLike[str],
        force: bool = False,
        wait: bool = False,
        *,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """Create or update the APIs of a configuration file (Cortex v0.42's ``deploy_from_file``).

        Returns:
            The first API's DeployResult; with ``wait``, once every API of the file is ready, the
            first one as :meth:`get_api` returns it.

        Raises:
            SpecError: the file can't be read or is invalid.
            CortexError: an API could not be deployed.
            ResultTimeout: ``wait`` ran past ``timeout``.
        """
        return self._deployed(self.deploy_file(config_file, force=force), wait=wait, timeout=timeout)

    def _deployed(self, results: list[dict[str, Any]], *, wait: bool, timeout: float) -> dict[str, Any]:
        for result in results:
            if result.get("error"):
                raise CortexError(str(result["error"]))
        if not wait:
            return results[0]
        return self.wait_ready([result["api"]["spec"]["name"] for result in results], timeout=timeout)[0]

    def deploy_file(self, path: str | os.PathLike[str], *, force: bool = False) -> list[dict[str, Any]]:
        """Send a configuration file; every DeployResult, errors included, as the operator answered.

        Raises:
            SpecError: the file can't be read, is invalid (checked here first, so that the error comes
                without a round trip, and even when the cluster is down), or the operator found it invalid.
        """
        from cortex.spec.loader import load_text, read_config  # pydantic: only for the commands that need it

        text = read_config(path)
        load_text(text, os.fspath(path))
        return self.deploy_config(text, str(Path(path).absolute()), force=force)

    def deploy_config(self, config: str, config_path: str, *, force: bool = False) -> list[dict[str, Any]]:
        """``POST /deploy`` with a configuration's text and the absolute path it came from."""
        body = {"config": config, "config_path": config_path}
        return cast(list[dict[str, Any]], self._operator("POST", "/deploy", params=_flag("force", force), json=body))

    def wait_ready(
        self,
        names: str | list[str],
        *,
        timeout: float = 600.0,
        interval: float = 1.0,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Poll APIs, one after the other, until each :func:`is_ready`, all within one deadline.

        Args:
            names: one API or several.
            timeout: seconds the whole wait may take.
            interval: seconds between two polls of an API.
            on_status: called with every APIResponse fetched (to show progress).

        Returns:
            The last APIResponse of each API, in order.

        Raises:
            ResultTimeout: an API is still not ready after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        ready: list[dict[str, Any]] = []
        for name in [names] if isinstance(names, str) else names:
            while True:
                api = self.get_api(name)
                if on_status is not None:
                    on_status(api)
                if is_ready(api):
                    ready.append(api)
                    break
                if problems := api.get("problems"):
                    # an image that cannot be pulled or a crash loop: waiting longer would not help
                    raise CortexError(f"{name} cannot become ready: {'; '.join(problems)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    status = api.get("status") or {}
                    raise ResultTimeout(
                        f"{name} is not ready after {timeout:g}s ({status.get('ready', 0)}/"
                        f"{status.get('requested', 0)} replicas ready); "
                        f"see `cortex describe {name}` and `cortex logs {name}`"
                    )
                time.sleep(min(interval, remaining))
        return ready

    def get_api(self, api_name: str, *, show_secrets: bool = False) -> dict[str, Any]:
        """One API's APIResponse (``spec``, ``metadata``, ``status``, ``endpoint``, ``api_versions``).

        With ``show_secrets``, its ``webhook_secret`` too.

        Raises:
            NotFound: no API has that name.
        """
        params = {"show_secrets": "true"} if show_secrets else None
        apis: list[dict[str, Any]] = self._operator("GET", f"/get/{_segment(api_name)}", params=params)
        if not apis:
            raise NotFound(f"api {api_name} is not deployed")
        return apis[0]

    def queue_summary(self, api_name: str) -> dict[str, Any]:
        """One API's queue summary: ``requests`` (counts by status over the retention window),
        ``oldest_queued_age`` (seconds), ``retention`` and ``replicas`` (``busy``, ``idle``, ...).

        Raises:
            NotFound: no API has that name.
        """
        return cast(dict[str, Any], self._operator("GET", f"/queue/{_segment(api_name)}"))

    def list_apis(self) -> list[dict[str, Any]]:
        """Every deployed API's APIResponse."""
        return cast(list[dict[str, Any]], self._operator("GET", "/get"))

    def describe(self, name: str) -> dict[str, Any]:
        """``{"api": APIResponse, "replicas": [...], "replica_counts": {...}}``.

        Raises:
            NotFound: no API has that name.
        """
        return cast(dict[str, Any], self._operator("GET", f"/describe/{_segment(name)}"))

    def refresh(self, api_name: str, force: bool = False) -> dict[str, Any]:
        """Restart every replica of an API, rolling (``{"message"}``)."""
        path = f"/refresh/{_segment(api_name)}"
        return cast(dict[str, Any], self._operator("POST", path, params=_flag("force", force)))

    def delete(self, api_name: str, keep_cache: bool = False) -> dict[str, Any]:
        """Delete an API (``{"message"}``); ``keep_cache`` is accepted for Cortex scripts and has no effect.

        Its requests stay readable (:meth:`status`) until they expire; those still queued are cancelled.
        """
        return cast(dict[str, Any], self._operator("DELETE", f"/delete/{_segment(api_name)}"))

    def logs(
        self,
        name: str,
        *,
        follow: bool = True,
        tail: int | None = None,
        request_id: str | None = None,
        replica: str | None = None,
    ) -> Generator[str, None, None]:
        """The API's log lines, ``[<replica> <container>] <line>``; with ``follow``, until the stream ends.

        With ``request_id``, only the lines that mention that request, the gateway's included; with
        ``replica``, only that replica's (its containers' and its dequeuer's).

        Close the iterator (or stop iterating) to end the stream.
        """
        params = _flag("follow", follow)
        if tail is not None:
            params["tail"] = str(tail)
        if request_id is not None:
            params["request"] = request_id
        if replica is not None:
            params["replica"] = replica
        # a followed stream may stay quiet for as long as the API does
        timeout = httpx.Timeout(self.timeout, read=None if follow else self.timeout)
        url = f"{self.operator_endpoint}/logs/{_segment(name)}"
        with (
            _translate("operator", self.operator_endpoint, self.timeout),
            self._http.stream("GET", url, params=params, timeout=timeout, headers=self._auth["operator"]) as response,
        ):
            if not response.is_success:
                response.read()
                _raise_for(response, "operator")
            yield from response.iter_lines()

    # -- the gateway ----------------------------------------------------------------------------

    def submit(self, api: str, payload: Any, *, content_type: str | None = None) -> str:
        """Submit one request to an API; returns its id once it is durably queued.

        Args:
            api: the API's endpoint path without the leading ``/`` (its name, by default).
            payload: ``bytes`` or ``str`` are sent as given; anything else is sent as JSON.
            content_type: the ``Content-Type`` header; by default from the payload's type.

        Raises:
            NotFound: no API is deployed at that endpoint.
        """
        if isinstance(payload, bytes):
            body, default_type = payload, "application/octet-stream"
        elif isinstance(payload, str):
            body, default_type = payload.encode(), "text/plain; charset=utf-8"
        else:
            body, default_type = json.dumps(payload).encode(), "application/json"
        headers = {"Content-Type": content_type or default_type}
        data = self._gateway("POST", f"/{api.strip('/')}", content=body, headers=headers)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise CortexError(f"the cortex gateway answered without a request id: {data!r}")
        request_id: str = data["id"]
        return request_id

    def submit_batch(
        self,
        api: str,
        payloads: Iterable[Any] | bytes,
        *,
        content_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[str]:
        """Submit many requests to an API in one call (``POST /<api>/batch``), all or none; returns their ids in order.

        Each request is the one :meth:`submit` would make of its payload as JSON. Stored and queued
        in one atomic step: if the gateway refuses a payload, none is queued.

        Args:
            api: the API's endpoint path without the leading ``/`` (its name, by default).
            payloads: the payloads, each sent as JSON; or ``bytes``, a body already encoded: a JSON
                array, or JSON Lines with ``content_type="application/x-ndjson"``.
            content_type: the body's ``Content-Type`` (by default ``application/json``).
            idempotency_key: names the batch: sent again with the same payloads, it answers the same
                ids and queues nothing.

        Raises:
            NotFound: no API is deployed at that endpoint.
            CortexError: the batch was refused (the message names each bad payload by index).
        """
        body = payloads if isinstance(payloads, bytes) else json.dumps(list(payloads), separators=(",", ":")).encode()
        headers = {"Content-Type": content_type or "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = self._gateway("POST", f"/{api.strip('/')}/batch", content=body, headers=headers)
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not all(isinstance(request_id, str) for request_id in ids):
            raise CortexError(f"the cortex gateway answered a batch without its ids: {data!r}")
        return ids

    def status(self, api: str, request_id: str) -> dict[str, Any]:
        """A request's record: ``{"id", "status", "result"?, "timestamp"?, "error"?, ...}``.

        Raises:
            NotFound: the request is unknown or has expired.
        """
        return cast(dict[str, Any], self._gateway("GET", f"/{api.strip('/')}/{_segment(request_id)}"))

    def cancel(self, api: str, request_id: str) -> dict[str, Any]:
        """Cancel a request: a queued one never runs, a running one has its call to the user server aborted.

        Cancelling a cancelled request again is harmless. Returns the request's record.

        Raises:
            CortexError: the request had already finished (the message says how).
            NotFound: the request is unknown or has expired.
        """
        return cast(dict[str, Any], self._gateway("DELETE", f"/{api.strip('/')}/{_segment(request_id)}"))

    def purge(self, api: str) -> int:
        """Cancel every queued request of an API (running ones keep running); returns how many.

        The gateway asks for a key of the cluster when the cluster has one (``POST /<api>/purge``).

        Raises:
            NotFound: no API is deployed at that endpoint.
        """
        data = self._gateway("POST", f"/{api.strip('/')}/purge")
        if not isinstance(data, dict) or not isinstance(data.get("cancelled"), int):
            raise CortexError(f"the cortex gateway answered a purge without a count: {data!r}")
        cancelled: int = data["cancelled"]
        return cancelled

    def redeliver(self, api: str, request_id: str) -> dict[str, Any]:
        """Send a finished request's webhook once more (its delivery state starts over).

        Raises:
            NotFound: the API or the request is unknown (or expired).
            CortexError: the request has not finished, or has no webhook.
        """
        return cast(dict[str, Any], self._operator("POST", f"/redeliver/{_segment(api)}/{_segment(request_id)}"))

    def result(self, api: str, request_id: str, *, timeout: float = 600.0, poll: float = 0.2) -> Any:
        """Wait for a request to finish and return its ``result``.

        Each read asks the gateway to answer once the request ends (``GET ...?wait=N``, up to a
        minute at a time), so the result comes back as soon as it is stored. A gateway that answers
        sooner without it ending (one older than ``wait``) is polled every ``poll`` seconds at
        first, backing off to at most :data:`MAX_POLL_INTERVAL`.

        Raises:
            RequestFailed: the request ended ``failed`` or ``cancelled`` (with its error's kind).
            ResultTimeout: it had not finished after ``timeout`` seconds.
            NotFound: the request is unknown or has expired.
        """
        deadline = time.monotonic() + timeout
        delay = poll
        path = f"/{api.strip('/')}/{_segment(request_id)}"
        wait = min(timeout, MAX_WAIT)
        while True:
            asked = time.monotonic()
            if wait > 0:
                params = {"wait": f"{wait:.3f}"}
                record = cast(dict[str, Any], self._gateway("GET", path, params=params, timeout=wait + self.timeout))
            else:
                record = self.status(api, request_id)
            state = record.get("status")
            if state == "completed":
                return record.get("result")
            if state in _TERMINAL_FAILURES:
                raise _failure(api, request_id, record)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ResultTimeout(f"request {request_id} of api {api} is still {state} after {timeout:g}s")
            if wait > 0 and time.monotonic() - asked < wait / 2:  # the gateway did not wait: poll it
                time.sleep(min(delay, remaining))
                delay = min(delay * 1.5, MAX_POLL_INTERVAL)
            wait = min(remaining, MAX_WAIT)

    def gateway_url(self) -> str:
        """The gateway's base URL, from the operator's ``/info`` (asked once per client)."""
        if self._gateway_url is None:
            url = self.info().get("gateway_url")
            if not isinstance(url, str) or not url:
                raise CortexError(f"the cortex operator at {self.operator_endpoint} did not say where its gateway is")
            self._gateway_url = url.rstrip("/")
        return self._gateway_url

    # -- HTTP -----------------------------------------------------------------------------------

    def _operator(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call("operator", self.operator_endpoint, method, path, **kwargs)

    def _gateway(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call("gateway", self.gateway_url(), method, path, **kwargs)

    def _call(self, service: str, base: str, method: str, path: str, **kwargs: Any) -> Any:
        kwargs["headers"] = {**self._auth[service], **(kwargs.get("headers") or {})}
        with _translate(service, base, self.timeout):
            response = self._http.request(method, base + path, **kwargs)
        _raise_for(response, service)
        try:
            return response.json()
        except ValueError as exc:
            raise CortexError(f"the cortex {service} answered {method} {path} with something other than JSON") from exc


@contextlib.contextmanager
def _translate(service: str, base: str, timeout: float) -> Iterator[None]:
    """httpx's transport errors as :class:`ClusterUnavailable`, with what to do about them."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ClusterUnavailable(
            f"cannot reach the cortex {service} at {base}: is the cluster running? start it with `cortex cluster up`"
        ) from exc
    except httpx.TimeoutException as exc:
        raise ClusterUnavailable(f"the cortex {service} at {base} did not answer within {timeout:g}s") from exc
    except httpx.TransportError as exc:
        raise ClusterUnavailable(f"lost the connection to the cortex {service} at {base}: {exc}") from exc


def _raise_for(response: httpx.Response, service: str) -> None:
    """A non-2xx answer as an exception carrying the server's ``error`` message."""
    if response.is_success:
        return
    message, kind = None, None
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            message, kind = body.get("error"), body.get("kind")
            items = body.get("items")  # a refused batch's bad payloads
            if isinstance(message, str) and isinstance(items, list):
                message += "".join(
                    f"\n  payload {item.get('index')}: {item.get('error')}" for item in items if isinstance(item, dict)
                )
    if not isinstance(message, str) or not message:
        text = response.text.strip()[:200]
        message = f"the cortex {service} answered HTTP {response.status_code}" + (f": {text}" if text else "")
    if response.status_code == 404:
        raise NotFound(message)
    if response.status_code in (401, 403):
        where = "api_key" if service == "gateway" else "operator_token"
        flag = "--api-key" if service == "gateway" else "--operator-token"
        raise AccessDenied(f"{message} [this client's {where} is set by `cortex env configure <env> {flag}`]")
    if kind == "spec":
        raise SpecError(message)
    raise CortexError(message)


def _failure(api: str, request_id: str, record: dict[str, Any]) -> RequestFailed:
    state = str(record.get("status"))
    error = record.get("error") if isinstance(record.get("error"), dict) else None
    if error is None:
        return RequestFailed(f"request {request_id} of api {api} was {state}", status=state)
    kind = error.get("kind")
    return RequestFailed(
        f"request {request_id} of api {api} {state}: {kind}: {error.get('message')}", status=state, kind=kind
    )


def _bearer(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def _flag(name: str, value: bool) -> dict[str, str]:
    return {name: "true" if value else "false"}


def _segment(value: str) -> str:
    """A name or id as one URL path segment (a ``/`` in it must not change the route)."""
    return urllib.parse.quote(value, safe="")


class _CallableModule(types.ModuleType):
    """This module, callable: ``cortex.client(...)`` is :func:`client` whichever of the two the name holds.

    Importing the submodule (``from cortex.client import Client``) binds the package's ``client``
    attribute to the module; Cortex's users call ``cortex.client()``, which must keep working after that.
    """

    def __call__(self, env_name: str | None = None, *, api_key: str | None = None) -> Client:
        return client(env_name, api_key=api_key)


sys.modules[__name__].__class__ = _CallableModule
