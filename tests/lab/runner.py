"""Run one Python callable inside the scanner namespace and send back its result.

The lab starts ``ip netns exec NS python -m tests.lab.runner`` with the repository root
as cwd and on PYTHONPATH, writes ``pickle((dotted_name, args, kwargs))`` to stdin and
reads ``pickle(("ok", result))`` or ``pickle(("error", exception, traceback_text))``
from stdout. A callable that returns a coroutine is run with ``asyncio.run``. Anything
the callable prints goes to stderr, so it cannot corrupt the pickle on stdout.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pickle
import sys
import traceback
from typing import Any


def resolve(dotted: str) -> Any:
    """Import ``pkg.module.attr.attr`` using the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # this prefix is not a module; try a shorter one
            raise
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"no importable module in {dotted!r}")


def invoke(dotted: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = resolve(dotted)(*args, **kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return result


def _reply(message: tuple[Any, ...]) -> bytes:
    try:
        return pickle.dumps(message)
    except Exception as exc:  # the result or exception itself does not pickle
        kind, payload, *rest = message
        tb = rest[0] if rest else ""
        text = f"{type(payload).__name__}: {payload!r} (not picklable: {exc})"
        return pickle.dumps(
            ("error", RuntimeError(text), tb)
            if kind == "error"
            else ("error", TypeError(f"result of lab.call {text}"), "")
        )


def main() -> None:
    out_fd = os.dup(1)
    os.dup2(2, 1)  # the callable's prints land on stderr
    sys.stdout = sys.stderr
    dotted, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    try:
        message: tuple[Any, ...] = ("ok", invoke(dotted, args, kwargs))
    except BaseException as exc:
        message = ("error", exc, traceback.format_exc())
    with os.fdopen(out_fd, "wb") as out:
        out.write(_reply(message))


if __name__ == "__main__":
    main()
