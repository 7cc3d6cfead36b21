"""Measure the lab itself: build time, delay-link accuracy and throughput.

    python -m tests.lab.measure            # needs root; prints a small report

Numbers go into tests/lab/README.md; nothing here is asserted (2 shared cores are
too noisy for timed assertions; the self-tests check behaviour with loose bounds).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import time
from collections.abc import Callable
from functools import partial

from tests.lab.core import Lab


def build_times(runs: int, hosts: int) -> dict[str, float]:
    """Median milliseconds: Lab start, add_host, serve_tcp, add_delayed_host, teardown."""
    samples: dict[str, list[float]] = {
        "Lab start": [], "add_host": [], "serve_tcp": [], "add_delayed_host": [], "teardown": []
    }  # fmt: skip

    def timed(key: str, action: Callable[[], object], per: int = 1) -> None:
        t0 = time.perf_counter()
        action()
        samples[key].append((time.perf_counter() - t0) * 1000 / per)

    names = [f"h{i}" for i in range(hosts)]
    for _ in range(runs):
        lab = Lab()
        timed("Lab start", lab.start)
        try:
            timed("add_host", partial(_add_hosts, lab, names), hosts)
            timed("serve_tcp", partial(_serve_all, lab, names), hosts)
            timed("add_delayed_host", partial(lab.add_delayed_host, "d", delay=0.01))
        finally:
            timed("teardown", lab.close)
    return {key: statistics.median(values) for key, values in samples.items()}


def _add_hosts(lab: Lab, names: list[str]) -> None:
    for name in names:
        lab.add_host(name)


def _serve_all(lab: Lab, names: list[str]) -> None:
    for name in names:
        lab.hosts[name].serve_tcp([22, 80])


def blast(host: str, port: int, count: int, rate: float) -> float:
    """Send ``count`` small UDP datagrams at about ``rate`` per second; return the rate
    actually achieved by the sender."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        start = time.perf_counter()
        for i in range(count):
            target = start + i / rate
            while time.perf_counter() < target:
                pass
            with contextlib.suppress(OSError):  # a full buffer: that datagram is lost
                sock.send(b"x" * 32)
        return count / (time.perf_counter() - start)


def link_report(delay: float, jitter: float, rates: list[float], count: int) -> None:
    with Lab() as lab:
        host = lab.add_delayed_host("d", delay=delay, jitter=jitter, seed=1)
        host.serve_udp({7: "echo"})
        host.drop([9], proto="udp")  # a sink: no ICMP answers to count against the link
        for addr in (str(host.v4), str(host.v6)):
            rtts = lab.call("tests.lab.probes.udp_echo_rtts", addr, 7, 200, interval=0.005)
            got = sorted(r for r in rtts if r is not None)
            print(
                f"delay={delay * 1000:g}ms jitter={jitter * 1000:g}ms {addr}: "
                f"echo RTT median {statistics.median(got) * 1000:.1f} ms, "
                f"min {got[0] * 1000:.1f}, max {got[-1] * 1000:.1f}, "
                f"stdev {statistics.pstdev(got) * 1000:.1f} ms, lost {200 - len(got)}/200"
            )
        for rate in rates:
            before = _drop_counter(host)
            sent_rate = lab.call(blast, str(host.v4), 9, count, rate)
            time.sleep(delay + jitter + 0.3)
            delivered = _drop_counter(host) - before
            print(
                f"throughput: offered {sent_rate:,.0f} pkt/s x {count}: "
                f"{delivered}/{count} delivered ({delivered / count:.1%})"
            )


def _drop_counter(host: object) -> int:
    """Packets that reached the target's UDP/9 DROP rule (i.e. crossed the link)."""
    out = host.iptables("-L", "INPUT", "-v", "-n", "-x").stdout  # type: ignore[attr-defined]
    for line in out.splitlines():
        if "dports 9" in line or "multiport dports 9" in line:
            return int(line.split()[0])
    raise RuntimeError(f"no UDP/9 rule in:\n{out}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.measure")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rates", default="2000,5000,10000,20000,40000")
    args = parser.parse_args()
    times = build_times(args.runs, args.hosts)
    print(
        f"build, medians of {args.runs} labs with {args.hosts} hosts + 1 delayed host: "
        + ", ".join(f"{key} {ms:.0f} ms" for key, ms in times.items())
    )
    rates = [float(r) for r in args.rates.split(",")]
    link_report(0.05, 0.01, rates, args.count)
    link_report(0.0, 0.0, [], args.count)


if __name__ == "__main__":
    main()
