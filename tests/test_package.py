"""The package as a whole: cheap import, public names, errors, value types, README/CI."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

import pytest

import portlib
from portlib.output.jsonout import dumps, to_plain

REPO = Path(__file__).resolve().parent.parent


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return done.stdout.strip()


def test_import_loads_neither_scapy_nor_proc() -> None:
    code = (
        "import sys\n"
        "opened = []\n"
        "def hook(event, args):\n"
        "    if event == 'open' and str(args[0]).startswith('/proc'):\n"
        "        opened.append(args[0])\n"
        "sys.addaudithook(hook)\n"
        "import portlib\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'scapy', 'asyncio'})\n"
        "print(heavy, opened)\n"
    )
    assert _python(code) == "[] []"


def test_every_public_name_resolves() -> None:
    for name in portlib.__all__:
        assert getattr(portlib, name) is not None, name
    assert set(portlib.__all__) <= set(dir(portlib))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = portlib.nope  # type: ignore[attr-defined]


def test_subpackages_do_not_shadow_public_functions() -> None:
    import portlib.scanning
    import portlib.socktable

    assert callable(portlib.scan) and callable(portlib.sockets)


def test_errors_are_one_family_and_builtin_friendly() -> None:
    assert issubclass(portlib.TargetSpecError, ValueError)
    assert issubclass(portlib.PortSpecError, ValueError)
    assert issubclass(portlib.PrivilegeError, PermissionError)
    assert issubclass(portlib.NoSuchProcess, LookupError)
    for name in portlib.errors.__all__:
        assert issubclass(getattr(portlib.errors, name), portlib.PortlibError)
    err = portlib.ParseError("bad state 'ZZ'", source="/proc/net/tcp", line=7)
    assert str(err) == "/proc/net/tcp:7: bad state 'ZZ'"
    assert (err.source, err.line) == ("/proc/net/tcp", 7)


def test_values_are_frozen_and_slotted() -> None:
    endpoint = portlib.Endpoint(ip_address("::1"), 80)
    assert str(endpoint) == "[::1]:80"
    assert str(portlib.Endpoint(ip_address("127.0.0.1"), 22)) == "127.0.0.1:22"
    with pytest.raises(dataclasses.FrozenInstanceError):
        endpoint.port = 81  # type: ignore[misc]
    assert not hasattr(endpoint, "__dict__")


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_model_imports_nothing_from_the_outputs() -> None:
    """model.py holds values only: the outputs depend on it, never the other way."""
    imported = _imported_modules(REPO / "portlib" / "model.py")
    assert not {m for m in imported if m.startswith("portlib.output")}, imported
    assert not hasattr(portlib.ScanReport, "to_nmap_xml")
    assert "__weakref__" not in portlib.HostResult.__slots__  # no output cache needs it


def test_report_files_go_through_one_load_and_one_dump(tmp_path: Path) -> None:
    from tests.report_samples import sample_report, verdicts

    report = sample_report()
    for name in ("r.xml", "r.json", "r.gnmap", "r.nmap"):
        portlib.dump_report(report, tmp_path / name)
    for name in ("r.xml", "r.json"):
        assert verdicts(portlib.load_report(tmp_path / name)) == verdicts(report)
    assert portlib.parse_report(portlib.render_report(report, "json")) == report
    assert (tmp_path / "r.gnmap").read_text() == portlib.render_report(report, "grepable")
    with pytest.raises(portlib.OutputError, match="cannot tell the format of"):
        portlib.dump_report(report, tmp_path / "r.txt")


def test_json_uses_field_names_and_enum_strings() -> None:
    result = portlib.PortResult(
        ip_address("192.0.2.1"),
        53,
        portlib.Protocol.UDP,
        portlib.PortState.OPEN_FILTERED,
        portlib.Reason.NO_RESPONSE,
    )
    plain = json.loads(dumps(result))
    assert plain == {
        "host": "192.0.2.1",
        "port": 53,
        "protocol": "udp",
        "state": "open|filtered",
        "reason": "no-response",
        "rtt": None,
        "service": None,
        "detected": None,
    }
    ranges = portlib.PortRanges(range(32768, 61000), 1024, frozenset({9001, 8080}))
    assert to_plain(ranges) == {
        "ephemeral": [32768, 60999],
        "unprivileged_start": 1024,
        "reserved": [8080, 9001],
    }
    assert "\n" not in dumps(result, indent=None)


def test_cli_usage_error_is_one_line_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "portlib", "--no-such-flag"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def _readme_test_command() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)
    assert len(blocks) >= 2, "the README must open with two sh commands"
    return blocks[1].strip()


def test_readme_opens_with_two_commands_and_ci_runs_the_second() -> None:
    text = (REPO / "README.md").read_text()
    first = re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)[0].strip()
    assert first.startswith("pip install .") and "portlib " in first
    ci = (REPO / ".ci" / "run").read_text()
    assert f'TEST_COMMAND="{_readme_test_command()}"' in ci
    assert 'bash -c "$TEST_COMMAND"' in ci
