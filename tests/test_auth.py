"""Keys and tokens: how they are written, kept and checked; the gateway's access rule as a table."""

from __future__ import annotations

import hashlib
import re

import pytest

from cortex.auth import (
    Access,
    KeyRing,
    authorize,
    bearer,
    key_digest,
    matches,
    normalize_key,
    normalize_keys,
    without_sensitive,
)

CLUSTER = "cluster-key-0123456789"
INTERNAL = "internal-key-0123456789"
OWN = "own-api-key-0123456789"


def test_a_key_is_kept_as_its_sha256_digest() -> None:
    digest = "sha256:" + hashlib.sha256(CLUSTER.encode()).hexdigest()
    assert key_digest(CLUSTER) == digest
    assert normalize_key(CLUSTER) == digest
    assert normalize_key(digest.upper().replace("SHA256:", "sha256:")) == digest  # hex case does not matter
    assert normalize_keys([CLUSTER, " ", digest]) == {digest}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("short-key", "at least 16 characters (got 9)"),
        ("sixteen chars ok!", "without blanks"),
        ("sha256:abc", "64 hex digits"),
        ("sha256:" + "g" * 64, "64 hex digits"),
    ],
)
def test_a_bad_key_is_refused_without_being_repeated(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        normalize_key(value)
    assert value not in str(caught.value)


def test_matches_compares_digests() -> None:
    digests = [key_digest(OWN), key_digest(CLUSTER)]
    assert matches(CLUSTER, digests)
    assert not matches(CLUSTER + "x", digests)
    assert not matches(CLUSTER, [])


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("abc", None),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


RING = KeyRing(cluster=frozenset({key_digest(CLUSTER)}), internal=frozenset({key_digest(INTERNAL)}))
INTERNAL_ONLY = KeyRing(internal=frozenset({key_digest(INTERNAL)}))
OWN_KEYS = frozenset({key_digest(OWN)})


@pytest.mark.parametrize(
    ("ring", "api_keys", "presented", "access"),
    [
        # no key anywhere: open, whatever is sent
        (KeyRing(), frozenset(), None, Access.OPEN),
        (KeyRing(), frozenset(), "anything-at-all-here", Access.OPEN),
        # the internal key alone never makes a key necessary
        (INTERNAL_ONLY, frozenset(), None, Access.OPEN),
        # cluster keys: every API needs one; cluster and internal keys are accepted
        (RING, frozenset(), None, Access.MISSING),
        (RING, frozenset(), CLUSTER, Access.GRANTED),
        (RING, frozenset(), INTERNAL, Access.GRANTED),
        (RING, frozenset(), OWN, Access.WRONG),
        # an API's own keys: needed even without cluster keys; the internal key still passes
        (INTERNAL_ONLY, OWN_KEYS, None, Access.MISSING),
        (INTERNAL_ONLY, OWN_KEYS, OWN, Access.GRANTED),
        (INTERNAL_ONLY, OWN_KEYS, INTERNAL, Access.GRANTED),
        (INTERNAL_ONLY, OWN_KEYS, CLUSTER, Access.WRONG),
        # both: either kind passes
        (RING, OWN_KEYS, OWN, Access.GRANTED),
        (RING, OWN_KEYS, CLUSTER, Access.GRANTED),
        (RING, OWN_KEYS, "not-a-key-of-anyone", Access.WRONG),
    ],
)
def test_authorize(ring: KeyRing, api_keys: frozenset[str], presented: str | None, access: Access) -> None:
    assert authorize(ring, api_keys, presented) is access


def test_without_sensitive() -> None:
    headers = [
        ("Authorization", "Bearer x"),
        ("Cookie", "a=b"),
        ("Proxy-Authorization", "Basic y"),
        ("X-Cortex-API-Key", "k"),
        ("Content-Type", "text/plain"),
    ]
    assert without_sensitive(headers) == (("Content-Type", "text/plain"),)
    # an API that forwards them keeps all but the gateway's own key header
    assert [name for name, _ in without_sensitive(headers, keep=True)] == [
        "Authorization",
        "Cookie",
        "Proxy-Authorization",
        "Content-Type",
    ]
    assert [name for name, _ in without_sensitive(headers, keep=True, also=frozenset({"authorization"}))] == [
        "Cookie",
        "Proxy-Authorization",
        "Content-Type",
    ]
