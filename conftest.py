"""Test-session set-up shared by the tests and the nbval notebook runs.

The whole session, kernels included, uses one embedded PostgreSQL in a temporary cache
directory (never the developer's own ~/.cache/incidentkit), stopped at the end.

The shipped notebooks hold no outputs (JupyterLab would show them as results). nbval's
reference outputs live in ``tests/nbval_reference/<notebook>.ipynb`` (written by
``tests/refresh_outputs.py``) and are merged, cell by cell id, into the shipped notebook
nbval collects, so its ``NBVAL_CHECK_OUTPUT`` cells are still compared (``--nbval-reference
DIR`` reads another folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent
#: nbval's reference outputs for the shipped notebooks (never collected themselves).
NBVAL_REFERENCE = _ROOT / "tests" / "nbval_reference"
collect_ignore = [str(NBVAL_REFERENCE)]

_CACHE = tempfile.mkdtemp(prefix="incidentkit-test-")
os.environ["INCIDENTKIT_CACHE_DIR"] = _CACHE  # inherited by nbval's and papermill's kernels
os.environ["INCIDENTKIT_STATIC"] = "1"  # nbval's kernels: the notebooks' controls fall back to the parameters


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


def pytest_sessionfinish(session, exitstatus):
    """Stop the session's embedded server and remove its cache folder, whatever ran: a hook, not a
    fixture, because nbval's notebook cells use no fixture (a session of notebooks alone, such as
    the one tests/test_lab.py runs, left its server running)."""
    from incidentkit.db import embedded

    try:
        embedded.default_server().stop()
    except Exception:  # noqa: BLE001 - nothing started, or already gone: the folder goes anyway
        pass
    finally:
        shutil.rmtree(_CACHE, ignore_errors=True)


# -- nbval: the shipped notebooks, checked against the reference outputs kept by the tests -------
def pytest_addoption(parser):
    parser.addoption("--nbval-reference", metavar="DIR", default=str(NBVAL_REFERENCE),
                     help="folder of nbval's reference outputs for the shipped notebooks "
                          "(default: tests/nbval_reference)")


def _shipped(path: Path) -> bool:
    from incidentkit import config

    return path.suffix == ".ipynb" and path.resolve().parent == config.notebooks_dir().resolve()


def _checked(cell) -> bool:
    from nbval.plugin import find_comment_markers, find_metadata_tags

    markers = dict(find_metadata_tags(cell.metadata))
    markers.update(find_comment_markers(cell.source))
    return bool(markers.get("check"))


def merge_reference(nb, reference) -> list[str]:
    """Copy the reference's outputs and execution counts into ``nb``'s code cells, matched by cell id.
    Returns the ids of checked cells (``NBVAL_CHECK_OUTPUT``) the reference has no run output for."""
    ran = {c.get("id"): c for c in reference.cells if c.cell_type == "code" and c.get("execution_count") is not None}
    missing = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        ref = ran.get(cell.get("id"))
        if ref is not None:
            cell.outputs, cell.execution_count = ref.outputs, ref.execution_count
        elif _checked(cell):
            missing.append(cell.get("id"))
    return missing


def _referenced_notebook_class():
    import nbformat
    from nbval.plugin import IPyNbFile

    class ReferencedNotebook(IPyNbFile):
        """A shipped notebook, with the reference outputs merged in before nbval compares them."""

        def collect(self):
            items = list(super().collect())  # reads self.nb; each item holds one of its cells
            folder = Path(self.config.getoption("nbval_reference"))
            path = folder / self.path.name
            reference = nbformat.read(str(path), as_version=4) if path.is_file() else nbformat.v4.new_notebook()
            missing = merge_reference(self.nb, reference)
            if missing:
                raise self.CollectError(
                    f"{self.path.name}: no reference output in {path} for the checked cell(s) "
                    f"{', '.join(map(str, missing))}: run python3 tests/refresh_outputs.py and review the diff")
            return items

    return ReferencedNotebook


@pytest.hookimpl(hookwrapper=True)
def pytest_collect_file(file_path, parent):
    """nbval collects a shipped notebook as it is (no outputs: nothing to compare); hand it the
    notebook with the reference outputs merged in instead."""
    outcome = yield
    if not _shipped(Path(file_path)):
        return
    found = outcome.get_result() or []
    try:
        from nbval.plugin import IPyNbFile
    except ImportError:
        return
    if any(isinstance(c, IPyNbFile) for c in found):
        cls = _referenced_notebook_class()
        outcome.force_result([c for c in found if not isinstance(c, IPyNbFile)]
                             + [cls.from_parent(parent, path=Path(file_path))])
