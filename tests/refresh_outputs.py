"""Refresh the reference outputs nbval compares (cells marked ``# NBVAL_CHECK_OUTPUT``).

    python tests/refresh_outputs.py

Executes every notebook against the demo database (in a throwaway cache directory), keeps
the outputs of the checked cells only, and writes the notebooks back: other cells stay
without outputs, so the notebooks in git stay small and secret-free. Run it when a checked
cell's output changes on purpose, and review the diff.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    cache = tempfile.mkdtemp(prefix="incidentkit-refresh-")
    os.environ["INCIDENTKIT_CACHE_DIR"] = cache
    import nbformat
    import papermill

    from incidentkit.db import embedded
    from incidentkit.report.render import _kernel_manager_class

    try:
        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):
            source = nbformat.read(path, as_version=4)
            if not any("NBVAL_CHECK_OUTPUT" in c.source for c in source.cells if c.cell_type == "code"):
                continue
            executed = papermill.execute_notebook(str(path), None, kernel_name="python3", progress_bar=False,
                                                  cwd=str(path.parent), kernel_manager_class=_kernel_manager_class())
            by_id = {c.get("id"): c for c in executed.cells}
            for cell in source.cells:
                if cell.cell_type != "code":
                    continue
                if "NBVAL_CHECK_OUTPUT" in cell.source:
                    ran = by_id[cell.get("id")]
                    cell.outputs = ran.outputs
                    cell.execution_count = ran.execution_count
                else:
                    cell.outputs, cell.execution_count = [], None
            nbformat.write(source, path)
            print(f"refreshed {path.relative_to(ROOT)}", file=sys.stderr)
    finally:
        embedded.default_server().stop()
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
