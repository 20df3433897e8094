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


@pytest.fixture(scope="session", autouse=True)
def _embedded_server_lifecycle():
    yield
    from incidentkit.db import embedded

    try:
        embedded.default_server().stop()
    finally:
        shutil.rmtree(_CACHE, ignore_errors=True)
