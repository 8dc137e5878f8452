"""``cortex request ...``, beyond Cortex: submit a request to an API, read it back, cancel it, purge an API's queue."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cortex.cli.apis import env_option, fail, handle_errors, open_client, print_json
from cortex.errors import CortexError


@click.group()
def request() -> None:
    """Submit requests to an API and read their status and result."""


@request.command()
@click.argument("api")
@click.argument("request_id", metavar="ID")
@env_option
@handle_errors
def get(api: str, request_id: str, env_name: str | None) -> None:
    """Print a request's status (and its result once completed) as the gateway answers it."""
    with open_client(env_name) as cx:
        print_json(cx.status(api, request_id))


@request.command()
@click.argument("api")
@click.argument("request_id", metavar="ID")
@env_option
@handle_errors
def cancel(api: str, request_id: str, env_name: str | None) -> None:
    """Cancel a request: queued, it never runs; running, its call to the user server is aborted."""
    with open_client(env_name) as cx:
        print_json(cx.cancel(api, request_id))


@request.command()
@click.argument("api")
@env_option
@handle_errors
def purge(api: str, env_name: str | None) -> None:
    """Cancel every queued request of an API (running ones keep running)."""
    with open_client(env_name) as cx:
        cancelled = cx.purge(api)
    click.echo(f"cancelled {cancelled} queued request{'' if cancelled == 1 else 's'} of {api}")


@request.command()
@click.argument("api")
@click.argument("request_id", metavar="ID")
@env_option
@handle_errors
def redeliver(api: str, request_id: str, env_name: str | None) -> None:
    """Send a finished request's webhook once more."""
    with open_client(env_name) as cx:
        click.echo(cx.redeliver(api, request_id)["message"])


@request.command()
@click.argument("api")
@click.option("--data", "data", metavar="JSON", help="The payload: a JSON document.")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The payload: a file's bytes, sent as they are.",
)
@click.option(
    "--batch",
    "batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Many payloads, all queued or none: a JSON array, or JSON Lines (a .jsonl or .ndjson file).",
)
@click.option("--content-type", default=None, help="Content-Type of the payload (default: from --data or --file).")
@click.option("--wait", is_flag=True, help="Wait for the result and print it (with --batch: each, in order).")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds --wait may take.")
@env_option
@handle_errors
def submit(
    api: str,
    data: str | None,
    file: Path | None,
    batch: Path | None,
    content_type: str | None,
    wait: bool,
    timeout: float,
    env_name: str | None,
) -> None:
    """Submit one request to API; print its id, or with --wait its result.

    With --batch, submit one request per payload of the file in one call (POST /<api>/batch):
    print their ids, one a line, or with --wait their results, one a line, in order.
    """
    if [data, file, batch].count(None) != 2:
        fail("give the payload with exactly one of --data JSON, --file PATH or --batch PATH")
    if batch is not None:
        _submit_batch(api, batch, content_type, wait, timeout, env_name)
        return
    payload: bytes
    if data is not None:
        try:
            json.loads(data)
        except ValueError as exc:
            fail(f"--data is not valid JSON: {exc}")
        payload, default_type = data.encode(), "application/json"
    else:
        assert file is not None
        try:
            payload = file.read_bytes()
        except OSError as exc:
            raise CortexError(f"{file}: can't read the file: {exc.strerror or exc}") from exc
        default_type = "application/json" if file.suffix == ".json" else "application/octet-stream"
    with open_client(env_name) as cx:
        request_id = cx.submit(api, payload, content_type=content_type or default_type)
        if not wait:
            click.echo(request_id)
            return
        print_json(cx.result(api, request_id, timeout=timeout))


#: file suffixes read as JSON Lines by ``--batch``
_JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def _submit_batch(
    api: str, path: Path, content_type: str | None, wait: bool, timeout: float, env_name: str | None
) -> None:
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise CortexError(f"{path}: can't read the file: {exc.strerror or exc}") from exc
    default_type = "application/x-ndjson" if path.suffix.lower() in _JSON_LINES_SUFFIXES else "application/json"
    with open_client(env_name) as cx:
        ids = cx.submit_batch(api, body, content_type=content_type or default_type)
        for request_id in ids:
            if wait:
                click.echo(json.dumps(cx.result(api, request_id, timeout=timeout)))
            else:
                click.echo(request_id)
