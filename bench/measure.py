"""Run one command in its own process and measure its wall time and peak memory.

Peak memory comes from ``/proc``, sampled while the command runs:

* ``own_mb``: the command's own peak RSS, ``VmHWM`` (the high-water mark of its address space
  since its ``exec``), the last value read before it exited; a Python task of ``bench/tasks.py``
  also reports its ``VmHWM`` itself as it ends, and the larger of the two counts;
* ``tree_mb`` (with ``tree=True``): the largest *sum* of ``VmRSS`` over the command and all its
  live descendants (papermill and its kernels), sampled every ``interval`` seconds. A peak
  shorter than the interval can be missed, so it is a floor.

``getrusage``/``wait4``'s ``ru_maxrss`` is not used: Linux carries the parent's resident set
at ``fork`` over the child's ``exec`` into it, so every child would "peak" at least at the
size of the benchmark's own process.

What is never included: the PostgreSQL server's backends (they are children of the
postmaster, not of the measured command).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Measured:
    seconds: float
    own_mb: float
    tree_mb: float
    returncode: int
    stdout: str
    stderr: str
    processes: int = 1  # how many distinct processes the sampler saw in the tree
    result: Any = None  # the JSON the command printed last on stdout, when it printed one

    @property
    def peak_mb(self) -> float:
        return max(self.own_mb, self.tree_mb)

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


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in kB; zeros when it is gone (or a zombie)."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rss, hwm


class _Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float, tree: bool):
        super().__init__(daemon=True)
        self.pid, self.interval, self.tree = pid, interval, tree
        self.own_kb = self.tree_kb = 0
        self.seen: set[int] = {pid}
        self.stop = threading.Event()

    def sample(self) -> None:
        rss, hwm = _status_kb(self.pid)
        self.own_kb = max(self.own_kb, hwm)
        total = rss
        if self.tree:
            pids = _tree(self.pid)
            self.seen.update(pids)
            total += sum(_status_kb(p)[0] for p in pids if p != self.pid)
        self.tree_kb = max(self.tree_kb, total)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None, timeout: float = 3600,
        tree: bool = False, interval: float | None = None) -> Measured:
    """Run ``cmd``: its time from spawn to exit, its peak memory (see the module doc), its output.

    ``tree``: also sample the RSS of its descendants (every 50 ms unless ``interval`` says
    otherwise); without, only the command's own ``VmHWM`` is read, every 5 ms.
    """
    interval = interval or (0.05 if tree else 0.005)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, text=True)
    sampler = _Sampler(proc.pid, interval, tree)
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
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    seconds = time.perf_counter() - t0
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
    own_mb = sampler.own_kb / 1024
    if isinstance(result, dict) and result.get("vmhwm_mb"):
        own_mb = max(own_mb, float(result["vmhwm_mb"]))
    return Measured(seconds=seconds, own_mb=own_mb, tree_mb=sampler.tree_kb / 1024, returncode=proc.returncode,
                    stdout=stdout, stderr=stderr, processes=len(sampler.seen), result=result)
