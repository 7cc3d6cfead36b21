"""Pure: a scan's targets cut into host groups, nmap's unit of work.

A scan takes its targets a group at a time: discovery of the next group runs
while the current one is port-scanned, and a group's hosts are reported (and
their verdicts folded and let go) when its port scan ends. Memory then follows
the group, not the target list, and the first probe leaves as soon as the
first group is read, however many targets there are.

A group's size depends only on how many ports each host gets, never on what
the network did: every machine of a sharded scan cuts the same groups (each
group's probe space is split alike, so the union of the shards is exact), and a
resumed scan finds its groups where it left them.

    >>> group_size(100), group_size(65535), group_size(3)
    (1310, 2, 4096)
    >>> [len(g) for g in host_groups(iter(range(10)), 4)]
    [4, 4, 2]
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

GROUP_PROBES = 131072
"""About this many probes per group: enough to keep both cores busy and to hide
one group's discovery behind the previous group's port scan, few enough that a
group's verdicts stay a small, fixed amount of memory."""

MAX_GROUP_HOSTS = 4096
"""Even with one port per host: a group's discovery and per-host state stay bounded."""


def group_size(ports_per_host: int) -> int:
    """Hosts per group for a scan of ``ports_per_host`` ports on each host."""
    if ports_per_host <= 0:  # discovery only (-sn): the group bounds discovery's state
        return MAX_GROUP_HOSTS
    return max(1, min(MAX_GROUP_HOSTS, GROUP_PROBES // ports_per_host))


def host_groups(targets: Iterator[T], size: int) -> Iterator[list[T]]:
    """``targets`` in consecutive lists of ``size`` (the last may be shorter), read
    lazily: a group is taken from ``targets`` only when it is asked for."""
    while group := list(islice(targets, size)):
        yield group
