"""API keys and tokens: how they are written, kept (as SHA-256 digests) and checked (in constant time).

A key is written either as itself (at least :data:`MIN_KEY_LENGTH` characters) or as its digest
``sha256:<64 hex digits>``; only digests are kept, so a stored spec, a process environment or a
log line never holds a key. A presented key is hashed and compared with every accepted digest by
:func:`hmac.compare_digest`, all of them each time, so the answer takes as long whichever matched.

The gateway's rule (:func:`authorize`): an API needs a key when the cluster has keys or the API
has its own; it then accepts a cluster key, one of its own, or the cluster's internal key (the
one replicas are given for chaining, which alone never makes a key necessary).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import string
from collections.abc import Iterable, Sequence

#: the prefix of a key written as its digest
DIGEST_PREFIX = "sha256:"
#: the shortest key accepted in clear (a digest stands for a key whose length is not known)
MIN_KEY_LENGTH = 16
#: how to make a good key, for error messages
KEY_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

#: request headers that carry credentials: never logged, not stored or forwarded unless the API asks
SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-cortex-api-key"})
#: the header a gateway key may come in instead of ``Authorization: Bearer`` (never stored or forwarded)
API_KEY_HEADER = "x-cortex-api-key"

_HEX = frozenset(string.hexdigits.lower())


def key_digest(key: str) -> str:
    """``sha256:<hex>`` of ``key``."""
    return DIGEST_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def normalize_key(value: str) -> str:
    """The digest of a key written in clear or as ``sha256:<hex>``.

    Raises:
        ValueError: a digest that is not 64 hex digits, or a key that is too short or has blanks.
            The message never repeats the key.
    """
    if value.startswith(DIGEST_PREFIX):
        hex_part = value[len(DIGEST_PREFIX) :].lower()
        if len(hex_part) != 64 or not set(hex_part) <= _HEX:
            raise ValueError(f"a key's digest must be {DIGEST_PREFIX} followed by 64 hex digits")
        return DIGEST_PREFIX + hex_part
    if len(value) < MIN_KEY_LENGTH:
        raise ValueError(f"a key must be at least {MIN_KEY_LENGTH} characters (got {len(value)}); {KEY_HINT}")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError(f"a key must be printable characters without blanks; {KEY_HINT}")
    return key_digest(value)


def normalize_keys(values: Iterable[str]) -> frozenset[str]:
    """:func:`normalize_key` of each value (blank values skipped)."""
    return frozenset(normalize_key(value) for value in values if value.strip())


def matches(presented: str, digests: Iterable[str]) -> bool:
    """Whether ``presented`` is one of the keys whose ``digests`` are given; compares with every one."""
    wanted = key_digest(presented).encode()
    found = False
    for digest in digests:
        found |= hmac.compare_digest(wanted, digest.encode())
    return found


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None if absent or of another scheme."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Access(enum.Enum):
    """The gateway's decision on one request."""

    OPEN = "open"  #: no key is needed
    GRANTED = "granted"  #: a key was needed and an accepted one was given
    MISSING = "missing"  #: a key was needed and none was given (401)
    WRONG = "wrong"  #: a key was needed and the one given is not accepted (403)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRing:
    """The digests of the keys a gateway accepts, besides each API's own.

    Attributes:
        cluster: keys every API accepts; when there is one, every API needs a key.
        internal: keys every API accepts that never make one necessary (the replicas' chaining key).
    """

    cluster: frozenset[str] = frozenset()
    internal: frozenset[str] = frozenset()


def authorize(ring: KeyRing, api_keys: Sequence[str] | frozenset[str], presented: str | None) -> Access:
    """Whether a request to an API whose own key digests are ``api_keys`` may go on."""
    if not ring.cluster and not api_keys:
        return Access.OPEN
    if presented is None:
        return Access.MISSING
    accepted = ring.cluster | ring.internal | frozenset(api_keys)
    return Access.GRANTED if matches(presented, accepted) else Access.WRONG


def without_sensitive(
    headers: Iterable[tuple[str, str]], *, keep: bool = False, also: frozenset[str] = frozenset()
) -> tuple[tuple[str, str], ...]:
    """``headers`` less the :data:`SENSITIVE_HEADERS` (all but ``X-Cortex-API-Key`` when ``keep``) and ``also``."""
    dropped = (frozenset({API_KEY_HEADER}) if keep else SENSITIVE_HEADERS) | also
    return tuple((name, value) for name, value in headers if name.lower() not in dropped)
