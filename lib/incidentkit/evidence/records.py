"""Every log record that names a user or a workspace: the rest of the story around a failure.

A timeline shows the failed logins the scan judged; the logs hold more: the user's own requests
before the failure, and the other member's request that deleted the workspace. :func:`records_naming`
reads the logs once more and keeps the lines that contain one of the ids, dated by their own
timestamp (or, for a continuation line of a text log, the latest one before it), at most ``limit``
of them. The foreign-key error records themselves are left out: the timeline shows them as failures.

The ids are looked for at the byte level, in blocks of READ_BLOCK bytes (gzip decompressed as it
streams): only the lines that hold one are decoded, so a user's records come out of a large log
at close to the speed of reading it. A line longer than ``logs.MAX_LINE_BYTES`` is passed over;
control characters in a record are escaped when shown. Only regular files are read again (a pipe
was read once, by the failure scan).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

import gzip
import os
import stat

from ..text import one_line
from .logs import MAX_LINE_BYTES, find_all, json_records, json_time, leading_time, read_log_lines

#: Bytes read at a time.
READ_BLOCK = 4 << 20
#: How many lines back a continuation line looks for the timestamp that dates it.
LOOKBACK_LINES = 60

#: At most this many records are kept per timeline (the earliest are dropped first).
MAX_RECORDS = 300
#: How much of a record's line is shown.
RECORD_CHARS = 220
_FAILURE_MARKS = ("violates foreign key constraint", "Detail: Key (", "DETAIL:  Key (", "detail: 'Key (")


@dataclass(frozen=True)
class LogRecord:
    """One line of a log that names one of the ids looked for."""

    at: datetime
    file: str
    line: int
    text: str  # one line, control characters escaped, cut to RECORD_CHARS
    names: tuple[str, ...]  # the ids it contains

    @property
    def where(self) -> str:
        return f"{Path(self.file).name}:{self.line}"


def records_naming(files: Iterable[str], ids: Iterable[str], *, skip: Iterable[tuple[str, int]] = (),
                   limit: int = MAX_RECORDS) -> list[LogRecord]:
    """The records of ``files`` that contain one of ``ids``, in time order (at most ``limit``, the
    latest kept), leaving out the lines in ``skip`` ((file, line) of the failures already shown)."""
    needles = tuple(dict.fromkeys(i for i in ids if i))
    if not needles:
        return []
    skipped = set(skip)
    out: list[LogRecord] = []
    wanted = [n.encode() for n in needles]
    for path in files:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue
        except OSError:
            continue
        fmt, lines = read_log_lines(path)  # the format, decided as the scan decides it
        lines.close()
        for n, text, at in _file_hits(str(path), wanted, fmt):
            hits = tuple(x for x in needles if x in text)
            if not hits or (str(path), n) in skipped or any(m in text for m in _FAILURE_MARKS):
                continue
            if at is not None:
                out.append(LogRecord(at, str(path), n, one_line(text.strip(), RECORD_CHARS), hits))
    out.sort(key=lambda r: (r.at, r.file, r.line))
    return out[-limit:] if limit else out


def _open(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


#: A regular uncompressed file this large is read in parts, one per core (at most PARTS).
SPLIT_MIN_BYTES = 64 << 20
PARTS = 2


def _file_hits(path: str, needles: list[bytes], fmt: str) -> list[tuple[int, str, datetime | None]]:
    """:func:`_hits` of the whole file; a large one read in parts on the cores there are, each
    part starting at a line, its hits numbered on from the lines of the parts before it."""
    bounds = _parts(path)
    if len(bounds) < 3:  # one part: the whole file, read here (gzip and pipes included)
        return list(_hits(path, needles, fmt))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=len(bounds) - 1, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_part_hits, path, needles, fmt, a, b) for a, b in zip(bounds, bounds[1:])]
        out: list[tuple[int, str, datetime | None]] = []
        before = 0
        for future in futures:
            hits, lines = future.result()
            out.extend((n + before, text, at) for n, text, at in hits)
            before += lines
    return out


def _parts(path: str) -> list[int]:
    """The parts' bounds (line starts, then the size): one part unless the file is large,
    regular and uncompressed, and there are cores for more."""
    try:
        size = os.stat(path).st_size
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        parts = min(PARTS, cores)
        if size < SPLIT_MIN_BYTES or parts < 2 or not hasattr(os, "fork"):
            return [0, size]
        bounds = [0]
        with open(path, "rb") as fh:
            if fh.read(2) == b"\x1f\x8b":
                return [0, size]
            for k in range(1, parts):
                fh.seek(size * k // parts)
                fh.readline()  # to the next line's start
                at = fh.tell()
                if bounds[-1] < at < size:
                    bounds.append(at)
        return bounds + [size]
    except OSError:
        return [0, 0]


def _part_hits(path: str, needles: list[bytes], fmt: str, start: int, stop: int):
    """(the hits of one part, numbered from its first line; the part's line count)."""
    lines: list[int] = []
    hits = list(_hits(path, needles, fmt, start, stop, lines))
    return hits, lines[0]


def _hits(path: str, needles: list[bytes], fmt: str, first: int = 0, last: int | None = None,
          lines_out: list[int] | None = None):
    """(line number, text, time) of every line holding a needle, found at the byte level; from
    byte ``first`` (a line start) to ``last`` of an uncompressed file when given. The line count
    read is appended to ``lines_out`` at the end."""
    line_no = 0  # lines before the current block
    last_at = None  # the latest timestamp of a text log before the current block
    carry = b""
    left = None if last is None else last - first
    with _open(path) as fh:
        if first:
            fh.seek(max(0, first - READ_BLOCK))
            before = fh.read(first - fh.tell())
            if fmt == "text":  # as the block before this one would have left it
                last_at = _earlier_time(before, len(before), fmt)
        while True:
            data = fh.read(READ_BLOCK if left is None else min(READ_BLOCK, left))
            if left is not None:
                left -= len(data)
            block = carry + data
            if not data:
                end = len(block)
            else:
                end = block.rfind(b"\n") + 1
                if end == 0:  # no newline in the whole block: an overlong line, passed over
                    carry = b"" if len(block) > MAX_LINE_BYTES else block
                    continue
            starts = sorted({block.rfind(b"\n", 0, i) + 1 for nd in needles for i in find_all(block, nd, 0, end)})
            counted, counted_at = line_no, 0
            for start in starts:
                stop = block.find(b"\n", start, end)
                stop = end if stop < 0 else stop
                counted += block.count(b"\n", counted_at, start)
                counted_at = start
                if stop - start > MAX_LINE_BYTES:
                    continue
                text = block[start:stop].decode("utf-8", "replace").rstrip("\r")
                at = _time_of(text, fmt)
                if at is None and fmt == "text":
                    at = _earlier_time(block, start, fmt) or last_at
                yield counted + 1, text, at
            line_no += block.count(b"\n", 0, end)
            if fmt == "text":
                last_at = _earlier_time(block, end, fmt) or last_at
            carry = block[end:]
            if not data:
                if lines_out is not None:
                    lines_out.append(line_no)
                return


def _earlier_time(block: bytes, pos: int, fmt: str):
    """The timestamp of the nearest line before ``pos`` (within LOOKBACK_LINES) that has one."""
    q = pos
    for _ in range(LOOKBACK_LINES):
        if q <= 0:
            return None
        r = block.rfind(b"\n", 0, q - 1) + 1
        if q - r <= MAX_LINE_BYTES:
            at = _time_of(block[r:q].decode("utf-8", "replace"), fmt)
            if at is not None:
                return at
        q = r
    return None


def _time_of(text: str, fmt: str) -> datetime | None:
    if fmt == "jsonl" or fmt == "pg_json":
        records = json_records(text) if text.lstrip().startswith(("{", "[")) else None
        return json_time(records[0]) if records else None
    return leading_time(text)
