"""Request ids: minted by the gateway, opaque, URL-safe, unguessable and time-sortable.

An id is 128 bits: 48 bits of Unix milliseconds followed by 80 random bits, written as 26
characters of lowercase Crockford base32 (the ULID layout). Sorting ids as strings sorts them by
creation time; 80 random bits keep them unguessable (DESIGN §2 asks for at least 72).
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
#: the shape of an id, as a regular expression (also in the gateway's OpenAPI document)
ID_PATTERN = r"^[0-9a-hjkmnp-tv-z]{26}$"
_ID_RE = re.compile(ID_PATTERN)


def new_id(now: float | None = None) -> str:
    """Mint a new request id (``now`` is for tests; defaults to the current time)."""
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_valid_id(text: str) -> bool:
    """Whether ``text`` has the shape of an id this gateway mints (cheap check before any lookup)."""
    return _ID_RE.fullmatch(text) is not None  # not match: its $ would accept a trailing newline
