"""The API commands, as Cortex's: ``deploy``, ``get``, ``describe``, ``logs``, ``refresh``, ``delete``.

Each command fetches through :class:`cortex.client.Client` and renders with :mod:`cortex.cli.render`;
``-o json`` prints the operator's JSON as it answered. Every :class:`~cortex.errors.CortexError`
becomes one ``error: <message>`` line on stderr and exit status 1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from cortex.cli import render
from cortex.cli.listing import list_all_environments, unreachable_note
from cortex.client import Client, client
from cortex.errors import CortexError

F = TypeVar("F", bound=Callable[..., Any])

#: seconds between two refreshes of ``--watch``, as Cortex
WATCH_INTERVAL = 2.0


# -- shared by every command that talks to a cluster ---------------------------------------------


def env_option(func: F) -> F:
    """``-e/--env``: the environment to use (default: the default environment)."""
    return click.option("-e", "--env", "env_name", default=None, metavar="ENV", help="Environment to use.")(func)


def output_option(func: F) -> F:
    """``-o/--output pretty|json``."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["pretty", "json"]),
        default="pretty",
        show_default=True,
        help="Output format.",
    )(func)


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with status 1."""
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(1)


def handle_errors(func: F) -> F:
    """Turn a :class:`CortexError` into ``error: <message>`` and exit 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CortexError as exc:
            fail(str(exc))

    return cast(F, wrapper)


@contextlib.contextmanager
def open_client(env_name: str | None) -> Iterator[Client]:
    """A client of the environment (``CORTEX_CLI_CONFIG_DIR`` is read here), closed afterwards."""
    with client(env_name) as cx:
        yield cx


def stdout_console() -> Console:
    """The console for pretty output; wide when piped, so that URLs and tables are never cut."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=400)
    return console


def print_json(data: Any) -> None:
    """The JSON as the operator or gateway answered it, indented by 2."""
    click.echo(json.dumps(data, indent=2))


def show(renderable: Callable[[], RenderableType], *, watch: bool) -> None:
    """Print once, or with ``watch`` re-fetch every :data:`WATCH_INTERVAL` until Ctrl-C.

    On a terminal the view is redrawn in place; piped, each view is printed in turn, a blank line
    between two, and flushed, so that ``cortex get -w | tee`` shows every refresh as it comes.
    """
    console = stdout_console()
    if not watch:
        console.print(renderable())
        return
    if not console.is_terminal:
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                console.print(renderable())
                console.file.flush()
                time.sleep(WATCH_INTERVAL)
                console.print()
        return
    with contextlib.suppress(KeyboardInterrupt), Live(renderable(), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(WATCH_INTERVAL)
            live.update(renderable(), refresh=True)


def _json_text(data: Any) -> Text:
    return Text(json.dumps(data, indent=2))


# -- the commands --------------------------------------------------------------------------------


@click.command()
@click.argument("config_file", required=False, default="cortex.yaml", type=click.Path(path_type=Path))
@env_option
@click.option("-f", "--force", is_flag=True, help="Override the in-progress API update.")
@click.option("-y", "--yes", is_flag=True, help="Skip prompts.")
@output_option
@click.option("--wait", is_flag=True, help="Wait until every deployed API is ready.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds --wait may take.")
@handle_errors
def deploy(
    config_file: Path, env_name: str | None, force: bool, yes: bool, output: str, wait: bool, timeout: float
) -> None:
    """Create or update the APIs of CONFIG_FILE (default: ./cortex.yaml)."""
    with open_client(env_name) as cx:
        results = cx.deploy_file(config_file, force=force)
        errors = [str(result["error"]) for result in results if result.get("error")]
        if output == "pretty":
            for result in results:
                if not result.get("error"):
                    click.echo(result.get("message", ""))
        if wait and not errors:
            _wait_ready(cx, [result["api"]["spec"]["name"] for result in results], timeout, quiet=output == "json")
        if output == "json":
            print_json(results)
        for error in errors:
            click.echo(f"error: {error}", err=True)
        if errors:
            raise click.exceptions.Exit(1)


def _wait_ready(cx: Client, names: list[str], timeout: float, *, quiet: bool) -> None:
    """Wait for the APIs, a spinner on stderr showing ``ready/requested`` as it changes."""
    stderr = Console(stderr=True, highlight=False)
    with stderr.status("waiting for the replicas") as spinner:
        apis = cx.wait_ready(names, timeout=timeout, on_status=lambda api: spinner.update(render.readiness(api)))
    if not quiet:
        for api in apis:
            click.echo(render.ready_line(api))


@click.command()
@click.argument("api", required=False)
@env_option
@click.option("-w", "--watch", is_flag=True, help="Re-run the command every 2 seconds.")
@output_option
@click.option("--show-secrets", is_flag=True, help="Show the API's webhook signing secret too.")
@handle_errors
def get(api: str | None, env_name: str | None, watch: bool, output: str, show_secrets: bool) -> None:
    """List the deployed APIs (of every environment unless -e is given), or show one API."""
    if api is None and env_name is None:
        _get_everywhere(watch=watch, output=output)
        return
    with open_client(env_name) as cx:

        def fetch() -> Any:
            return [cx.get_api(api, show_secrets=show_secrets)] if api is not None else cx.list_apis()

        def view() -> RenderableType:
            data = fetch()
            if output == "json":
                return _json_text(data)
            if api is not None:
                return render.api_detail(data[0], time.time())
            if not data:
                return Text("no apis are deployed", style="bold")
            return render.api_list_table(data, time.time())

        if output == "json" and not watch:
            print_json(fetch())
            return
        show(view, watch=watch)


def _get_everywhere(*, watch: bool, output: str) -> None:
    """``cortex get`` without ``-e``: every environment, Cortex's ``[{"env_name", "apis", "error"}]`` in JSON."""
    if output == "json" and not watch:
        print_json(list_all_environments())
        return

    def view() -> RenderableType:
        listed = list_all_environments()
        if output == "json":
            return _json_text(listed)
        apis = [api for entry in listed for api in entry["apis"]]
        failed = [entry for entry in listed if entry["error"]]
        if not apis and len(listed) == 1 and failed:
            raise CortexError(str(failed[0]["error"]))  # one environment, and it did not answer: an error
        parts: list[RenderableType] = []
        if apis:
            now = time.time()
            parts.append(render.env_apis_table(listed, now) if len(listed) > 1 else render.api_list_table(apis, now))
        elif len(failed) < len(listed):
            parts.append(Text("no apis are deployed", style="bold"))
        note = unreachable_note(listed)
        if note is not None:
            parts += [Text(""), Text(note)] if parts else [Text(note)]
        return Group(*parts)

    show(view, watch=watch)


