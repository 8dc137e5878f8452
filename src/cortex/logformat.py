"""Log lines as JSON objects, one a line, for log shippers (reference §9.3), from the stdlib only.

Each line has ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``message``, and, when a call
passes them through ``extra=``, ``api``, ``request_id``, ``replica`` and ``action``; a process's
replica id can be given once, to the formatter, and is then on every line. An exception's
traceback goes in ``exception``. ``CORTEX_DISABLE_JSON_LOGGING=true`` keeps the console format.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from cortex.requests import rfc3339

#: the context a log call may pass through ``extra=``, written when present
CONTEXT_FIELDS = ("api", "request_id", "replica", "action")
#: the console format, when JSON is turned off
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object.

    Args:
        replica: The replica id of this process, written on every line that does not name one.
    """

    def __init__(self, replica: str | None = None) -> None:
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.replica is not None:
            line["replica"] = self.replica
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, *, json_lines: bool, replica: str | None = None) -> None:
    """Send the root logger's records at ``level`` and above to stderr, as JSON lines or console text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(replica) if json_lines else logging.Formatter(CONSOLE_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def configure_from_environ(*, replica: str | None = None) -> None:
    """Log to stderr at ``CORTEX_LOG_LEVEL`` (default INFO), as JSON lines unless ``CORTEX_DISABLE_JSON_LOGGING=true``.

    ``replica`` (a dequeuer's ``CORTEX_REPLICA_ID``) is written on every line.
    """
    level = os.environ.get("CORTEX_LOG_LEVEL", "INFO")
    console = os.environ.get("CORTEX_DISABLE_JSON_LOGGING", "").strip().lower() in ("1", "true", "yes")
    configure(level, json_lines=not console, replica=replica)
