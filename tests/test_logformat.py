"""JSON log lines: the fields, the context given through ``extra=``, and the console switch."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from cortex.logformat import JsonFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("cortex.dequeuer.worker", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_line_is_one_json_object_with_the_context_given() -> None:
    line = JsonFormatter(replica="echo-1").format(
        record("request %s completed", "r1", api="echo", request_id="r1", action="finish")
    )
    data = json.loads(line)
    assert "\n" not in line
    assert data.pop("time").endswith("Z")
    assert data == {
        "level": "info",
        "logger": "cortex.dequeuer.worker",
        "message": "request r1 completed",
        "replica": "echo-1",
        "api": "echo",
        "request_id": "r1",
        "action": "finish",
    }


def test_absent_context_is_left_out_and_an_exception_is_kept() -> None:
    try:
        raise ValueError("bad « value »")
    except ValueError:
        made = logging.LogRecord("x", logging.ERROR, __file__, 1, "crashed", (), sys.exc_info())
    data = json.loads(JsonFormatter().format(made))
    assert set(data) == {"time", "level", "logger", "message", "exception"}
    assert "ValueError: bad « value »" in data["exception"]


SCRIPT = """
import logging
from cortex.cli.options import configure_logging
configure_logging(replica="echo-1")
logging.getLogger("t").debug("hidden")
logging.getLogger("t").warning("shown %s", 1, extra={"request_id": "r9"})
"""


@pytest.mark.parametrize("disable", ["", "true"])
def test_configure_logging_follows_the_environment(disable: str) -> None:
    env = {"CORTEX_LOG_LEVEL": "warning", "CORTEX_DISABLE_JSON_LOGGING": disable, "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    (line,) = result.stderr.splitlines()
    if disable:
        assert line.endswith(" WARNING t: shown 1")
    else:
        data = json.loads(line)
        assert (data["level"], data["message"], data["request_id"], data["replica"]) == (
            "warning",
            "shown 1",
            "r9",
            "echo-1",
        )