@click.command()
@click.argument("api")
@env_option
@click.option("-w", "--watch", is_flag=True, help="Re-run the command every 2 seconds.")
@output_option
@handle_errors
def describe(api: str, env_name: str | None, watch: bool, output: str) -> None:
    """Show an API's status, its replicas and their counts."""
    with open_client(env_name) as cx:
        if output == "json" and not watch:
            print_json(cx.describe(api))
            return

        def view() -> RenderableType:
            data = cx.describe(api)
            return _json_text(data) if output == "json" else render.describe_view(data, time.time())

        show(view, watch=watch)


@click.command()
@click.argument("api")
@env_option
@click.option("--follow/--no-follow", default=True, show_default=True, help="Keep streaming new lines.")
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=None,
    help="Start with the last N lines of all replicas and containers together.",
)
@click.option("--request", "request_id", default=None, help="Only the lines of this request (gateway's included).")
@click.option("--random-pod", is_flag=True, help="Only one replica's lines, chosen at random among the ready ones.")
@click.option("-y", "--yes", is_flag=True, help="Skip prompts (accepted for Cortex scripts).")
@output_option
@handle_errors
def logs(
    api: str,
    env_name: str | None,
    follow: bool,
    tail: int | None,
    request_id: str | None,
    random_pod: bool,
    yes: bool,
    output: str,
) -> None:
    """Stream the logs of an API's replicas, merged in the order they were written (Ctrl-C to stop).

    Cortex's own JSON log lines (the dequeuer's) are shown as ``time level message``; -o json prints
    every line as it was written.
    """
    with open_client(env_name) as cx:
        replica = _random_replica(cx, api) if random_pod else None
        with (
            contextlib.closing(cx.logs(api, follow=follow, tail=tail, request_id=request_id, replica=replica)) as lines,
            contextlib.suppress(KeyboardInterrupt),
        ):
            for line in lines:
                click.echo(line if output == "json" else render.log_line(line))


def _random_replica(cx: Client, api: str) -> str:
    """One replica to follow: a ready, up-to-date one if any (as Cortex's ``--random-pod``), else any running one."""
    description = cx.describe(api)
    deployment = (description.get("api") or {}).get("metadata", {}).get("deployment_id")
    replicas = description.get("replicas") or []
    ready = [r["id"] for r in replicas if r.get("state") == "ready" and r.get("deployment_id") == deployment]
    running = [r["id"] for r in replicas if r.get("state") != "terminating"]
    if not (ready or running):
        raise CortexError(f"api {api} has no replica to stream logs from (see `cortex describe {api}`)")
    return str(random.choice(ready or running))


@click.command()
@click.argument("api")
@env_option
@click.option("-f", "--force", is_flag=True, help="Override the in-progress API update.")
@output_option
@handle_errors
def refresh(api: str, env_name: str | None, force: bool, output: str) -> None:
    """Restart every replica of an API, without downtime."""
    with open_client(env_name) as cx:
        answer = cx.refresh(api, force=force)
    _print_message(answer, output)


@click.command()
@click.argument("api")
@env_option
@click.option("-f", "--force", is_flag=True, help="Delete the API without confirmation.")
@click.option("-y", "--yes", is_flag=True, help="Skip prompts.")
@click.option("-c", "--keep-cache", is_flag=True, help="Keep the API's cache (accepted for Cortex scripts).")
@output_option
@handle_errors
def delete(api: str, env_name: str | None, force: bool, yes: bool, keep_cache: bool, output: str) -> None:
    """Delete an API."""
    with open_client(env_name) as cx:
        answer = cx.delete(api, keep_cache=keep_cache)
    _print_message(answer, output)


def _print_message(answer: dict[str, Any], output: str) -> None:
    if output == "json":
        print_json(answer)
    else:
        click.echo(answer.get("message", ""))
