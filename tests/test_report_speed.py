"""Issue 13, part 3: reports in seconds, without dropping anything.

A report's notebooks start as soon as what they read is there, each on a kernel of its own that
was started, and has imported what the cells use, while the others ran. These tests check that
plan from what the run itself records (papermill's start and end times in each executed
notebook: an order, never a duration), that a warmed kernel is still a fresh one (nothing of
the warm-up is visible to the notebook), and that every kernel the run started, used or not, is
gone when it ends. The times themselves are measured by ``python bench/run.py --only report``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from incidentkit.report import render

EXE = shutil.which("incidentkit") or "incidentkit"


def _times(folder: Path) -> dict[str, tuple[datetime, datetime]]:
    """Each executed notebook's papermill start and end, by name."""
    out = {}
    for path in folder.glob("*.ipynb"):
        meta = json.loads(path.read_text(encoding="utf-8"))["metadata"]["papermill"]
        out[path.stem] = (datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"]))
    return out


def _processes_naming(text: str) -> list[int]:
    """PIDs of the live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_notebooks_start_as_soon_as_what_they_read_is_there(demo_report):
    folder, _, _ = demo_report
    t = _times(folder)
    assert set(t) == {"00-postmortem", "01-diagnosis", "02-affected-users", "03-user-timeline-01", "04-race-lab"}
    start, end = {k: v[0] for k, v in t.items()}, {k: v[1] for k, v in t.items()}
    first = ("01-diagnosis", "02-affected-users", "04-race-lab")
    # The analyses that need only the database (and the logs) run side by side: each starts
    # before any of them ends.
    assert max(start[k] for k in first) < min(end[k] for k in first)
    # A timeline needs the affected users 02 kept; it does not wait for the others.
    assert start["03-user-timeline-01"] >= end["02-affected-users"]
    # The incident document is assembled from what all the others kept: it comes last.
    assert start["00-postmortem"] >= max(end[k] for k in t if k != "00-postmortem")


@pytest.mark.slow
@pytest.mark.parametrize("forked", ["1", "0"])
def test_a_warmed_kernel_is_a_fresh_one(tmp_path, pg_server, monkeypatch, forked):
    """The kernel imported what the cells use before its notebook came (forked from the run's
    kernel server, which imported it once; or, with forking off, a process of its own that did),
    so the cells find it loaded; the notebook sees nothing else of that: no name left behind,
    execution counts from 1, the run's own environment and directory."""
    monkeypatch.setenv(render.FORK_KERNELS_ENV, forked)
    probe = ("import json, os, sys\n"
             "warm = sorted(m for m in ('pandas', 'matplotlib.pyplot', 'incidentkit.report.notebook') "
             "if m in sys.modules)\n"
             "names = sorted(n for n in globals() if not n.startswith('_') and n not in "
             "('In', 'Out', 'get_ipython', 'exit', 'quit', 'open', 'json', 'os', 'sys', 'x', 'warm'))\n"
             "print(json.dumps({'warm': warm, 'names': names, 'share': bool(os.environ.get('INCIDENTKIT_RUN_SHARE')), "
             "'cwd': os.getcwd(), 'leftover': [n for n in globals() if 'ik_warm' in n]}))")
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell(probe)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src = tmp_path / "98-probe.ipynb"
    nbformat.write(nb, src)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = render.render_report([render.NotebookRun(src, "98-probe", {"x": 2})], tmp_path / "out",
                                      date="2025-10-08", progress=lambda _: None)
    finally:
        os.chdir(here)
    executed = nbformat.read(result.folder / "98-probe.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # the warm-up counted nothing
    seen = json.loads(code[-1].outputs[0]["text"])
    assert seen["warm"] == ["incidentkit.report.notebook", "matplotlib.pyplot", "pandas"]
    assert seen["names"] == [] and seen["leftover"] == []  # the warm-up left no name behind
    assert seen["share"] and seen["cwd"] == str(tmp_path)  # started in the user's directory, with the run's share


@pytest.mark.slow
def test_every_kernel_is_gone_when_the_run_ends_even_one_never_used(tmp_path, fresh_db):
    """A log with no failure: no user to follow, so the kernel started for a first timeline is
    never used. The run still succeeds, says nothing on stderr, and leaves no process behind."""
    log = tmp_path / "quiet.log"
    log.write_text("2025-10-08T09:00:00.000Z INFO request GET /api/health 200 1ms\n")
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "IK_SPEED_URL": fresh_db}
    proc = subprocess.Popen([EXE, "report", "--database-url-env", "IK_SPEED_URL", "--logs", str(log),
                             "--no-race-lab", "--out", str(tmp_path / "out"), "--date", "2025-10-08"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert err == ""
    folder = tmp_path / "out" / "2025-10-08"
    assert sorted(p.stem for p in folder.glob("*.ipynb")) == ["00-postmortem", "01-diagnosis", "02-affected-users"]
    assert _processes_naming(f"incidentkit-run-{proc.pid}-") == []  # no kernel of the run is left
    assert not list(Path(render.tempfile.gettempdir()).glob(f"incidentkit-run-{proc.pid}-*"))
