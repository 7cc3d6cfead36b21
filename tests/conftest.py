"""Shared test policy.

Tests marked ``lab`` need root and network namespaces. Outside CI they skip with
the reason; with ``CI=true`` a skipped lab test is reported as a failure, so a
CI machine that silently lacks the lab cannot pass.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from tests.lab.fixtures import lab, module_lab  # noqa: F401  (lab fixtures)

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Raw-scan templates are cached in a directory of this test run, not in ~/.cache. Set
# at import, before collection (some test modules build templates while collected);
# subprocesses (the CLI, examples) inherit it; tests of the cache set their own.
_CACHE_DIR = tempfile.mkdtemp(prefix="portlib-test-cache-")
os.environ["PORTLIB_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("lab") is not None:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"lab test skipped under CI=true, which counts as a failure: {reason}"
