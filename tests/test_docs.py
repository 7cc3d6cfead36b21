"""Help that newcomers can use: docstrings with examples, --help with examples, errors
that say what to do.

The docstring rule, per name in ``portlib.__all__``:

- every name has a docstring of its own: not inherited, and not the signature that
  ``dataclasses`` writes when a class has none;
- functions and the classes people build or receive (everything except enums and
  exceptions) also show an example: a ``>>>`` line or an ``Example`` block. Enums and
  exceptions only need to say what they mean; their use shows in the examples of the
  functions that return or raise them;
- every ``>>>`` example is run with doctest (in the namespace of its module, with
  ELLIPSIS), so none rots. Examples that need the network, root, or live ports are
  marked ``# doctest: +SKIP`` and show output from a real run.

Every CLI command (and ``portlib`` itself) answers ``--help`` with status 0, and its
help has an "examples" section with at least one ``portlib ...`` command line.
"""

from __future__ import annotations

import argparse
import doctest
import enum
import inspect
import re
import sys
from types import ModuleType

import pytest

import portlib
from portlib.cli import build_parser, main


def _public() -> list[tuple[str, object]]:
    return [(name, getattr(portlib, name)) for name in portlib.__all__]


def _own_doc(obj: object) -> str:
    if inspect.isclass(obj):
        return str(obj.__dict__.get("__doc__") or "")
    return str(getattr(obj, "__doc__", "") or "")


def _needs_example(obj: object) -> bool:
    if inspect.isclass(obj):
        return not issubclass(obj, (enum.Enum, BaseException))
    return callable(obj)


def _has_example(doc: str) -> bool:
    return ">>>" in doc or re.search(r"^\s*Example", doc, flags=re.M) is not None


@pytest.mark.parametrize(("name", "obj"), _public(), ids=[n for n, _ in _public()])
def test_public_name_has_its_own_docstring(name: str, obj: object) -> None:
    doc = _own_doc(obj).strip()
    assert doc, f"portlib.{name} has no docstring of its own"
    assert not doc.startswith(f"{name}("), f"portlib.{name}: only the dataclass signature"


@pytest.mark.parametrize(
    ("name", "obj"),
    [(n, o) for n, o in _public() if _needs_example(o)],
    ids=[n for n, o in _public() if _needs_example(o)],
)
def test_public_function_or_class_shows_an_example(name: str, obj: object) -> None:
    assert _has_example(_own_doc(obj)), f"portlib.{name}: add a '>>>' line or an Example block"


def test_the_rule_covers_functions_and_value_classes() -> None:
    # Guards the rule itself: a change to _needs_example must not quietly exempt these.
    needing = {n for n, o in _public() if _needs_example(o)}
    assert {"scan", "Scanner", "ScanReport", "sockets", "who_uses", "is_port_free"} <= needing
    assert not {"PortState", "PortlibError", "PrivilegeError"} & needing


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=False)
    found = []
    for name, obj in _public():
        module: ModuleType = sys.modules[obj.__module__]  # type: ignore[attr-defined]
        found += [t for t in finder.find(obj, name, globs=dict(vars(module))) if t.examples]
    return found


@pytest.mark.parametrize("test", _doctests(), ids=lambda t: t.name)
def test_docstring_examples_run(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out: list[str] = []
    result = runner.run(test, out=out.append)
    assert result.failed == 0, "".join(out)


def _commands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return sorted(actions[0].choices)


def test_cli_has_the_documented_commands() -> None:
    assert {"scan", "sockets", "who", "free", "service", "diff"} <= set(_commands())


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [None, *_commands()])
def test_help_shows_examples(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help([] if command is None else [command], capsys)
    assert re.search(r"^examples?:", text, flags=re.M | re.I), text
    prefix = "portlib " if command is None else f"portlib {command}"
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith(prefix) for line in lines), f"no '{prefix}...' line:\n{text}"


# Common mistakes: the one-line error names the problem and points at the fix.
MISTAKES = [
    (["scan", "no..such"], "two dots"),
    (["scan", "300.1.2.3"], "0-255"),
    (["scan", "-p", "70000", "localhost"], "0-65535"),
    (["scan", "-p", "80-20", "localhost"], "start > end"),
    (["scan", "-T9", "localhost"], "0-5"),
    (["service", "postgress"], "did you mean"),
    (["who", "99999"], "1-65535"),
]


@pytest.mark.parametrize(("argv", "hint"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_common_mistakes_get_one_actionable_line(
    argv: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert hint in err, err


def test_killing_an_idle_port_says_there_is_nothing_to_stop(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = portlib.find_free_port()  # nothing holds a port the kernel just called free
    assert main(["who", str(port), "--kill"]) == 1
    err = capsys.readouterr().err
    assert "nothing to stop" in err and "portlib sockets" in err
    with pytest.raises(portlib.PortNotInUse, match="nothing to stop"):
        portlib.kill_port(port)
