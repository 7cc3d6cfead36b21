"""pytest fixtures for the lab, registered in tests/conftest.py.

``lab``: a fresh Lab per test. ``module_lab``: one Lab shared by a test module (build
hosts once, e.g. in a module-scoped fixture of your own that depends on it). Both skip
the test with the reason when the lab cannot be built here (not root, tools missing);
under CI=true the conftest turns that skip into a failure for ``@pytest.mark.lab`` tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.core import Lab, lab_available


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = lab_available()
    if reason:
        pytest.skip(reason)
    with Lab() as built:
        yield built


@pytest.fixture(scope="module")
def module_lab() -> Iterator[Lab]:
    reason = lab_available()
    if reason:
        pytest.skip(reason)
    with Lab() as built:
        yield built
