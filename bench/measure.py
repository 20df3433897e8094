"""Run one command in its own process and measure its wall time and peak memory.

Peak memory is reported two ways, and the benchmark shows the larger:

* ``rusage_mb``: ``ru_maxrss`` from ``wait4`` on the child: the peak RSS of the child itself,
  or of any one of its descendants it waited for, whichever is largest (the kernel keeps a
  maximum, not a sum);
* ``tree_mb``: the largest *sum* of ``VmRSS`` over the child and all its live descendants,
  sampled every ``interval`` seconds from ``/proc`` (what a papermill run costs while its
  kernel runs beside it). A peak shorter than the interval can be missed, so it is a floor.

What is never included: the PostgreSQL server's backends (they are children of the
postmaster, not of the measured command).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Measured:
    seconds: float
    rusage_mb: float
    tree_mb: float
    returncode: int
    stdout: str
    stderr: str
    processes: int = 1  # how many distinct processes the sampler saw in the tree
    result: Any = None  # the JSON the command printed last on stdout, when it printed one
    extra: dict = field(default_factory=dict)

    @property
    def peak_mb(self) -> float:
        return max(self.rusage_mb, self.tree_mb)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error(self) -> str:
        lines = [ln for ln in (self.stderr or self.stdout or "").strip().splitlines() if ln.strip()]
        return (lines[-1] if lines else f"exit {self.returncode}")[:300]


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces or parentheses, so split after the last ')'.
        rest = data[data.rfind(b")") + 2:].split()
        if len(rest) > 1:
            out.setdefault(int(rest[1]), []).append(int(name))
    return out


def _tree(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.seen: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _tree(self.pid)
            self.seen.update(pids)
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in pids))
            self.stop.wait(self.interval)


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None, timeout: float = 3600,
        interval: float = 0.02, stdin_data: str | None = None) -> Measured:
    """Run ``cmd``; its time from spawn to exit, its peak memory (see the module doc), its output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                            env=env, cwd=cwd, text=True)
    sampler = _Sampler(proc.pid, interval)
    sampler.start()
    out_chunks: list[str] = []
    err_chunks: list[str] = []

    def pump(stream, sink):
        for chunk in iter(lambda: stream.read(65536), ""):
            sink.append(chunk)

    readers = [threading.Thread(target=pump, args=(proc.stdout, out_chunks), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err_chunks), daemon=True)]
    for r in readers:
        r.start()
    if stdin_data:
        proc.stdin.write(stdin_data)
    proc.stdin.close()
    deadline = time.monotonic() + timeout
    status = rusage = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.002)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop.set()
    sampler.join()
    for r in readers:
        r.join()
    stdout, stderr = "".join(out_chunks), "".join(err_chunks)
    result = None
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{") or line.startswith("["):
            try:
                result = json.loads(line)
            except ValueError:
                pass
            break
    return Measured(seconds=seconds, rusage_mb=rusage.ru_maxrss / 1024, tree_mb=sampler.peak_kb / 1024,
                    returncode=proc.returncode, stdout=stdout, stderr=stderr, processes=len(sampler.seen),
                    result=result)
