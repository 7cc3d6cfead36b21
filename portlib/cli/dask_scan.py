"""``portlib scan --dask-scheduler tcp://HOST:PORT [--shards N]``: the scan as Dask shards.

The flags mean what they mean for a scan in this process; the targets are resolved
here, the shards run on the cluster's workers (:mod:`portlib.distributed`), and the
merged report goes to the same outputs, written whole when the shards are done
(:mod:`portlib.cli.merged_outputs`): ``--jsonl`` and ``-v`` see the verdicts then, not
as each is decided, since they are decided on the workers.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from portlib.errors import ScanError

if TYPE_CHECKING:
    from distributed import Client

    from portlib.model import ScanReport
    from portlib.scanning.options import ScanOptions
    from portlib.targets import TargetSet

CONNECT_TIMEOUT_S = 5  # to reach the scheduler: an unreachable one is an error by then


def check_dask_flags(args: argparse.Namespace) -> None:
    """Refuse what cannot go with a scan on Dask, before the cluster is asked anything."""
    if args.dask_scheduler is None:
        raise ScanError("--shards N goes with --dask-scheduler (use --shard I/N for one part)")
    if args.shard is not None:
        raise ScanError(
            "--shard I/N is one part of a scan; with --dask-scheduler give --shards N "
            "and the workers run all of them"
        )
    if args.stats_every is not None:
        raise ScanError("--stats-every watches a scan in this process; with --dask-scheduler "
                        "the shards run on the workers")  # fmt: skip


def run_on_dask(
    args: argparse.Namespace, targets: TargetSet, ports: Any, options: ScanOptions
) -> ScanReport:
    """The scan of ``targets`` x ``ports`` (a spec, a PortList or None) with the Scanner
    ``options`` the flags gave, as shards on the cluster at ``--dask-scheduler``."""
    import portlib.distributed

    portlib.distributed.require_dask()
    del options["shard"], options["on_progress"]  # refused above; the shards are ours
    with _client(args.dask_scheduler) as client:
        return portlib.distributed.scan(
            targets, ports, client=client, shards=args.shards, **options
        )


def _client(address: str) -> Client:
    """A client of the scheduler at ``address``, or one line saying why there is none."""
    from distributed import Client as DaskClient

    _check_address(address)
    untyped: Any = DaskClient  # distributed leaves Client's constructor untyped
    try:
        client: Client = untyped(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ScanError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    return client


def _check_address(address: str) -> None:
    """Refuse a malformed address up front: a Client that fails on one lingers at exit."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends

    try:
        scheme, location = parse_address(address)
        parse_host_port(location)
    except ValueError as exc:
        raise ScanError(f"--dask-scheduler {address}: {exc} (give tcp://HOST:PORT)") from None
    if scheme not in backends:
        known = ", ".join(f"{name}://" for name in sorted(backends))
        raise ScanError(f"--dask-scheduler {address}: unknown scheme {scheme!r} (known: {known})")
