"""The layout's rules (ARCHITECTURE.md), checked on the source: no import circles, pure
modules that stay pure, and files that fit in one reading."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "portlib"

# Modules whose logic is pure: no sockets, files, clocks or event loop of their own.
# ARCHITECTURE.md lists the same modules; the clock and randomness are passed in.
PURE = (
    "portlib.errors",
    "portlib.folding",
    "portlib.model",
    "portlib.portspec",
    "portlib.scanning.book",
    "portlib.scanning.connect.verdicts",
    "portlib.scanning.contract",
    "portlib.scanning.groups",
    "portlib.scanning.discovery.packets",
    "portlib.scanning.icmp",
    "portlib.scanning.options",
    "portlib.scanning.order",
    "portlib.scanning.raw.bpf",
    "portlib.scanning.raw.columns",
    "portlib.scanning.raw.cookie",
    "portlib.scanning.raw.icmplimit",
    "portlib.scanning.raw.probes",
    "portlib.scanning.raw.replies",
    "portlib.scanning.raw.routes",
    "portlib.scanning.raw.wire",
    "portlib.scanning.report",
    "portlib.scanning.timing",
    "portlib.scanning.versions.ber",
    "portlib.scanning.versions.found",
    "portlib.scanning.versions.match",
    "portlib.scanning.versions.parsers",
    "portlib.scanning.versions.rules",
    "portlib.scanning.versions.x509",
    "portlib.output.reportchecks",
    "portlib.output.sharedtext",
    "portlib.socktable.bytecode",
    "portlib.socktable.filterparse",
    "portlib.socktable.filters",
    "portlib.socktable.procnet",
    "portlib.socktable.sockevents",
    "portlib.socktable.whoselect",
    "portlib.targetspec",
    "portlib.textsafe",
)
IMPURE_STDLIB = frozenset({"socket", "os", "asyncio", "time", "select"})
MAX_MODULE_LINES = 520  # "about 500": a file fits in one reading
MAX_CLASS_LINES = 270  # "about 250"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, at any level (function bodies and TYPE_CHECKING too)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
            # ``from package import module`` imports that module, not the package's names.
            found.update(submodules or {base})
    return found


def portlib_imports(name: str) -> set[str]:
    return {m for m in imports_of(name) if m in MODULES and m != name}


def test_no_import_circle_anywhere() -> None:
    graph = {name: portlib_imports(name) for name in MODULES}
    # A package's __init__ is run before its modules: importing a.b imports a too.
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_do_no_io(name: str) -> None:
    assert name in MODULES, f"{name} is listed as pure but does not exist"
    stdlib = {m.split(".")[0] for m in imports_of(name)}
    assert not stdlib & IMPURE_STDLIB, f"{name} imports {sorted(stdlib & IMPURE_STDLIB)}"


def test_pure_modules_say_so() -> None:
    """A pure module's docstring says so (the model's: "Values"), for the next reader."""
    for name in PURE:
        doc = (ast.get_docstring(ast.parse(MODULES[name].read_text())) or "").lower()
        assert "pure" in doc or "sans-io" in doc or doc.startswith("values"), name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_classes_fit_in_one_reading(name: str) -> None:
    text = MODULES[name].read_text()
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{name}.{node.name} has {size} lines"
