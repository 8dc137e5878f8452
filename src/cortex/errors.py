"""The exceptions cortex raises.

Every error is a :class:`CortexError`; its message says what was wrong and, where it can, what
to do. Driver errors are kept as ``__cause__``.

    CortexError
    ├── SpecError            an API configuration is invalid (names file, API and field)
    ├── BackendError         a queue, store or blob backend failed or is unavailable
    │   └── BackendUnavailable   an optional driver is not installed (says what to install)
    ├── NotFound             an API or a request does not exist (or has expired)
    ├── RequestFailed        a request ended failed or cancelled (client.result)
    ├── ResultTimeout        a wait ran past its deadline (client.result)
    ├── ClusterUnavailable   the cluster cannot be reached (says how to start it)
    ├── AccessDenied         a gateway key or the operator token is missing or wrong (says where to set it)
    └── CortexBinaryException  a ``cortex`` command run by ``cortex.run_cli`` failed (Cortex's name)
"""

from __future__ import annotations


class CortexError(Exception):
    """Root of every error raised by cortex."""


class SpecError(CortexError):
    """An API configuration is invalid; the message names the file, the API and the field."""


class BackendError(CortexError):
    """A queue, store or blob backend failed."""


class BackendUnavailable(BackendError):
    """A backend's optional driver is not installed."""


class NotFound(CortexError):
    """An API or a request does not exist, or has expired."""


class RequestFailed(CortexError):
    """A request ended ``failed`` or ``cancelled``."""

    def __init__(self, message: str, *, status: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class ResultTimeout(CortexError):
    """A wait for a result ran past its deadline."""


class ClusterUnavailable(CortexError):
    """The cluster's operator or gateway cannot be reached."""


class AccessDenied(CortexError):
    """The gateway or the operator answered 401 or 403: a key or token is missing or wrong."""


class CortexBinaryException(CortexError):
    """A ``cortex`` command run by :func:`cortex.run_cli` exited non-zero; the message is its stderr."""
