"""``python -m cortex.dequeuer``: one replica's dequeuer, started without the CLI's imports.

The local runtime starts every replica's dequeuer this way. The ``cortex`` command group imports
click, rich and httpx, which a dequeuer never uses and which cost every replica about 5 MB of
resident memory (``docs/benchmarks.md``, scenario (e)). ``cortex dequeuer`` takes the same options
and runs the same code; it stays the documented command for running a dequeuer by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cortex import logformat
from cortex.backends import BackendUrls
from cortex.dequeuer.service import run
from cortex.dequeuer.worker import DequeuerSettings
from cortex.errors import CortexError
from cortex.locality import check_blobs_given


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The options of ``cortex dequeuer``, with the same environment variables for the backends."""
    parser = argparse.ArgumentParser(prog="python -m cortex.dequeuer", description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="Name of the API this replica serves.")
    parser.add_argument("--user-port", type=int, required=True, help="Port the user server listens on.")
    parser.add_argument("--user-host", default="127.0.0.1")
    parser.add_argument("--admin-host", default="127.0.0.1", help="Address /healthz is served on.")
    parser.add_argument("--admin-port", type=int, default=None, help="Serve /healthz on this port (0: any).")
    parser.add_argument("--lease-seconds", type=float, default=30.0, help="Lease visibility timeout.")
    parser.add_argument("--grace-period", type=float, default=30.0, help="Seconds to drain on stop.")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("CORTEX_STATE_DIR", "~/.cortex/state")))
    parser.add_argument("--queue", default=os.environ.get("CORTEX_QUEUE_URL"), help="Queue URL.")
    parser.add_argument("--store", default=os.environ.get("CORTEX_STORE_URL"), help="Record store URL.")
    parser.add_argument("--blobs", default=os.environ.get("CORTEX_BLOBS_URL"), help="Blob store URL.")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace, environ: Mapping[str, str]) -> DequeuerSettings:
    """The dequeuer's settings from its options (and one private knob of the environment)."""
    return DequeuerSettings(
        user_port=args.user_port,
        user_host=args.user_host,
        lease_seconds=args.lease_seconds,
        grace_period=args.grace_period,
        # private, for bench/keepalive.py: the round trip without the TCP_QUICKACK remedy, to measure what it saves
        quick_ack=environ.get("CORTEX_DEQUEUER_QUICKACK", "1") != "0",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dequeuer the arguments describe; the exit status."""
    args = parse(sys.argv[1:] if argv is None else argv)
    logformat.configure_from_environ(replica=os.environ.get("CORTEX_REPLICA_ID") or None)
    urls = BackendUrls.resolve(args.state_dir, queue=args.queue, store=args.store, blobs=args.blobs)
    settings = settings_of(args, os.environ)
    try:
        check_blobs_given(urls, blobs_given=args.blobs is not None, role="dequeuer")
        run(args.api, urls, settings, admin_host=args.admin_host, admin_port=args.admin_port)
    except CortexError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
