"""The test lab: network namespaces for scanner tests and benchmarks (see README.md here).

>>> from tests.lab import Lab, lab_available
>>> with Lab() as lab:  # doctest: +SKIP
...     t1 = lab.add_host("t1")
...     t1.serve_tcp([22, 80])
...     lab.call("tests.lab.probes.tcp_connect", str(t1.v4), 22)
'open'

The names load lazily, so the helper processes (``python -m tests.lab.serve``) start
without importing the Lab machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.lab.core import Lab, LabHost, lab_available
    from tests.lab.netns import LabError, LabTimeout

__all__ = ["Lab", "LabError", "LabHost", "LabTimeout", "lab_available"]
_HOME = {
    "Lab": "tests.lab.core",
    "LabHost": "tests.lab.core",
    "lab_available": "tests.lab.core",
    "LabError": "tests.lab.netns",
    "LabTimeout": "tests.lab.netns",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'tests.lab' has no attribute {name!r}")
