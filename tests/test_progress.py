"""Issue 13, part 5: long steps show progress on a terminal and stay silent otherwise.

Each long step runs as a user runs it, in a child process whose stderr is either a real
pseudo-terminal (``os.openpty``) or a pipe: a log scan over 64 MB (bytes read), the race lab
(cells done), point-in-time probes (one line per probe) and a report (notebooks done). On the
terminal the progress is there and is all there is; on the pipe stderr is empty.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from incidentkit import config
from incidentkit.racelab.driver import cells_progress

EXE = shutil.which("incidentkit") or "incidentkit"
DEMO_USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"  # the demo's affected user
FILLER = b"2025-10-08T09:00:00.000Z INFO request GET /api/health 200 1ms\n"


def run(cmd: list[str], terminal: bool, cwd: Path | None = None, timeout: float = 600) -> tuple[int, str, str]:
    """Run ``cmd`` with stderr on a new pseudo-terminal (``terminal``) or a pipe; (code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if not terminal:
        p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd)
    finally:
        os.close(slave)  # the child holds it: reading ``master`` ends when the child and its own children close it
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        out = proc.communicate(timeout=timeout)[0]
    finally:
        reader.join(timeout=30)
        os.close(master)
    return proc.returncode, out.decode(errors="replace"), b"".join(chunks).decode(errors="replace")


def lines(stderr: str) -> list[str]:
    """What a terminal shows: each ``\\r`` rewrites the line, so only the last rewrite of each stays."""
    return [line.split("\r")[-1] for line in stderr.replace("\r\n", "\n").split("\n") if line.split("\r")[-1]]


def write_log(path: Path, size: int) -> Path:
    """An application log of ``size`` bytes: health checks around the demo's own log (its failure)."""
    demo = (config.PACKAGE_DIR / "data" / "demo-app.log").read_bytes()
    half = (size - len(demo)) // len(FILLER) // 2
    with open(path, "wb") as fh:
        fh.write(FILLER * half)
        fh.write(demo)
        fh.write(FILLER * half)
    return path


def same_result(a: str, b: str) -> bool:
    """Two ``--json`` outputs equal but for the time each run read the database."""
    def stable(text: str):
        return {k: v for k, v in json.loads(text).items() if k != "snapshot_at"}

    return stable(a) == stable(b)


# -- the race lab: cells done (the printer itself: fast tier) -----------------------------------
class _Stderr(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_the_race_labs_printer_counts_cells_on_a_terminal_only(monkeypatch, tty):
    err = _Stderr(tty)
    monkeypatch.setattr(sys, "stderr", err)
    show = cells_progress(2, 3)
    for done in range(1, 7):
        show(done)
    if not tty:
        assert err.getvalue() == ""
        return
    assert lines(err.getvalue()) == ["  race lab: 6 of 6 cells (2 strategies × 3 interleavings)"]
    assert err.getvalue().count("\r") == 6 and err.getvalue().endswith("\n")  # one line, rewritten, then ended


# -- the real steps, in child processes ----------------------------------------------------------
@pytest.mark.slow
def test_a_log_scan_shows_the_bytes_read_on_a_terminal_and_nothing_on_a_pipe(tmp_path, pg_server):
    log = write_log(tmp_path / "big.log", 70 * 1024 * 1024)
    cmd = [EXE, "affected", "--demo", "--logs", str(log), "--json"]
    code, out, err = run(cmd, terminal=True)
    assert code == 0, err
    shown = lines(err)
    assert shown == [f"  reading logs: {log.stat().st_size / 1e6:,.0f} of {log.stat().st_size / 1e6:,.0f} MB"], err
    code, piped, err = run(cmd, terminal=False)
    assert code == 0 and err == ""
    assert same_result(piped, out)


@pytest.mark.slow
def test_a_log_scan_just_over_50_mb_shows_progress(tmp_path, pg_server):
    log = write_log(tmp_path / "mid.log", 52 * 1000 * 1000)
    code, _, err = run([EXE, "affected", "--demo", "--logs", str(log), "--json"], terminal=True)
    assert code == 0, err
    assert any("MB" in line for line in lines(err)), err


@pytest.mark.slow
def test_the_race_lab_shows_cells_done_on_a_terminal_and_nothing_on_a_pipe(pg_server):
    cmd = [sys.executable, "-c", "from incidentkit.racelab import run_race_lab; "
                                 "print(len(run_race_lab(strategies=['seed_original'])))"]
    code, out, err = run(cmd, terminal=True)
    assert code == 0 and out.strip() == "5", err
    assert lines(err) == ["  race lab: 5 of 5 cells (1 strategy × 5 interleavings)"], err
    assert [f"{n} of 5" for n in range(1, 6)] == re.findall(r"(\d of 5)", err)  # each cell, in order
    code, out, err = run(cmd, terminal=False)
    assert code == 0 and out.strip() == "5" and err == ""


@pytest.mark.slow
def test_point_in_time_probes_show_one_line_each_on_a_terminal_and_nothing_on_a_pipe(pg_server):
    from incidentkit.db.demo_asof import demo_as_of_command

    cmd = [EXE, "timeline", "--demo-production", DEMO_USER, "--as-of-command", demo_as_of_command(), "--json"]
    code, out, err = run(cmd, terminal=True)
    assert code == 0, err
    shown = lines(err)
    assert shown and all(re.fullmatch(r"incidentkit: probe \d+: workspace [0-9a-f-]{36} (existed|absent) at "
                                      r"2025-10-08 [0-9:.]+ UTC", line) for line in shown), err
    assert [int(line.split()[2].rstrip(":")) for line in shown] == list(range(1, len(shown) + 1))
    assert {"existed", "absent"} <= {line.split()[5] for line in shown}  # the bracket: both sides probed
    code, piped, err = run(cmd, terminal=False)
    assert code == 0 and err == ""
    assert same_result(piped, out)


@pytest.mark.slow
def test_a_report_shows_each_notebook_on_a_terminal_and_nothing_on_a_pipe(tmp_path, pg_server):
    cmd = [EXE, "report", "--demo", "--no-race-lab", "--date", "2025-10-09"]
    code, out, err = run(cmd + ["--out", str(tmp_path / "tty")], terminal=True, cwd=tmp_path)
    assert code == 0, err
    shown = lines(err)
    names = ["01-diagnosis", "02-affected-users", "03-user-timeline-01", "00-postmortem"]
    # Only progress reaches the terminal (nothing from the kernels): each notebook running, then done.
    assert all(re.fullmatch(r"  [0-9a-z-]+: (running|done in \d+\.\d s \(\d/\d\+? notebooks\))", line)
               for line in shown), err
    assert sorted(line.split(":")[0].strip() for line in shown if line.endswith("running")) == sorted(names)
    done = [line for line in shown if "done in" in line]
    assert sorted(line.split(":")[0].strip() for line in done) == sorted(names)
    # Counted as they finish, out of the notebooks planned so far: "3+" until 02's users are known.
    counts = [re.search(r"\((\d)/(\d\+?) notebooks\)", line).groups() for line in done]
    assert [c[0] for c in counts] == ["1", "2", "3", "4"] and counts[-1] == ("4", "4")
    totals = [total for _, total in counts]
    assert set(totals) <= {"3+", "4"} and totals == sorted(totals, key=lambda t: t == "4")  # "3+", then "4"
    assert done[-1].startswith("  00-postmortem")  # the incident document last, from the others' results
    code, out, err = run(cmd + ["--out", str(tmp_path / "pipe")], terminal=False, cwd=tmp_path)
    assert code == 0 and err == ""
