"""`python -m benchmarks`: discovery, skips, failures, and the summary files it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest

import benchmarks.__main__ as runner
from benchmarks import common

FAKE_MODULES = {
    "bench_fast": """
        from benchmarks.common import Row, write_results

        def main(argv):
            runs = 1 if "--quick" in argv else 5
            write_results("fast", [
                Row("connect scan", "nmap -sT", 0.5, 1.0, runs, target_ratio=1.0, agreed=True),
                Row("who_uses", "lsof", 0.3, 0.1, runs, target_ratio=2.0, agreed=True),
                Row("sockets", "ss", None, None, 0, skipped="ss is not installed"),
            ])
            return 0
    """,
    "bench_needs_lab": """
        def skip_reason():
            return "needs root for the namespace lab"

        def main(argv):
            raise AssertionError("must not run")
    """,
    "bench_broken": """
        def main(argv):
            trace = "Traceback (most recent call last):\\n  x\\nOSError: boom"
            raise RuntimeError("child failed: " + trace)
    """,
    "bench_no_quick": """
        import argparse
        from benchmarks.common import Row, write_results

        def main(argv):
            argparse.ArgumentParser().parse_args(argv)  # no --quick here
            write_results("no_quick", [Row("x", "y", 1.0, 1.0, 3)])
            return 0
    """,
    "bench_silent": """
        def main(argv):
            return 0
    """,
    "bench_missing_peer_lib": """
        import no_such_module_for_portlib_tests

        def main(argv):
            return 0
    """,
    "helper_not_a_bench": """
        raise AssertionError("only bench_* modules are imported")
    """,
}


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "fakebench_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in FAKE_MODULES.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    yield "fakebench_pkg"
    for name in list(sys.modules):
        if name.startswith("fakebench_pkg"):
            del sys.modules[name]


def test_discovers_only_bench_modules(fake_package: str) -> None:
    assert runner.discover(fake_package) == [
        "broken",
        "fast",
        "missing_peer_lib",
        "needs_lab",
        "no_quick",
        "silent",
    ]


def test_outcomes(fake_package: str) -> None:
    outcomes = {o.name: o for o in runner.run_all(package=fake_package, quick=True)}
    assert outcomes["fast"].status == "ok"
    assert [r["runs"] for r in outcomes["fast"].rows] == [1, 1, 0]  # --quick reached main
    assert outcomes["needs_lab"].status == "skipped"
    assert outcomes["needs_lab"].reason == "needs root for the namespace lab"
    assert outcomes["missing_peer_lib"].status == "skipped"
    assert "no_such_module_for_portlib_tests" in (outcomes["missing_peer_lib"].reason or "")
    assert outcomes["broken"].status == "failed"
    assert outcomes["broken"].reason == (
        "RuntimeError: child failed: Traceback (most recent call last):\n  x\nOSError: boom"
    )
    assert outcomes["no_quick"].status == "ok"
    assert outcomes["no_quick"].reason == "takes no --quick, so it ran in full"
    assert [r["benchmark"] for r in outcomes["no_quick"].rows] == ["x"]
    assert outcomes["silent"].status == "failed"
    assert "wrote no results" in (outcomes["silent"].reason or "")


def test_only_runs_the_named_ones(fake_package: str) -> None:
    outcomes = runner.run_all(package=fake_package, only=["fast"])
    assert [o.name for o in outcomes] == ["fast"]
    assert [r["runs"] for r in outcomes[0].rows] == [5, 5, 0]
    with pytest.raises(SystemExit, match="no benchmark named nope"):
        runner.run_all(package=fake_package, only=["nope"])


def test_summary_files(fake_package: str, tmp_path: Path) -> None:
    outcomes = runner.run_all(package=fake_package, quick=True)
    written = runner.write_summary(outcomes, "python -m benchmarks")
    results = tmp_path / "results"
    chart = ["ratios.png"] if importlib.util.find_spec("matplotlib") else []
    assert [p.name for p in written] == ["summary.json", "summary.md", *chart]

    doc = json.loads((results / "summary.json").read_text())
    assert doc["command"] == "python -m benchmarks"
    by_name = {b["name"]: b for b in doc["benchmarks"]}
    rows = by_name["fast"]["rows"]
    assert rows[0]["ratio"] == 0.5 and rows[0]["met"] is True
    assert rows[1]["ratio"] == pytest.approx(3.0) and rows[1]["met"] is False

    md = (results / "summary.md").read_text()
    assert "| connect scan | nmap -sT | 0.5000 | 1.0000 | 0.50 | 1.00 | yes | yes |" in md
    assert "| who_uses | lsof | 0.3000 | 0.1000 | 3.00 | 2.00 | NO | yes |" in md
    assert "| sockets | ss | skipped: ss is not installed |" in md
    assert "- `needs_lab`: skipped: needs root for the namespace lab" in md
    assert "- `broken`: failed: OSError: boom\n" in md  # a traceback's last line only
    assert "- `no_quick`: takes no --quick, so it ran in full" in md


def test_ratio_chart(fake_package: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs the bench extra (matplotlib)")
    outcomes = runner.run_all(package=fake_package, only=["fast"])
    assert runner.ratio_chart(outcomes, tmp_path / "ratios.png") is None
    png = (tmp_path / "ratios.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_no_matplotlib_means_no_chart_and_a_reason(
    fake_package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = runner.run_all(package=fake_package, only=["fast"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    why = runner.ratio_chart(outcomes, tmp_path / "ratios.png")
    assert why is not None and "pip install '.[bench]'" in why
    assert not (tmp_path / "ratios.png").exists()


def test_no_chart_without_ratios(tmp_path: Path) -> None:
    assert runner.ratio_chart([], tmp_path / "r.png") == "no ratios to draw"
    assert not (tmp_path / "r.png").exists()


def test_main_exit_status_and_list(
    fake_package: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with monkeypatch.context() as m:
        m.setattr(runner, "discover", lambda package="benchmarks": ["fast"])
        assert runner.main(["--list"]) == 0
        assert capsys.readouterr().out == "fast\n"
    real_run_all = runner.run_all
    monkeypatch.setattr(runner, "run_all", lambda **kw: real_run_all(package=fake_package, **kw))
    assert runner.main(["--only", "fast"]) == 0
    assert runner.main([]) == 1  # "broken" and "silent" fail
