"""Run every benchmark this machine supports and summarise them: ``python -m benchmarks``.

Each ``benchmarks/bench_*.py`` module has ``main(argv) -> int`` and records its
rows with ``benchmarks.common.write_results`` (``results/NAME.json``). It may
also define ``skip_reason() -> str | None`` to say why it cannot run here (no
root, no nmap, ...); a module whose import fails is skipped with the error.
``--quick`` is passed on to each ``main`` as ``--quick`` (fewer runs, smaller
work); a module whose parser refuses it is run without it, and the summary says so.

Afterwards ``results/`` holds ``summary.json`` (every row, plus what was
skipped and why), ``summary.md`` (a Markdown table) and ``ratios.png`` (a bar
chart of each ratio against its target; matplotlib, from the ``bench`` extra,
is imported only here).

    python -m benchmarks                     # everything this machine supports
    python -m benchmarks --only connect_scan --quick
    python -m benchmarks --list
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import common

PREFIX = "bench_"
USAGE_ERROR = 2  # argparse's exit status for bad arguments


@dataclass
class Outcome:
    """What happened to one benchmark module in this run."""

    name: str
    status: str  # "ok", "skipped" or "failed"
    reason: str | None = None
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)


def discover(package: str = "benchmarks") -> list[str]:
    """The benchmark names (module names without ``bench_``) of ``package``, sorted."""
    module = importlib.import_module(package)
    paths = list(getattr(module, "__path__", []))
    return sorted(
        info.name[len(PREFIX) :]
        for info in pkgutil.iter_modules(paths)
        if info.name.startswith(PREFIX)
    )


def run_one(name: str, *, package: str = "benchmarks", quick: bool = False) -> Outcome:
    """Import ``bench_NAME``, ask whether it can run here, run it, collect its rows."""
    try:
        module = importlib.import_module(f"{package}.{PREFIX}{name}")
    except ImportError as exc:
        return Outcome(name, "skipped", f"cannot import: {exc}")
    skip_reason = getattr(module, "skip_reason", None)
    if callable(skip_reason):
        reason = skip_reason()
        if reason:
            return Outcome(name, "skipped", str(reason))
    before = _result_files()
    clock = time.perf_counter()
    note = None
    try:
        status = _call_main(module, ["--quick"] if quick else [])
        if quick and status == USAGE_ERROR and _result_files() == before:
            # Its parser has no --quick: run it as it is rather than not at all.
            note = "takes no --quick, so it ran in full"
            status = _call_main(module, [])
    except Exception as exc:  # one broken benchmark must not stop the others
        traceback.print_exc()
        return Outcome(name, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - clock)
    seconds = time.perf_counter() - clock
    rows = _rows_of(path for path, stamp in _result_files().items() if before.get(path) != stamp)
    if status not in (0, None):
        return Outcome(name, "failed", f"main() returned {status}", seconds, rows)
    if not rows:
        reason = "it wrote no results (benchmarks.common.write_results)"
        return Outcome(name, "failed", reason, seconds)
    return Outcome(name, "ok", note, seconds, rows)


def _call_main(module: Any, argv: list[str]) -> object:
    try:
        return module.main(argv)
    except SystemExit as exc:  # argparse inside main() exits on a usage error
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR


def _result_files() -> dict[Path, int]:
    """Each per-benchmark result file and its modification stamp, to see what a run wrote."""
    return {
        path: path.stat().st_mtime_ns
        for path in Path(common.RESULTS_DIR).glob("*.json")
        if path.name != "summary.json"
    }


def _rows_of(paths: Iterable[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(paths):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(data, list):
            rows.extend(r for r in data if isinstance(r, dict))
    return rows


def run_all(
    *, package: str = "benchmarks", only: Sequence[str] = (), quick: bool = False
) -> list[Outcome]:
    names = discover(package)
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise SystemExit(
            f"no benchmark named {', '.join(unknown)} (there are: {', '.join(names) or 'none'})"
        )
    outcomes = []
    for name in names:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        outcome = run_one(name, package=package, quick=quick)
        if outcome.status != "ok":
            print(f"   {outcome.status}: {outcome.reason}", flush=True)
        outcomes.append(outcome)
    return outcomes


# ---------------------------------------------------------------- summaries


def summary_document(outcomes: list[Outcome], command: str) -> dict[str, Any]:
    return {
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "root": os.geteuid() == 0,
        },
        "benchmarks": [asdict(o) for o in outcomes],
    }


def summary_markdown(outcomes: list[Outcome], command: str) -> str:
    lines = [
        f"Made by `{command}`; ratio = portlib's median time / the peer's (lower is better).",
        "",
        "| benchmark | peer | portlib (s) | peer (s) | ratio | target | met | same answer |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for outcome in outcomes:
        for r in outcome.rows:
            if r.get("skipped"):
                lines.append(
                    f"| {r.get('benchmark')} | {r.get('peer')} | skipped: {r['skipped']} |"
                    " | | | | |"
                )
                continue
            lines.append(
                f"| {r.get('benchmark')} | {r.get('peer')} | {_num(r.get('portlib_median_s'), 4)}"
                f" | {_num(r.get('peer_median_s'), 4)} | {_num(r.get('ratio'), 2)}"
                f" | {_num(r.get('target_ratio'), 2)} | {_flag(r.get('met'))}"
                f" | {_flag(r.get('agreed'))} |"
            )
    others = [o for o in outcomes if o.status != "ok"]
    if others:
        lines += ["", "Not run:", ""]
        lines += [f"- `{o.name}`: {o.status}: {_one_line(o.reason)}" for o in others]
    notes = [o for o in outcomes if o.status == "ok" and o.reason]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- `{o.name}`: {o.reason}" for o in notes]
    return "\n".join(lines) + "\n"


def _one_line(text: str | None, limit: int = 300) -> str:
    """A multi-line reason (a child's traceback) as its last line: the error itself."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _num(value: object, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else ""


def _flag(value: object) -> str:
    return "" if value is None else ("yes" if value else "NO")


def ratio_chart(outcomes: list[Outcome], path: Path) -> str | None:
    """Draw ratios.png; returns why not when it cannot (no matplotlib, no ratios)."""
    rows = [r for o in outcomes for r in o.rows if isinstance(r.get("ratio"), int | float)]
    bars = [
        (f"{r.get('benchmark')}\nvs {r.get('peer')}", float(r["ratio"]), r.get("target_ratio"))
        for r in rows
    ]
    if not bars:
        return "no ratios to draw"
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]')"
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(bars)), 4.5))
    xs = range(len(bars))
    # red: target missed or the two sides disagreed (a fast wrong answer is no result)
    colours = ["tab:red" if r.get("met") is False else "tab:green" for r in rows]
    ax.bar(xs, [ratio for _, ratio, _ in bars], color=colours, label="portlib / peer")
    for x, (_, _, target) in zip(xs, bars, strict=True):
        if isinstance(target, int | float):
            ax.hlines(target, x - 0.4, x + 0.4, colors="black", linestyles="dashed")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(list(xs), [label for label, _, _ in bars], fontsize=8)
    ax.set_ylabel("time ratio (portlib / peer), lower is better")
    ax.set_title("portlib vs peers (dashed: target)")
    if max(ratio for _, ratio, _ in bars) / max(min(ratio for _, ratio, _ in bars), 1e-9) > 50:
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_summary(outcomes: list[Outcome], command: str) -> list[Path]:
    results = Path(common.RESULTS_DIR)
    results.mkdir(parents=True, exist_ok=True)
    written = [results / "summary.json", results / "summary.md"]
    written[0].write_text(json.dumps(summary_document(outcomes, command), indent=2) + "\n")
    written[1].write_text(summary_markdown(outcomes, command))
    chart = results / "ratios.png"
    why_not = ratio_chart(outcomes, chart)
    if why_not is None:
        written.append(chart)
    else:
        print(f"no chart: {why_not}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run portlib's benchmarks against their peers and summarise the ratios.",
        epilog="Results go to benchmarks/results/: one JSON file per benchmark, "
        "summary.json, summary.md and ratios.png.",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only this one (repeat)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller work")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in discover():
            print(name)
        return 0
    command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
    outcomes = run_all(only=args.only, quick=args.quick)
    for path in write_summary(outcomes, command):
        print(f"wrote {path}")
    print(summary_markdown(outcomes, command))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
