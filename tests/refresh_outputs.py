"""Refresh nbval's reference outputs (cells marked ``# NBVAL_CHECK_OUTPUT``) in tests/nbval_reference/.

    python tests/refresh_outputs.py [DIR]     # DIR: another folder to write to (to compare first)

Executes every shipped notebook that has checked cells against the demo database (in a
throwaway cache directory) and writes ``tests/nbval_reference/<notebook>.ipynb``: the notebook
with the outputs of its checked cells only (other cells without outputs). The shipped notebooks
are only read: they hold no outputs (JupyterLab would show them as results). The root
``conftest.py`` merges these outputs into the shipped notebooks, by cell id, when nbval checks
them. Run it when a checked cell's output changes on purpose, and review the diff.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "nbval_reference"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]).absolute() if argv else REFERENCE
    cache = tempfile.mkdtemp(prefix="incidentkit-refresh-")
    os.environ["INCIDENTKIT_CACHE_DIR"] = cache
    os.environ["INCIDENTKIT_STATIC"] = "1"  # the controls fall back to the parameters, as under nbval
    import nbformat
    import papermill

    from incidentkit import config
    from incidentkit.db import embedded
    from incidentkit.report.render import _kernel_manager_class

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for path in sorted(config.notebooks_dir().glob("[0-9][0-9]-*.ipynb")):
            source = nbformat.read(path, as_version=4)
            target = out_dir / path.name
            if not any("NBVAL_CHECK_OUTPUT" in c.source for c in source.cells if c.cell_type == "code"):
                if target.exists():
                    target.unlink()
                    print(f"removed {target} (no checked cell left)", file=sys.stderr)
                continue
            executed = papermill.execute_notebook(str(path), None, kernel_name="python3", progress_bar=False,
                                                  cwd=str(path.parent), kernel_manager_class=_kernel_manager_class(Path(cache)))
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
            nbformat.write(source, target)
            print(f"refreshed {target}", file=sys.stderr)
    finally:
        embedded.default_server().stop()
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
