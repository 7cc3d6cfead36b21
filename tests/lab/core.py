"""The lab: a scanner namespace with a bridge, and target hosts in their own namespaces.

See tests/lab/README.md for the topology, addresses and how to debug a lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.lab import netns
from tests.lab.netns import LabError, LabTimeout
from tests.lab.procs import REPO_ROOT, Helper, parent_watch_args, python_env, python_module_argv

BRIDGE_V4 = ipaddress.IPv4Network("192.0.2.0/25")
BRIDGE_V6 = ipaddress.IPv6Network("2001:db8::/64")
DELAYED_V4 = ipaddress.IPv4Network("192.0.2.128/25")
DELAYED_V6 = ipaddress.IPv6Network("2001:db8:1::/64")
SCANNER_V4 = ipaddress.IPv4Address("192.0.2.1")
SCANNER_V6 = ipaddress.IPv6Address("2001:db8::1")

_HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")  # "v-" + name must fit IFNAMSIZ (15)
_REJECT_WITH = {  # name accepted here -> (iptables spelling, ip6tables spelling)
    "icmp-admin-prohibited": ("icmp-admin-prohibited", "icmp6-adm-prohibited"),
    "icmp-port-unreachable": ("icmp-port-unreachable", "icmp6-port-unreachable"),
    "icmp-host-unreachable": ("icmp-host-unreachable", "icmp6-addr-unreachable"),
    "icmp-net-unreachable": ("icmp-net-unreachable", "icmp6-no-route"),
    "tcp-reset": ("tcp-reset", "tcp-reset"),
}
_PROTOS = ("tcp", "udp")
_MULTIPORT_MAX = 15  # iptables multiport: at most 15 ports, a range counts as two


def lab_available() -> str | None:
    """Why a lab cannot be built here (a pytest skip reason), or None when it can."""
    if sys.platform != "linux":
        return "the lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth, iptables)"
    for tool in ("ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool!r} (apt-get install iproute2 iptables)"
    if not os.path.exists("/dev/net/tun"):
        return "the lab needs /dev/net/tun for its delay link"
    return None


def keep_requested() -> bool:
    """PORTLIB_LAB_KEEP=1 leaves the lab in place at exit, for debugging."""
    return os.environ.get("PORTLIB_LAB_KEEP", "").lower() in {"1", "true", "yes"}


class _Node:
    """Commands inside one namespace: exec, iptables, sysctl."""

    ns: str

    def exec(
        self, argv: Sequence[str], *, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this namespace; LabError when it fails and ``check`` is set.

        PYTHONPATH includes this checkout, so ``python -m portlib`` works in there."""
        full = netns.ns_argv(self.ns, argv)
        if check:
            return netns.run(full, timeout=timeout, env=python_env())
        try:
            return subprocess.run(
                full, capture_output=True, text=True, timeout=timeout, env=python_env()
            )
        except subprocess.TimeoutExpired as exc:
            raise LabTimeout(f"timed out after {timeout:g} s: {' '.join(full)}") from exc

    def iptables(self, *args: str) -> subprocess.CompletedProcess[str]:
        return netns.ns_run(self.ns, ["iptables", "-w", *args])

    def ip6tables(self, *args: str) -> subprocess.CompletedProcess[str]:
        return netns.ns_run(self.ns, ["ip6tables", "-w", *args])

    def sysctl(self, key: str, value: str | int) -> None:
        netns.sysctl(self.ns, {key: str(value)})


