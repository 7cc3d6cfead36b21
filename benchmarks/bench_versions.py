"""Service detection (-sV) against ``nmap -sV``: the lab's real daemons, same run, medians.

Rows (targets from issue 15):

* ``-sV lab daemons, TCP``: every TCP port of the service lab (tests/lab/daemons.py:
  real Debian daemons on their standard ports and on unusual ones) against
  ``nmap -sS -sV`` on the same ports (<= 0.5).
* ``-sV lab daemons, UDP``: the UDP ones (DNS, SNMP, NTP) against ``nmap -sU -sV`` (<= 0.5).
* ``-sV 1000 hosts``: one SSH-like banner on port 22 of 1000 addresses of an AnyIP
  /22 (198.18.0.0/22, answered by one namespace), against ``nmap -sV`` on the same
  addresses. No ratio target; the issue asks for well under a minute.

Each side is a fresh process in the lab's scanner namespace, started the same way
(``ip netns exec``), doing the same work: ``portlib scan -sS -sV`` (or ``-sU -sV``)
against ``nmap -sS -sV``, both with ``-Pn``, XML on stdout (portlib's read back with
``portlib.output.formats.parse``). Interpreter and nmap start-up both count. Runs alternate
(portlib, nmap, portlib, ...). Both tools' answers are recorded side by side in the
result file and in ``results/versions_side_by_side.md``; ``same answer`` means portlib
agrees with nmap wherever nmap itself is sure (tests/lab/oracle.py's rule).

    python -m benchmarks.bench_versions               # 3 runs of each row
    python -m benchmarks.bench_versions --quick       # 1 run
    python -m benchmarks.bench_versions --only tcp --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, Row, interleaved_runs, lab_skip_reason, netns_exec

ROOT = Path(__file__).resolve().parent.parent
SERVICE_HOST = "192.0.2.10"
ANYIP_HOST = "192.0.2.12"
ANYIP_BLOCK = "198.18.0.0/22"
ANYIP_COUNT = 1000


def skip_reason() -> str | None:
    reason = lab_skip_reason()
    if reason:
        return reason
    sys.path.insert(0, str(ROOT))
    from tests.lab.daemons import missing_daemons

    missing = missing_daemons()
    return f"lab daemons missing (tools/ci-deps.sh installs them): {missing}" if missing else None


def _portlib(ns: str, hosts: str, protocol: str, ports: Sequence[int]) -> dict[Any, Any]:
    from portlib.output.formats import parse

    kind = "-sU" if protocol == "udp" else "-sS"
    spec = ",".join(map(str, ports))
    argv = [sys.executable, "-m", "portlib", "scan", kind, "-sV", "-Pn", "-p", spec, "-oX", "-"]
    report = parse(netns_exec(ns, [*argv, *hosts.split(",")]))
    return {(str(p.host), p.port, str(p.protocol)): p for h in report.hosts for p in h.ports}


def _nmap(ns: str, hosts: str, protocol: str, ports: Sequence[int]) -> dict[Any, Any]:
    from tests.lab.oracle import nmap_argv, nmap_services_by_host

    argv = nmap_argv(hosts.split(","), protocol, ports)
    return nmap_services_by_host(netns_exec(ns, argv))


def _compare(
    label: str,
    peer: str,
    runs: int,
    portlib_side: Callable[[], dict[Any, Any]],
    nmap_side: Callable[[], dict[Any, Any]],
    target: float | None,
    table_rows: int | None = None,
) -> tuple[Row, list[tuple[str, str, str]]]:
    from tests.lab.oracle import answer_text, disagreements, nmap_answer_text

    p_times, n_times, p_answers, n_answers = interleaved_runs(
        portlib_side, nmap_side, runs, warmup=False
    )
    ours, theirs = p_answers[-1], n_answers[-1]
    problems = [
        problem for key in sorted(ours) for problem in disagreements(ours[key], theirs.get(key, {}))
    ]
    side_by_side = [
        (f"{key[1]}/{key[2]}" if table_rows is None else f"{key[0]}:{key[1]}",
         answer_text(ours[key].detected), nmap_answer_text(theirs.get(key, {})))
        for key in sorted(ours)
    ][: table_rows or None]  # fmt: skip
    row = Row(
        label,
        peer,
        statistics.median(p_times),
        statistics.median(n_times),
        runs,
        target_ratio=target,
        agreed=not problems,
        detail={
            "portlib_runs_s": [round(t, 3) for t in p_times],
            "peer_runs_s": [round(t, 3) for t in n_times],
            "disagreements": problems,
            "portlib_probed": sum(
                1 for r in ours.values() if r.detected and r.detected.method == "probed"
            ),
            "nmap_probed": sum(1 for s in theirs.values() if s.get("method") == "probed"),
            "side_by_side": [list(r) for r in side_by_side],
        },
    )
    return row, side_by_side


def run_rows(runs: int, only: set[str] | None) -> tuple[list[Row], list[str]]:
    sys.path.insert(0, str(ROOT))
    from tests.lab import Lab
    from tests.lab.daemons import DAEMONS, DaemonSet

    rows: list[Row] = []
    markdown: list[str] = []
    with Lab() as lab:
        ns = lab.scanner_ns
        host = lab.add_host("svc", v4=SERVICE_HOST)
        daemons = DaemonSet(host)
        try:
            daemons.start_all()
            for protocol, flag in (("tcp", "-sS"), ("udp", "-sU")):
                if only and protocol not in only:
                    continue
                ports = sorted(
                    {p for d in DAEMONS if d.protocol == protocol for p in (d.port, d.unusual)}
                )
                row, table = _compare(
                    f"-sV lab daemons, {protocol.upper()} ({len(ports)} ports)",
                    f"nmap {flag} -sV",
                    runs,
                    lambda p=protocol, q=ports: _portlib(ns, SERVICE_HOST, p, q),
                    lambda p=protocol, q=ports: _nmap(ns, SERVICE_HOST, p, q),
                    0.5,
                )
                rows.append(row)
                markdown += _side_by_side_markdown(row, table)
        finally:
            daemons.stop()
        if not only or "anyip" in only:
            rows.append(_anyip_row(lab, runs, markdown))
    return rows, markdown


def _anyip_row(lab: Any, runs: int, markdown: list[str]) -> Row:
    import ipaddress

    target = lab.add_host("anyip", v4=ANYIP_HOST)
    target.exec(["ip", "route", "add", "local", ANYIP_BLOCK, "dev", "lo"])
    lab.exec(["ip", "route", "add", ANYIP_BLOCK, "via", ANYIP_HOST])
    target.serve_tcp([22], keep=True, banner="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
    hosts = ",".join(str(a) for a in list(ipaddress.ip_network(ANYIP_BLOCK))[1 : ANYIP_COUNT + 1])
    row, table = _compare(
        f"-sV {ANYIP_COUNT} hosts, port 22",
        "nmap -sS -sV",
        max(1, runs // 3),
        lambda: _portlib(lab.scanner_ns, hosts, "tcp", [22]),
        lambda: _nmap(lab.scanner_ns, hosts, "tcp", [22]),
        None,
        table_rows=3,
    )
    markdown += _side_by_side_markdown(row, table)
    return row


def _side_by_side_markdown(row: Row, table: list[tuple[str, str, str]]) -> list[str]:
    ratio = "" if row.ratio is None else f", ratio {row.ratio:.3f}"
    lines = [
        f"### {row.benchmark}: portlib {row.portlib_median_s:.2f} s, {row.peer} "
        f"{row.peer_median_s:.2f} s (median of {row.runs}{ratio})",
        "",
        "| port | portlib | nmap |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {port} | {ours} | {theirs} |" for port, ours, theirs in table]
    problems = row.detail.get("disagreements") or []
    lines += [
        "",
        f"Ports identified by probing: portlib {row.detail['portlib_probed']}, "
        f"nmap {row.detail['nmap_probed']}. "
        f"Disagreements where nmap is sure: {problems or 'none'}",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_versions")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each row")
    parser.add_argument("--only", action="append", choices=["tcp", "udp", "anyip"])
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    from benchmarks.common import write_results

    runs = 1 if args.quick else args.runs
    rows, markdown = run_rows(runs, set(args.only) if args.only else None)
    write_results("versions", rows)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "versions_side_by_side.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))
    return 0 if all(r.agreed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
