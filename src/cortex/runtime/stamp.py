"""When each log line was written: stamped where a process's output is received, read back by ``cortex logs``.

Lines of several replicas and containers are merged by time, as Kubernetes' ``timestamps=true``
gives them; a line's own text says nothing reliable about when it was written. So a local
process's stdout and stderr go through a pipe to a small stamper (this file, run as a program
with only the standard library, ``python -I -S stamp.py <log file>``), which appends each line to
the log file as ``<RFC 3339 UTC, microseconds> <line>``, the time it was received.

The stamper detaches from its starter (it forks, and the child leads a session of its own) and
ignores SIGTERM, SIGINT and SIGHUP: it lives exactly as long as some process still holds the
pipe's other end, drains what they wrote after being told to stop, and ends when they are all
gone. A cluster killed outright therefore leaves no stamper behind once its leftovers are stopped.
While it runs it holds a shared lock on the log file, so whoever reads what a crashed process said
last can first wait for its stamper to have written all of it (:func:`being_written`).
"""

from __future__ import annotations

import calendar
import fcntl
import os
import re
import signal
import sys
import time

#: a stamp as this module writes it, or Kubernetes' RFC 3339 (nano) one, and the space after it
STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z ")
_READ = 64 * 1024


def stamp(when: float) -> bytes:
    """The stamp of a line received at ``when`` (unix seconds), its trailing space included."""
    seconds = int(when)
    micros = min(999_999, round((when - seconds) * 1_000_000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%06dZ " % micros


def parse(line: str) -> tuple[float | None, str]:
    """``(unix seconds, the line without its stamp)``; ``(None, line)`` for a line with no stamp."""
    match = STAMP.match(line)
    if match is None:
        return None, line
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = float(match.group(7) or 0)
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) + fraction, line[match.end() :]


def stamped(chunk: bytes, at_line_start: bool, when: float) -> tuple[bytes, bool]:
    """``chunk`` with the stamp of ``when`` before each line it starts; and whether it ends a line."""
    mark = stamp(when)
    *ended, rest = chunk.split(b"\n")  # only a newline ends a line: a lone \r (a progress bar) does not
    out = [mark + line + b"\n" if at_line_start or i else line + b"\n" for i, line in enumerate(ended)]
    if rest:
        out.append(mark + rest if at_line_start or ended else rest)
    return b"".join(out), not rest


def copy(source: int, target: int) -> None:
    """Append what ``source`` gives to ``target``, stamped line by line, until its end."""
    at_line_start = True
    while chunk := os.read(source, _READ):
        out, at_line_start = stamped(chunk, at_line_start, time.time())
        while out:
            out = out[os.write(target, out) :]


def being_written(path: str) -> bool:
    """Whether a stamper is still writing to the log file at ``path`` (False if there is no such file)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # and with it the lock, if it was taken
    return False


def main(argv: list[str]) -> None:
    """``stamp.py <log file>``: stamp standard input onto the end of that file, detached from the caller."""
    target = os.open(argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    fcntl.flock(target, fcntl.LOCK_SH)  # before the caller goes on: the lock goes with the descriptor
    if os.fork():  # the caller waits for this parent only; the stamper itself is nobody's child
        os._exit(0)
    os.setsid()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    copy(0, target)


if __name__ == "__main__":
    main(sys.argv)