class LabHost(_Node):
    """A target host: its own namespace, reachable from the scanner at ``v4`` and ``v6``."""

    def __init__(
        self,
        lab: Lab,
        name: str,
        ns: str,
        v4: ipaddress.IPv4Address,
        v6: ipaddress.IPv6Address,
        *,
        delayed: bool,
    ):
        self.lab = lab
        self.name = name
        self.ns = ns
        self.v4 = v4
        self.v6 = v6
        self.delayed = delayed
        self._loss_rules: list[tuple[int, list[str]]] = []

    def __repr__(self) -> str:
        return f"LabHost({self.name!r}, ns={self.ns!r}, v4={self.v4}, v6={self.v6})"

    # --- servers ------------------------------------------------------------------------

    def serve_tcp(
        self, ports: Iterable[int], *, keep: bool = False, banner: str | None = None
    ) -> Helper:
        """Listen on ``ports`` (v4 and v6); accept and close each connection (or ``keep`` it).

        Returns the server process handle; ``.stop()`` ends it early, the lab ends it anyway.
        """
        args = ["--tcp", ",".join(str(p) for p in _check_ports(ports))]
        if keep:
            args.append("--keep")
        if banner is not None:
            args += ["--banner", banner]
        return self._serve(args)

    def serve_udp(self, responders: Mapping[int, str]) -> Helper:
        """UDP responders by port: ``"echo"``, ``"dns"`` (answers A/AAAA with this host's
        addresses) or ``"ntp"`` (server replies to client requests), on v4 and v6."""
        for kind in responders.values():
            if kind not in ("echo", "dns", "ntp"):
                raise ValueError(f"unknown UDP responder {kind!r}: use echo, dns or ntp")
        ports = _check_ports(responders)
        spec = ",".join(f"{p}:{k}" for p, k in zip(ports, responders.values(), strict=True))
        return self._serve(["--udp", spec, "--v4", str(self.v4), "--v6", str(self.v6)])

    def _serve(self, args: list[str]) -> Helper:
        argv = python_module_argv(
            self.ns, "tests.lab.serve", [*args, *parent_watch_args(self.lab.keep)], stdlib_only=True
        )
        return self.lab._start_helper(argv, f"serve-{self.name}")

    # --- filters ------------------------------------------------------------------------

    def drop(self, ports: Iterable[int], proto: str = "tcp") -> None:
        """Silently drop packets to ``ports`` (v4 and v6): the ports look filtered."""
        self._filter(ports, proto, ("DROP", "DROP"))

    def reject(
        self, ports: Iterable[int], proto: str = "tcp", with_: str = "icmp-admin-prohibited"
    ) -> None:
        """Reject packets to ``ports`` with an ICMP error or a TCP reset (v4 and v6)."""
        try:
            v4_how, v6_how = _REJECT_WITH[with_]
        except KeyError:
            raise ValueError(
                f"unknown reject {with_!r}; known: {', '.join(_REJECT_WITH)}"
            ) from None
        if with_ == "tcp-reset" and proto != "tcp":
            raise ValueError("tcp-reset only applies to proto='tcp'")
        self._filter(
            ports, proto, (f"REJECT --reject-with {v4_how}", f"REJECT --reject-with {v6_how}")
        )

    def _filter(self, ports: Iterable[int], proto: str, targets: tuple[str, str]) -> None:
        if proto not in _PROTOS:
            raise ValueError(f"proto must be one of {_PROTOS}, not {proto!r}")
        chunks = _multiport_chunks(_check_ports(ports))
        for family, target in zip((4, 6), targets, strict=True):
            rules = [f"-A INPUT -p {proto} -m multiport --dports {c} -j {target}" for c in chunks]
            netns.iptables_restore(self.ns, family, rules)

    def loss(self, probability: float) -> None:
        """Drop each packet in and out of this host with ``probability`` (iptables statistic).

        A later call replaces the earlier rate; ``loss(0)`` removes it.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"loss probability must be within 0..1, not {probability!r}")
        for family, spec in self._loss_rules:
            tool = self.iptables if family == 4 else self.ip6tables
            tool("-D", *spec)
        self._loss_rules = []
        if probability == 0:
            return
        stat = ["-m", "statistic", "--mode", "random", "--probability", f"{probability:.6f}"]
        specs = [
            ["INPUT", "!", "-i", "lo", *stat, "-j", "DROP"],
            ["OUTPUT", "!", "-o", "lo", *stat, "-j", "DROP"],
        ]
        for family in (4, 6):
            tool = self.iptables if family == 4 else self.ip6tables
            for spec in specs:
                tool("-I", spec[0], "1", *spec[1:])
                self._loss_rules.append((family, spec))


class Lab(_Node):
    """Scanner namespace + bridge; ``add_host``/``add_delayed_host`` add targets.

    Use as a context manager: everything it created is removed on exit, also after an
    exception. ``PORTLIB_LAB_KEEP=1`` keeps it for inspection (see README.md).
    """

    def __init__(self, *, keep: bool | None = None):
        self.keep = keep_requested() if keep is None else keep
        self.lab_id = netns.new_lab_id()
        self.scanner_ns = self.ns = f"{self.lab_id}-scan"
        self.scanner_v4 = SCANNER_V4
        self.scanner_v6 = SCANNER_V6
        self.hosts: dict[str, LabHost] = {}
        self.dir = Path()
        self._stack = contextlib.ExitStack()
        self._helpers: list[Helper] = []
        self._started = False

    def __repr__(self) -> str:
        return f"Lab({self.lab_id!r}, hosts={list(self.hosts)})"

    # --- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Lab:
        reason = lab_available()
        if reason:
            raise LabError(reason)
        if self._started:
            raise LabError("this Lab is already started")
        self._started = True
        try:
            netns.clean_stale()
            self.dir = Path(tempfile.mkdtemp(prefix=f"{self.lab_id}-"))
            if not self.keep:
                self._stack.callback(shutil.rmtree, self.dir, ignore_errors=True)
            self._add_namespace(self.scanner_ns)
            netns.ip_batch(
                self.scanner_ns,
                [
                    "link set lo up",
                    "link add br0 type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
                    f"addr add {SCANNER_V4}/{BRIDGE_V4.prefixlen} dev br0",
                    f"addr add {SCANNER_V6}/{BRIDGE_V6.prefixlen} dev br0 nodad",
                    "link set br0 up",
                ],
            )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every helper and delete every namespace of this lab (unless kept)."""
        if self.keep:
            names = [self.scanner_ns, *(h.ns for h in self.hosts.values())]
            print(f"PORTLIB_LAB_KEEP: left {', '.join(names)}; logs in {self.dir}", file=sys.stderr)
            self._stack.pop_all()
            return
        try:
            self._stop_helpers()  # before their namespaces go
        finally:
            self._stack.close()

    def _add_namespace(self, ns: str) -> None:
        netns.add_namespace(ns)
        self._stack.callback(netns.delete_namespace, ns)

    def _start_helper(self, argv: list[str], label: str) -> Helper:
        log = self.dir / f"{label}-{len(self._helpers)}.log"
        helper = Helper(argv, log)
        self._helpers.append(helper)
        return helper

    def _stop_helpers(self) -> None:
        for helper in self._helpers:
            helper.terminate()  # all at once, then wait for each
        for helper in reversed(self._helpers):
            helper.stop()
        self._helpers.clear()

    # --- hosts --------------------------------------------------------------------------

    def add_host(self, name: str, v4: str | None = None, v6: str | None = None) -> LabHost:
        """A target joined to the scanner's bridge by a veth pair (addresses in
        192.0.2.0/25 and 2001:db8::/64; picked for you when not given)."""
        ip4, ip6 = self._addresses(name, v4, v6, BRIDGE_V4, BRIDGE_V6, first=10)
        host = LabHost(self, name, f"{self.lab_id}-{name}", ip4, ip6, delayed=False)
        self._add_namespace(host.ns)
        netns.ip_batch(
            self.scanner_ns,
            [
                f"link add v-{name} type veth peer name eth0 netns {host.ns}",
                f"link set v-{name} master br0 up",
            ],
        )
        netns.ip_batch(
            host.ns,
            [
                "link set lo up",
                f"addr add {ip4}/{BRIDGE_V4.prefixlen} dev eth0",
                f"addr add {ip6}/{BRIDGE_V6.prefixlen} dev eth0 nodad",
                "link set eth0 up",
            ],
        )
        self.hosts[name] = host
        return host

    def add_delayed_host(
        self,
        name: str,
        v4: str | None = None,
        v6: str | None = None,
        *,
        delay: float = 0.05,
        jitter: float = 0.0,
        loss: float = 0.0,
        reorder: float = 0.0,
        distribution: str = "uniform",
        seed: int | None = None,
    ) -> LabHost:
        """A target behind the userspace delay link (addresses in 192.0.2.128/25 and
        2001:db8:1::/64). ``delay`` ± ``jitter`` is the added round trip (half each
        way); ``loss`` and ``reorder`` are per-packet probabilities in each direction."""
        for label, value in (("loss", loss), ("reorder", reorder)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be within 0..1, not {value!r}")
        if delay < 0 or jitter < 0:
            raise ValueError("delay and jitter must not be negative")
        if distribution not in ("uniform", "normal"):
            raise ValueError("distribution must be 'uniform' or 'normal'")
        ip4, ip6 = self._addresses(name, v4, v6, DELAYED_V4, DELAYED_V6, first=2)
        host = LabHost(self, name, f"{self.lab_id}-{name}", ip4, ip6, delayed=True)
        self._add_namespace(host.ns)
        near = f"d-{name}"
        netns.run(["ip", "-n", self.scanner_ns, "tuntap", "add", "dev", near, "mode", "tun"])
        netns.run(["ip", "-n", host.ns, "tuntap", "add", "dev", "tun0", "mode", "tun"])
        args = [
            "--near", near, "--far-ns", host.ns, "--far", "tun0",
            "--delay", repr(delay), "--jitter", repr(jitter), "--loss", repr(loss),
            "--reorder", repr(reorder), "--distribution", distribution,
            *(["--seed", str(seed)] if seed is not None else []),
            *parent_watch_args(self.keep),
        ]  # fmt: skip
        relay = python_module_argv(self.scanner_ns, "tests.lab.link", args, stdlib_only=True)
        self._start_helper(relay, f"link-{name}")
        netns.ip_batch(
            self.scanner_ns,
            [
                f"link set {near} up txqueuelen 10000",
                f"route add {ip4}/32 dev {near} src {SCANNER_V4}",
                f"route add {ip6}/128 dev {near} src {SCANNER_V6}",
            ],
        )
        netns.ip_batch(
            host.ns,
            [
                "link set lo up",
                "link set tun0 up txqueuelen 10000",
                f"addr add {ip4}/32 dev tun0",
                f"addr add {ip6}/128 dev tun0 nodad",
                f"route add {BRIDGE_V4} dev tun0 src {ip4}",
                f"route add {BRIDGE_V6} dev tun0 src {ip6}",
            ],
        )
        self.hosts[name] = host
        return host

    def _addresses(
        self,
        name: str,
        v4: str | None,
        v6: str | None,
        net4: ipaddress.IPv4Network,
        net6: ipaddress.IPv6Network,
        *,
        first: int,
    ) -> tuple[ipaddress.IPv4Address, ipaddress.IPv6Address]:
        if not _HOST_NAME.match(name) or name == "scan":
            raise ValueError(
                f"host name {name!r}: use 1-12 lowercase letters/digits, starting with a letter"
            )
        if name in self.hosts:
            raise ValueError(f"host {name!r} already exists in this lab")
        used = {SCANNER_V4, SCANNER_V6} | {a for h in self.hosts.values() for a in (h.v4, h.v6)}
        if v4 is None:
            free = (net4.network_address + i for i in range(first, net4.num_addresses - 1))
            ip4 = next(a for a in free if a not in used and a != net4.broadcast_address)
        else:
            ip4 = ipaddress.IPv4Address(v4)
        if v6 is None:
            ip6 = ipaddress.IPv6Address(f"{net6.network_address}{int(ip4) & 0xFF}")
        else:
            ip6 = ipaddress.IPv6Address(v6)
        if ip4 not in net4 or ip4 in (net4.network_address, net4.broadcast_address):
            raise ValueError(f"{ip4} is not a host address of {net4}")
        if ip6 not in net6 or ip6 == net6.network_address:
            raise ValueError(f"{ip6} is not a host address of {net6}")
        for addr in (ip4, ip6):
            if addr in used:
                raise ValueError(f"{addr} is already used in this lab")
        return ip4, ip6

    # --- running code in the scanner namespace ------------------------------------------

    async def acall(
        self, target: str | Callable[..., Any], *args: Any, timeout_s: float = 120.0, **kwargs: Any
    ) -> Any:
        """:meth:`call` for async tests: runs it in a worker thread."""
        return await asyncio.to_thread(self.call, target, *args, timeout_s=timeout_s, **kwargs)

    def call(self, target: str | Callable[..., Any], *args: Any, timeout_s: float = 120.0,
             **kwargs: Any) -> Any:  # fmt: skip
        """Call ``target`` (a dotted name, or a module-level function) in a fresh Python
        inside the scanner namespace and return its (pickled) result; a coroutine result
        is awaited there. An exception raised there is raised here, with the remote
        traceback as a note. ``timeout_s`` bounds the whole call."""
        dotted = target if isinstance(target, str) else _dotted_name(target)
        argv = python_module_argv(self.scanner_ns, "tests.lab.runner", [])
        payload = pickle.dumps((dotted, args, kwargs))
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
            env=python_env(),
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(payload, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            netns.kill_group(proc.pid)
            proc.communicate()
            raise LabTimeout(f"lab.call({dotted}) ran past timeout_s={timeout_s:g}") from None
        finally:
            netns.kill_group(proc.pid)  # anything the callable left running in its group
        if err:
            sys.stderr.write(err.decode(errors="replace"))
        if not out:
            raise LabError(
                f"lab.call({dotted}): runner exited with {proc.returncode} and no result\n"
                + err.decode(errors="replace")[-3000:]
            )
        try:
            kind, value, *rest = pickle.loads(out)
        except Exception as exc:
            raise LabError(f"lab.call({dotted}): cannot unpickle the result: {exc!r}") from exc
        if kind == "ok":
            return value
        if rest and rest[0] and isinstance(value, BaseException):
            value.add_note(f"raised in the lab's scanner namespace:\n{rest[0]}")
        raise value


def _dotted_name(func: Callable[..., Any]) -> str:
    """Where the runner can import ``func`` from (a script run with -m is __main__ here)."""
    module = func.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise LabError(
                f"lab.call({func.__qualname__}): functions of a script run by path cannot be "
                "imported in the lab; run it with python -m, or pass a dotted name"
            )
        module = spec.name
    if "<locals>" in func.__qualname__:
        raise LabError(f"lab.call({func.__qualname__}): use a module-level function")
    return f"{module}.{func.__qualname__}"


def _check_ports(ports: Iterable[int]) -> list[int]:
    result = [int(p) for p in ports]
    if not result:
        raise ValueError("no ports given")
    bad = [p for p in result if not 0 < p < 65536]
    if bad:
        raise ValueError(f"ports must be 1-65535, got {bad[:5]}")
    return result


def _multiport_chunks(ports: Sequence[int]) -> list[str]:
    """``--dports`` values covering ``ports``: ranges merged, at most 15 slots per rule."""
    spans: list[tuple[int, int]] = []
    for p in sorted(set(ports)):
        if spans and spans[-1][1] == p - 1:
            spans[-1] = (spans[-1][0], p)
        else:
            spans.append((p, p))
    chunks: list[list[str]] = [[]]
    weight = 0
    for lo, hi in spans:
        cost = 1 if lo == hi else 2
        if weight + cost > _MULTIPORT_MAX:
            chunks.append([])
            weight = 0
        chunks[-1].append(str(lo) if lo == hi else f"{lo}:{hi}")
        weight += cost
    return [",".join(c) for c in chunks]
