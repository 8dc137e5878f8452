"""Which backends only one machine can reach, and the checks that keep them off a cluster of hosts.

SQLite files and blob folders (``sqlite://``, ``file://``, a bare path) are reached through this
machine's filesystem; Redis, PostgreSQL and S3 through the network. A process sharing its queue
and records with other hosts must share its blobs too: a payload over the gateway's inline limit
written to one host's disk is lost to a dequeuer on another (``payload_lost``).
"""

from __future__ import annotations

from cortex.backends import BackendUrls
from cortex.errors import CortexError

#: URL schemes only one machine can share
LOCAL_SCHEMES = ("sqlite", "file")
#: what the blob store of a cluster of hosts can be
_SHARED_BLOBS = "--blobs s3://bucket/prefix?endpoint=... (CORTEX_BLOBS_URL)"


def is_local(url: str) -> bool:
    """Whether only this machine can reach the backend at ``url``."""
    return url.partition(":")[0] in LOCAL_SCHEMES or url.startswith("/")


def check_shared(urls: BackendUrls) -> None:
    """Raise :class:`CortexError` if any backend is one only this machine can reach (for Kubernetes)."""
    for role, url in (("queue", urls.queue), ("store", urls.store), ("blobs", urls.blobs)):
        if is_local(url):
            raise CortexError(
                f"the {role} is {url}, which only this machine can reach; on Kubernetes every pod shares the"
                " backends: set CORTEX_QUEUE_URL and CORTEX_STORE_URL (redis:// or postgresql://) and"
                " CORTEX_BLOBS_URL (s3://)"
            )


def check_blobs_given(urls: BackendUrls, *, blobs_given: bool, role: str) -> None:
    """Raise :class:`CortexError` if the queue and store are shared but the blobs were left to their default.

    The default is a folder of this machine's state directory: with a shared queue and store, the
    process is one of several hosts, and the others could not read its blobs. A ``--blobs`` given
    explicitly, even ``file://`` (a folder every host mounts), is taken as meant.
    """
    if blobs_given or is_local(urls.queue) or is_local(urls.store):
        return
    raise CortexError(
        f"this {role} shares its queue and store ({urls.queue}, {urls.store}) with other hosts, but its blobs"
        f" would default to files on this machine ({urls.blobs}), which the other hosts cannot read: request"
        f" bodies over 64 KiB would be lost to them. Set {_SHARED_BLOBS}, or --blobs file:///<folder> for a"
        " folder every host of the cluster mounts"
    )
