"""The gateway's OpenAPI document, and schemathesis run against it on a real gateway process.

schemathesis generates requests from the document served at ``/openapi.json`` (valid ones and,
in negative mode, invalid ones) and checks every answer: no 5xx, and every status code, content
type, header and body as the document says. Its examples are bounded to keep the run short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from cortex.gateway.openapi import openapi_document
from tests.gateway.live import live_gateway
from tests.helpers import api_yaml

APIS = [
    api_yaml("echo", extra="async: {max_payload_size: 4Ki}"),
    api_yaml("nested", extra="networking: {endpoint: /team/nested}"),
]


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_gateway(tmp_path_factory.mktemp("openapi"), APIS, "--body-timeout", "5") as url:
        yield url


def _schema(endpoint: str | None = None) -> schemathesis.BaseSchema:
    """The document as the gateway serves it (test_the_served_document_is_this_one), loaded at import:
    schemathesis's fixture-based loading does not run on pytest 9. ``endpoint`` pins that parameter."""
    config = SchemathesisConfig.from_dict(
        {
            "parameters": {} if endpoint is None else {"endpoint": endpoint},
            # no example database: every run starts afresh, and leaves no .hypothesis/ behind
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
            # DELETE cancels: the request stays readable, with status "cancelled" (DESIGN §2)
            "checks": {"use_after_free": {"enabled": False}},
            # schemathesis 4.32's coverage phase takes a header pattern that needs ':' or '/' (the webhook
            # URL's) for one no header can carry, then sends the placeholder "0" as a valid value: the
            # check that valid submissions are accepted is left to the tests of test_gateway.py (and of
            # test_batch.py for batches)
            "operations": [
                {"include-operation-id": name, "checks": {"positive_data_acceptance": {"enabled": False}}}
                for name in ("submit", "submit_batch")
            ],
        }
    )
    return schemathesis.openapi.from_dict(openapi_document(), config=config)


@schemathesis.serializer("application/x-ndjson", "application/jsonl")
def json_lines(context: Any, value: Any) -> bytes:
    """A batch's payloads as JSON Lines (the document describes them as the array they are); what is no
    array (negative mode) has no JSON Lines form, and is sent as a body without a payload."""
    if not isinstance(value, list):
        return b""
    return b"".join(json.dumps(item).encode() + b"\n" for item in value)


#: per operation and generation mode; bounds the run to about 20 s
MAX_EXAMPLES = 25
#: sequences of calls the state machine tries
STATEFUL_EXAMPLES = 10
any_endpoint = _schema()
#: the deployed APIs' routes, where submissions are stored and queued
echo = _schema("echo").include(path_regex=r"^/\{endpoint\}")
nested = _schema("team/nested").include(path_regex=r"^/\{endpoint\}")


@any_endpoint.parametrize()
def test_any_path_answers_as_documented(case: schemathesis.Case[Any], gateway_url: str) -> None:
    case.call_and_validate(base_url=gateway_url)


def without_waits(case: schemathesis.Case[Any]) -> None:
    """No ``Prefer: wait`` nor ``?wait=``: with no dequeuer, a wait on a real request lasts all of it
    (tests/gateway/test_wait.py tests the waits)."""
    for name in [name for name in case.headers or {} if name.lower() == "prefer"]:
        del case.headers[name]
    if case.query:
        case.query.pop("wait", None)


def with_unknown_header(case: schemathesis.Case[Any]) -> bool:
    """A case whose only fault is a header the document does not name: HTTP servers ignore unknown headers,
    and so does the gateway (schemathesis's coverage phase makes these once a header is an integer)."""
    return any(name.lower() in _UNKNOWN_HEADERS for name in case.headers or {})


_UNKNOWN_HEADERS = {"x-schemathesis-unknown-property", "schemathesis-unknown-property", "unknown-property-0"}


@echo.parametrize()
def test_a_deployed_api_answers_as_documented(case: schemathesis.Case[Any], gateway_url: str) -> None:
    without_waits(case)
    if not with_unknown_header(case):
        case.call_and_validate(base_url=gateway_url)


@nested.parametrize()
def test_a_nested_endpoint_answers_as_documented(case: schemathesis.Case[Any], gateway_url: str) -> None:
    without_waits(case)
    if not with_unknown_header(case):
        case.call_and_validate(base_url=gateway_url)


def test_the_served_document_is_this_one(gateway_url: str) -> None:
    assert httpx.get(f"{gateway_url}/openapi.json").json() == openapi_document()


def test_the_document_lists_every_route(gateway_url: str) -> None:
    document = httpx.get(f"{gateway_url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    operations = {
        (path, method) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    assert operations == {
        ("/{endpoint}", "post"),
        ("/{endpoint}/{id}", "get"),
        ("/{endpoint}/{id}", "delete"),
        ("/{endpoint}/{id}/events", "get"),
        ("/{endpoint}/purge", "post"),
        ("/{endpoint}/batch", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    }


def test_submitted_requests_are_read_and_cancelled_as_documented(gateway_url: str) -> None:
    """The document's links (submit -> status, cancel) walked by schemathesis's state machine: real ids."""

    class Machine(echo.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case[Any]) -> None:
            case.path_parameters = {**(case.path_parameters or {}), "endpoint": "echo"}  # the state machine
            # does not apply the configured parameters
            without_waits(case)

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"base_url": gateway_url}

    Machine.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, deadline=None, database=None
        )
    )
