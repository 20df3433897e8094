"""Test-session set-up shared by the tests and the nbval notebook runs.

The whole session, kernels included, uses one embedded PostgreSQL in a temporary cache
directory (never the developer's own ~/.cache/incidentkit), stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_CACHE = tempfile.mkdtemp(prefix="incidentkit-test-")
os.environ["INCIDENTKIT_CACHE_DIR"] = _CACHE  # inherited by nbval's and papermill's kernels


#: Fixtures whose set-up alone takes more than a few seconds: a test that uses one is slow.
SLOW_FIXTURES = {"demo_report"}  # ``incidentkit demo``: every notebook, the race lab, the report


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects anything
def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` what the fast tier (``pytest -m "not slow"``) leaves out, whatever its file says:
    nbval's notebook cells (each notebook starts a kernel and runs the analyses), and every test
    reading the session's demo report."""
    for item in items:
        if item.path.suffix == ".ipynb" or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _embedded_server_lifecycle():
    yield
    from incidentkit.db import embedded

    try:
        embedded.default_server().stop()
    finally:
        shutil.rmtree(_CACHE, ignore_errors=True)
