"""Find every violation of the users' primary-workspace foreign key in log files.

The incident's error (node-postgres, as the application logs it)::

    error: insert or update on table "users" violates foreign key constraint "users_primary_workspace_id_workspaces_id_fk"
    Detail: Key (primary_workspace_id)=(a7189b92-...) is not present in table "workspaces".

:func:`scan_logs` (or the streaming :func:`iter_failures`) reads files, globs and directories,
recognises the format of each file from its first non-empty lines and emits one
:class:`LogFailure` per failed insert or update. Five formats are understood:

``text``
    Application logs: timestamped lines, the ``error: ...`` line, its ``Detail:`` line (or
    node-postgres' ``detail: '...'`` property). The time is the most recent timestamp at or
    before the error line; the user id comes from the error record's own lines, else from the
    few lines just before it (the request line).
``jsonl``
    One JSON object per line, as log drains export them (Vercel, Datadog, pino...). The time is
    under ``timestamp``/``time``/``ts``/``@timestamp``/``date`` (ISO-8601 or epoch seconds,
    milliseconds, ...), possibly nested; the user id under ``userId``/``user_id``/``user``/
    ``privyDid``/``usr.id``..., or else anywhere in the record's text.
``pg_stderr``, ``pg_csv``, ``pg_json``
    PostgreSQL's own ``stderr`` (prefixes starting with ``%m`` or ``%t``), ``csvlog`` and
    ``jsonlog`` output. The user id comes from the ``CONTEXT`` (bind parameters, logged when
    ``log_parameter_max_length_on_error`` is set) or else from the ``STATEMENT``.

A user id is whatever ``user_pattern`` matches (its named group ``user`` or first group when it
has one). Only the given constraint counts; other violations are ignored. The constraint is a
name, or a :class:`ForeignKey` read from the database's catalog (``evidence.history.foreign_key``),
whose table and column names a ``Detail: Key (...)`` must carry too. Both sides of the key are
found: ``kind = "insert"`` (``insert or update on table ...``: a failed login) and ``kind =
"delete"`` (``update or delete on table "<workspaces>" violates foreign key constraint ... on table
"<users>"``, ``Key (id)=(...) is still referenced from table ...``). A scan gives one record per
file that holds the failure; :func:`merge_failures` makes the records of one failure seen in
several logs one failure listing every place it was seen. Damaged content never
stops a scan: undecodable, binary, overlong, truncated or unparsable lines are counted in
``skipped_lines`` and skipped. Only paths that cannot be read at all raise
:class:`~incidentkit.exceptions.LogReadError`.

Memory stays bounded whatever a file holds (a few tens of MB in all): files are read in blocks
of READ_BLOCK bytes, gzip (detected by its magic bytes) decompressed block by block; a line
longer than MAX_LINE_BYTES is skipped as it streams by; runs of blank lines are counted, not
kept; the format is decided within SNIFF_MAX_LINES lines and SNIFF_MAX_BYTES; a csvlog record
is cut past MAX_CSV_RECORD_CHARS or MAX_CSV_RECORD_LINES. Regular files are read up to their
size when opened; pipes (a named pipe, ``<(command)``) until their writer closes them, failing
when nothing comes within PIPE_OPEN_SECONDS or the pipe is then silent for PIPE_IDLE_SECONDS;
devices (``/dev/zero``), sockets and other special files are refused. Each file's read is
recorded (:class:`LogFileRead`: size, bytes and lines read, lines skipped, SHA-256 of the bytes
read, computed in the same pass on a second thread).

Every format is skimmed: in a block of clean UTF-8 text, while the parser holds no record open,
the lines before the next candidate (a line with the foreign-key error text) are passed over at
the byte level, with only what they can still change worked out: for text, the latest timestamp
and the last USER_LOOKBACK_LINES lines (parsed); for stderr and csvlog, which lines would be
skipped (one bytes regex over the stretch finds the few lines that are not certainly well
formed, and those alone are decided line by line); for JSON lines and jsonlog, which lines are
not JSON objects (each is still parsed: JSON's validity has no cheaper test). A candidate and
the lines its record needs (``Detail:``, ``DETAIL``/``CONTEXT``/``STATEMENT``, a csvlog record's
continuation lines) are read by the format's parser as before. The results, skipped-line
counts and file reads included, are those of reading every line (``SKIM = False``;
``tests/test_log_speed_equivalence.py`` compares both). :func:`scan_logs` reads several files
holding PARALLEL_MIN_BYTES or more in worker processes, one file each, the results in file order.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
import os
import queue
import re
import select
import stat
import sys
import threading
import zlib
from collections import Counter, deque
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Union

from ..exceptions import ConfigError, LogReadError


from ..text import iso_utc

DEFAULT_USER_PATTERN = r"did:privy:[a-z0-9]+"
DEFAULT_CONSTRAINT = "users_primary_workspace_id_workspaces_id_fk"
#: Failures of one constraint seen in several logs within this many seconds (same user, or same
#: key) are one failure seen in several places (:func:`merge_failures`).
SAME_FAILURE_SECONDS = 2.0
#: The two sides of a foreign key's violation: a row inserted or updated with a key the referenced
#: table lacks (the failed login), and a referenced row updated or deleted while still referenced.
KINDS = ("insert", "delete")

FORMATS = ("text", "jsonl", "pg_stderr", "pg_csv", "pg_json")

#: A physical line longer than this (newline included) is skipped (and counted), never held whole.
MAX_LINE_BYTES = 1 << 20
#: A csvlog record (several physical lines when fields hold newlines) longer than this is skipped.
MAX_CSV_RECORD_CHARS = 4 << 20
#: ... or spanning more physical lines than this (blank lines count).
MAX_CSV_RECORD_LINES = 100_000
#: How many non-empty lines decide a file's format.
SNIFF_LINES = 20
#: The format is decided within this many physical lines (blank, indented and skipped lines count)...
SNIFF_MAX_LINES = 1000
#: ... and this many bytes (decompressed) from the start of the file, whichever comes first.
SNIFF_MAX_BYTES = 4 << 20
#: Bytes read (or decompressed) at a time.
READ_BLOCK = 1 << 20
#: A named pipe must deliver its first bytes within this many seconds (a pipe no one writes to)...
PIPE_OPEN_SECONDS = 5.0
#: ... and then never stay silent longer than this while still open.
PIPE_IDLE_SECONDS = 60.0
#: How many lines after its error line a text record may extend (node prints ~25).
TEXT_RECORD_MAX_LINES = 60
#: How many lines before an error line are searched for its user id (the request line).
USER_LOOKBACK_LINES = 10
#: A repeat of the same error within this many lines, before any detail, is the same failure.
TEXT_DUPLICATE_WINDOW = 5

PathArg = Union[str, "os.PathLike[str]"]
Paths = Union[PathArg, Iterable[PathArg]]


# -- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ForeignKey:
    """The foreign key a scan looks for: its name and, when known (from the catalog), the names
    its violations print: ``insert or update on table "<table>" ...`` with ``Detail: Key
    (<column>)=(...) is not present in table "<referenced_table>"``, and on the delete side
    ``update or delete on table "<referenced_table>" ...`` with ``Key (<referenced_column>)=(...)
    is still referenced from table "<table>"``. A name alone (``ForeignKey("fk")``) checks no
    ``Detail``'s names."""

    name: str
    table: str | None = None
    column: str | None = None
    referenced_table: str | None = None
    referenced_column: str | None = None

    @classmethod
    def of(cls, constraint: "str | ForeignKey") -> "ForeignKey":
        if isinstance(constraint, ForeignKey):
            return constraint
        if not isinstance(constraint, str) or not constraint:
            raise ConfigError(f"not a constraint name: {constraint!r}")
        return cls(constraint)

    def detail_fits(self, kind: str, columns: str, table: str) -> bool:
        """A ``Key (columns)=(...) ... table "table"`` detail belongs to this key's violation of ``kind``."""
        column, other = ((self.column, self.referenced_table) if kind == "insert"
                         else (self.referenced_column, self.table))
        if column is not None and columns.strip().strip('"') != column:
            return False
        return other is None or not table or table == other


#: The reference schema's key, with the names its violations print.
DEFAULT_FOREIGN_KEY = ForeignKey(DEFAULT_CONSTRAINT, "users", "primary_workspace_id", "workspaces", "id")


@dataclass(frozen=True)
class LogFailure:
    """One violation of the foreign key, as one log file recorded it (or, merged, as several did).

    ``kind`` is ``"insert"`` (a user inserted or updated with a missing workspace: a failed login)
    or ``"delete"`` (a workspace deleted while still referenced). ``sources`` lists every
    (file, line) where the failure was seen once :func:`merge_failures` has merged the records of
    several logs; it is empty for a record straight from one file (:attr:`places` covers both).
    """

    at: datetime  # timezone-aware, UTC
    user_id: str | None
    workspace_id: str | None
    constraint: str
    source: str  # the file, as given or as found in a directory
    line: int  # 1-based line where the failure record starts (the error line)
    format: str  # one of FORMATS
    kind: str = "insert"  # one of KINDS
    sources: tuple[tuple[str, int], ...] = ()

    @property
    def places(self) -> tuple[tuple[str, int], ...]:
        """Every (file, line) where this failure was seen, the first (``source``, ``line``) first."""
        return self.sources or ((self.source, self.line),)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``at`` is ISO-8601 UTC ending in ``Z``."""
        return {
            "at": iso_utc(self.at),
            "user_id": self.user_id,
            "workspace_id": self.workspace_id,
            "constraint": self.constraint,
            "source": self.source,
            "line": self.line,
            "format": self.format,
            "kind": self.kind,
            "sources": [{"file": f, "line": n} for f, n in self.places],
        }


def merge_failures(failures: Iterable[LogFailure], seconds: float = SAME_FAILURE_SECONDS) -> list[LogFailure]:
    """One :class:`LogFailure` per distinct failure, each listing every place it was seen.

    Two records are the same failure when they are of the same constraint and kind, from
    different files, at most ``seconds`` after the merged failure's earliest record, and name
    the same user (or, when either names none, the same key). Records from one file are never merged with each other (a retry in one
    log is another failure). The merged failure is its earliest record (``at``, ``source``,
    ``line``, ``format``), with a user id or key it lacked taken from the others, and
    ``sources`` in time order. The result is in time order (ties: the order given).
    """
    from .inputs import normalize_workspace_id

    ordered = sorted(enumerate(failures), key=lambda p: (p[1].at, p[0]))
    groups: list[list[LogFailure]] = []
    open_groups: deque[list[LogFailure]] = deque()  # groups whose first record is within reach
    for _, f in ordered:
        while open_groups and (f.at - open_groups[0][0].at).total_seconds() > seconds:
            open_groups.popleft()
        home = next((g for g in open_groups if _same_failure(g, f, normalize_workspace_id)), None)
        if home is None:
            home = []
            groups.append(home)
            open_groups.append(home)
        home.append(f)
    out = []
    for g in groups:
        first = g[0]
        if len(g) == 1 and not first.sources:
            out.append(first)
            continue
        user = first.user_id or next((x.user_id for x in g if x.user_id), None)
        ws = first.workspace_id or next((x.workspace_id for x in g if x.workspace_id), None)
        places = tuple(dict.fromkeys(p for x in g for p in x.places))
        out.append(replace(first, user_id=user, workspace_id=ws, sources=places))
    return out


def _same_failure(group: list[LogFailure], f: LogFailure, norm: Callable[[Any], Any]) -> bool:
    first = group[0]
    if (first.constraint, first.kind) != (f.constraint, f.kind):
        return False
    files = {p[0] for x in group for p in x.places}
    if any(p[0] in files for p in f.places):
        return False
    users = {x.user_id for x in group if x.user_id}
    keys = {norm(x.workspace_id) for x in group if x.workspace_id}
    if f.user_id and users:
        if f.user_id not in users:
            return False
        return not (f.workspace_id and keys) or norm(f.workspace_id) in keys
    return bool(f.workspace_id) and norm(f.workspace_id) in keys


@dataclass
class LogFileRead:
    """What reading one file amounted to (for a run's manifest); updated live while it is read.

    ``size`` is the file's size when it was opened (``None`` for a pipe); ``bytes_read`` the bytes
    taken from it (compressed bytes for gzip: a file that grows while it is read is read up to
    its size at open); ``lines`` the physical lines read (decompressed), ``skipped_lines`` those
    among them that were skipped. ``sha256`` is the digest of exactly the ``bytes_read`` bytes,
    computed in the same pass as the scan; it is set once the file has been read to its end
    (to its size at open, or to a pipe's end), ``None`` otherwise.
    """

    path: str
    size: int | None = None
    bytes_read: int = 0
    lines: int = 0
    skipped_lines: int = 0
    format: str | None = None
    compressed: bool = False
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "bytes_read": self.bytes_read,
            "lines": self.lines,
            "skipped_lines": self.skipped_lines,
            "format": self.format,
            "compressed": self.compressed,
            "sha256": self.sha256,
        }


@dataclass
class LogScan:
    """Everything one scan found: the failures, the lines it had to skip and the files it read.

    ``file_reads`` has one :class:`LogFileRead` per file, in ``files`` order. ``failures`` are
    the records as each file holds them (one failure seen in two logs is two records here: see
    :func:`merge_failures`); ``constraint`` is the foreign key the scan looked for.
    """

    failures: list[LogFailure] = field(default_factory=list)
    skipped_lines: int = 0
    files: list[str] = field(default_factory=list)
    file_reads: list[LogFileRead] = field(default_factory=list)
    constraint: ForeignKey = DEFAULT_FOREIGN_KEY
    #: The names of the other foreign keys whose violations the scan passed by (not looked into).
    other_constraints: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": [f.to_dict() for f in self.failures],
            "skipped_lines": self.skipped_lines,
            "files": list(self.files),
            "file_reads": [r.to_dict() for r in self.file_reads],
        }


class ScanStats(Protocol):
    """What ``iter_failures(stats=...)`` updates as it goes (a :class:`LogScan` will do).

    An object that also has a ``file_reads`` list gets a :class:`LogFileRead` per file.
    """

    skipped_lines: int
    files: list[str]


# -- public entry points ------------------------------------------------------------------
def iter_log_files(paths: Paths) -> Iterator[Path]:
    """The files behind ``paths`` (files, globs, directories searched recursively, any mix).

    Sorted and deduplicated (a file reached twice is read once). Hidden files and directories
    found while walking are left out. Raises :class:`LogReadError` when a path does not exist,
    a glob matches nothing or a directory holds no file.
    """
    found: dict[str, Path] = {}
    for item in _as_list(paths):
        for path in _expand(item):
            found.setdefault(os.path.realpath(path), path)
    return iter(sorted(found.values(), key=str))


def iter_failures(
    paths: Paths,
    *,
    user_pattern: str | re.Pattern[str] = DEFAULT_USER_PATTERN,
    constraint: str | ForeignKey = DEFAULT_CONSTRAINT,
    stats: ScanStats | None = None,
) -> Iterator[LogFailure]:
    """Stream the failures in ``paths``, file by file, in file order.

    Paths and the user pattern are checked at once (``LogReadError``/``ConfigError``); files are
    opened as the iteration reaches them. ``stats``, when given, is updated as the scan goes:
    ``files`` gets each file opened, ``skipped_lines`` counts the lines skipped and
    ``file_reads`` (when it has one) gets each file's :class:`LogFileRead`.

    ``constraint`` is the foreign key's name, or a :class:`ForeignKey` (from the catalog) whose
    table and column names a ``Detail`` must also carry. Both sides of its violation are found
    (``kind`` ``"insert"`` and ``"delete"``); other constraints are ignored.
    """
    rx = compile_user_pattern(user_pattern)
    fk = ForeignKey.of(constraint)
    files = list(iter_log_files(paths))
    target: ScanStats = stats if stats is not None else LogScan()
    return _iter_files(files, rx, fk, target)


def scan_logs(
    paths: Paths,
    *,
    user_pattern: str | re.Pattern[str] = DEFAULT_USER_PATTERN,
    constraint: str | ForeignKey = DEFAULT_CONSTRAINT,
    digest: bool = True,
) -> LogScan:
    """Read everything and return the failures with the skipped-line count and the files read.

    With cores to spare and PARALLEL_MIN_BYTES or more to read, the work is shared among
    PARALLEL_WORKERS processes: several files one each at a time, and a large regular
    uncompressed file in parts (see :func:`_plan`); the result is the same, in the same order.
    ``digest=False`` leaves each file's ``sha256`` out (``None``): a report's manifest wants it,
    a look at the failures does not pay for it."""
    scan = LogScan(constraint=ForeignKey.of(constraint))
    rx = compile_user_pattern(user_pattern)
    files = list(iter_log_files(paths))
    workers = _parallel_workers(files)
    if workers > 1:
        _scan_in_processes(_plan(files, workers, scan.constraint), rx, scan, workers, digest)
    else:
        scan.failures.extend(_iter_files(files, rx, scan.constraint, scan, digest))
    return scan


#: Files are scanned in parallel when they hold this many bytes in all (and there are cores).
PARALLEL_MIN_BYTES = 64 << 20
#: At most this many processes scan at once.
PARALLEL_WORKERS = 2
#: A regular, uncompressed file this large is read in parts, one per worker.
SPLIT_MIN_BYTES = 64 << 20
#: Formats whose parts can be read apart: JSON lines are independent; a text or stderr part starts
#: at a quiet line (see :func:`_quiet_start`). csvlog's quoted fields may hold any line: never split.
_SPLITTABLE = ("text", "jsonl", "pg_json", "pg_stderr")
#: The lines before a text or stderr part that its worker reads first, counting nothing, so that
#: its parser stands where a whole read would: with no error text among them no failure record
#: is open at the part's start (one ends within TEXT_RECORD_MAX_LINES of its error line, or at
#: the next stderr log line), and they hold the last timestamp and the user look-back.
_PRIMER_LINES = 2 * (TEXT_RECORD_MAX_LINES + USER_LOOKBACK_LINES)
#: A part's start is looked for in this many bytes after its even share; else the file is not split.
_PRIMER_SEARCH_BYTES = 8 << 20


def _parallel_workers(files: list[Path]) -> int:
    if not files or PARALLEL_WORKERS < 2 or not hasattr(os, "fork"):
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    total = 0
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            return 1  # let the serial scan report it
        if not stat.S_ISREG(st.st_mode):
            return 1  # pipes and the like: read here, as given
        total += st.st_size
    if len(files) < 2 and total < SPLIT_MIN_BYTES:
        return 1
    return min(PARALLEL_WORKERS, cores) if total >= PARALLEL_MIN_BYTES else 1


@dataclass(frozen=True)
class _Part:
    """One worker's share of a file: bytes ``start``..``stop`` (line starts; whole file: 0, None),
    its format once known, and the lines just before ``start`` to replay first (see _PRIMER_LINES)."""

    path: Path
    start: int = 0
    stop: int | None = None
    format: str | None = None
    primer: tuple[str | None, ...] = ()


def _plan(files: list[Path], workers: int, fk: ForeignKey) -> list[list[_Part]]:
    """Each file's parts: a large regular uncompressed file of a splittable format in ``workers``
    parts starting at quiet lines; any other file whole."""
    plan = []
    for path in files:
        parts = None
        try:
            size = os.stat(path).st_size
            if size >= SPLIT_MIN_BYTES:
                parts = _split_file(path, size, workers, fk)
        except OSError:
            parts = None  # the scan itself reports it
        plan.append(parts or [_Part(path)])
    return plan


def _split_file(path: Path, size: int, workers: int, fk: ForeignKey) -> list[_Part] | None:
    with open(path, "rb") as fh:
        if fh.read(2) == _GZIP_MAGIC:
            return None
    probe = _Ctx(str(path), re.compile("(?!)"), fk, LogScan())
    units = _units(path, probe)
    try:
        fmt, _ = _sniff(units, probe)
    finally:
        units.close()
    if fmt not in _SPLITTABLE:
        return None
    starts: list[tuple[int, tuple[str | None, ...]]] = [(0, ())]
    with open(path, "rb") as fh:
        for k in range(1, workers):
            found = _quiet_start(fh, size * k // workers, fmt)
            if found is None or found[0] <= starts[-1][0] or found[0] >= size:
                return None
            starts.append(found)
    bounds = [s for s, _ in starts[1:]] + [size]
    return [_Part(path, start, stop, fmt, primer) for (start, primer), stop in zip(starts, bounds)]


def _quiet_start(fh: Any, target: int, fmt: str) -> tuple[int, tuple[str | None, ...]] | None:
    """A line start at or after ``target`` where a part may begin, with its primer lines; ``None``
    when there is none within _PRIMER_SEARCH_BYTES."""
    back = 0 if fmt in ("jsonl", "pg_json") else min(target, 4 << 20)
    lo = target - back
    fh.seek(lo)
    data = fh.read(back + _PRIMER_SEARCH_BYTES)
    pos = back
    while True:
        nl = data.find(b"\n", max(pos - 1, 0))
        if nl < 0 or nl + 1 >= len(data):
            return None
        start = nl + 1
        if fmt in ("jsonl", "pg_json"):  # independent lines: any line start will do
            return lo + start, ()
        primer, pos = _primer(data, start, fmt, lo == 0)
        if primer is not None:
            return lo + start, primer


def _primer(data: bytes, start: int, fmt: str, at_file_start: bool) -> tuple[tuple[str | None, ...] | None, int]:
    """(the _PRIMER_LINES lines before ``start``, decoded as the scan would with ``None`` for a
    line it skips, or all lines before it near the file's start; where to look next) when they make
    a quiet start: no error text, and a timestamped line (text) or a log line (stderr) among them;
    else (``None``, a later offset to try)."""
    p = start
    for _ in range(_PRIMER_LINES):
        if p <= 0:
            break
        p = data.rfind(b"\n", 0, p - 1) + 1
    if p == 0 and not at_file_start:
        return None, start + 1  # lines longer than what was read: look further on
    window = data[p:start]
    hit = window.rfind(_NEEDLE)
    if hit >= 0:  # begin looking again _PRIMER_LINES lines after the error text
        q = p + hit
        for _ in range(_PRIMER_LINES + 1):  # past the error text's line, then as many lines again
            q = data.find(b"\n", q) + 1
            if q == 0:
                return None, len(data)
        return None, q
    lines = tuple(_decode(raw) if len(raw) < MAX_LINE_BYTES else None for raw in window.split(b"\n")[:-1])
    if any(text is not None and _marks_state(text, fmt) for text in lines):
        return lines, start
    q = start  # none: try again after the next line that has one
    while (nl := data.find(b"\n", q)) >= 0:
        text = _decode(data[q:nl + 1]) if nl + 1 - q < MAX_LINE_BYTES else None
        q = nl + 1
        if text is not None and _marks_state(text, fmt):
            return None, q
    return None, len(data)


def _marks_state(text: str, fmt: str) -> bool:
    """Whether the idle parser, reading this line, takes all it keeps from before it from the line
    itself: a text line's timestamp (the latest counts), a stderr log line (it closes any record)."""
    if fmt == "text":
        return _leading_time(text) is not None
    m = _STDERR_LINE.match(text)
    return m is not None and m.group("sev") not in _PG_SECONDARY


#: In a worker process: the count of bytes read by all workers, shared with the parent (see _scan_in_processes).
_WORKER_DONE: Any = None


def _worker_done(done: Any) -> None:
    global _WORKER_DONE
    _WORKER_DONE = done


def _scan_part(part: _Part, rx: re.Pattern[str], fk: ForeignKey, digest: bool) -> LogScan:
    scan = LogScan(constraint=fk)
    ctx = _Ctx(str(part.path), rx, fk, scan, digest=digest and part.format is None, done=_WORKER_DONE)
    if part.format is None:
        scan.failures.extend(_file_failures(part.path, ctx))
    else:
        scan.failures.extend(_part_failures(part, ctx))
    return scan


def _scan_in_processes(plan: list[list[_Part]], rx: re.Pattern[str], scan: LogScan, workers: int,
                       digest: bool) -> None:
    """Each part scanned in a worker process; the parts joined in file order (the first error raised).

    A file read in parts has its line numbers counted on from the parts before, its counts
    summed, and (with ``digest``) its SHA-256 taken here while the workers read."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, ThreadPoolExecutor, wait

    mp = multiprocessing.get_context("fork")
    _numpy()  # imported once, before the workers are forked
    done = mp.Value("q", 0, lock=False)  # bytes read by all workers, for the progress line
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=_worker_done, initargs=(done,))
    hashing = ThreadPoolExecutor(max_workers=1) if digest else None
    try:
        futures = [[pool.submit(_scan_part, part, rx, scan.constraint, digest) for part in parts]
                   for parts in plan]
        sums = {parts[0].path: hashing.submit(_sha256_of, parts[0].path)
                for parts in plan if hashing is not None and len(parts) > 1}
        total = sum(_size_or_zero(parts[0].path) for parts in plan)
        for parts, futs in zip(plan, futures):
            while wait(futs, timeout=0.5, return_when=FIRST_EXCEPTION).not_done:
                _progress_total(done.value, total)
            results = [f.result() for f in futs]
            _join(parts, results, scan, sums.get(parts[0].path))
        _progress_total(done.value, total, final=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, the files not begun are not read
        if hashing is not None:
            hashing.shutdown(wait=True, cancel_futures=True)


def _size_or_zero(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _sha256_of(path: Path) -> str | None:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(READ_BLOCK * 4):
            sha.update(block)
    return sha.hexdigest()


def _join(parts: list[_Part], results: list[LogScan], scan: LogScan, sha: Any) -> None:
    lines = 0
    read: LogFileRead | None = None
    for part, res in zip(parts, results):
        if lines:
            scan.failures.extend(replace(f, line=f.line + lines) for f in res.failures)
        else:
            scan.failures.extend(res.failures)
        scan.skipped_lines += res.skipped_lines
        scan.other_constraints |= res.other_constraints
        for r in res.file_reads:
            if read is None:
                read = r
            else:
                read.bytes_read += r.bytes_read
                read.skipped_lines += r.skipped_lines
                read.lines = lines + r.lines
        lines = read.lines if read is not None else lines
        if len(parts) == 1:
            scan.files.extend(res.files)
    if len(parts) > 1:
        scan.files.append(str(parts[0].path))
        if read is not None:
            read.size = parts[-1].stop  # the file's size when it was planned
            complete = read.bytes_read == read.size
            read.sha256 = sha.result() if sha is not None and complete else None
    if read is not None:
        scan.file_reads.append(read)


def _progress_total(done: int, total: int, final: bool = False) -> None:
    if total >= PROGRESS_EVERY and sys.stderr.isatty() and (done or final):
        end = "\n" if final else ""
        print(f"\r  reading logs: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB", end=end, file=sys.stderr, flush=True)


def iter_lines(path: str | Path, blank_lines_kept: int = 16) -> Iterator[tuple[int, str]]:
    """The readable lines of one log file, numbered as in the file, with the scan's own reading:
    bounded memory (a line over ``MAX_LINE_BYTES``, binary or invalid text is left out), gzip
    recognised by its magic bytes, pipes with their time limits. Of a run of blank lines only its
    last ``blank_lines_kept`` come (as ``""``)."""
    ctx = _Ctx(str(path), compile_user_pattern(DEFAULT_USER_PATTERN), DEFAULT_CONSTRAINT, LogScan())
    yield from _expanded(_units(Path(path), ctx), blank_lines_kept)


def compile_user_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """The user-id regex, compiled; :class:`ConfigError` when it is not a valid regex."""
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        raise ConfigError(f"invalid user id pattern {pattern!r}: {e}") from None


def _iter_files(files: list[Path], rx: re.Pattern[str], fk: ForeignKey, stats: ScanStats,
                digest: bool = True) -> Iterator[LogFailure]:
    for path in files:
        yield from _file_failures(path, _Ctx(str(path), rx, fk, stats, digest=digest))


# -- finding files ------------------------------------------------------------------------
def _as_list(paths: Paths) -> list[PathArg]:
    if isinstance(paths, (str, os.PathLike)):
        items: list[PathArg] = [paths]
    else:
        items = list(paths)
    if not items:
        raise LogReadError("no log paths given")
    return items


def _expand(item: PathArg) -> list[Path]:
    text = os.fspath(item)
    path = Path(os.path.expanduser(text))
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # a path too long, a loop of links, a folder we may not enter...
        raise LogReadError(f"cannot read log path {text}: {e.strerror or type(e).__name__}") from None
    if path.is_dir():
        files = _walk(path)
        if not files:
            raise LogReadError(f"no log files in directory {text}")
        return files
    if path.exists():
        return [path]  # a file, or a named pipe / device given on purpose
    if any(c in text for c in "*?["):
        return _expand_glob(text)
    raise LogReadError(f"log path not found: {text}")


def _expand_glob(pattern: str) -> list[Path]:
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    if not matches:
        raise LogReadError(f"no files match {pattern}")
    files: list[Path] = []
    for m in matches:
        p = Path(m)
        files.extend(_walk(p) if p.is_dir() else [p])
    if not files:
        raise LogReadError(f"no log files match {pattern}")
    return files


def _walk(directory: Path) -> list[Path]:
    def fail(err: OSError) -> None:
        raise LogReadError(f"cannot read directory {err.filename}: {err.strerror or 'unreadable'}")

    files: list[Path] = []
    for root, dirs, names in os.walk(directory, onerror=fail):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            p = Path(root) / name
            if not name.startswith(".") and p.is_file():
                files.append(p)
    return files


# -- reading lines ------------------------------------------------------------------------
# A file is read in blocks of READ_BLOCK bytes (gzip decompressed block by block), split into
# physical lines here, never with an unbounded readline: a line longer than MAX_LINE_BYTES is
# counted and dropped as it streams by, and a run of blank lines (only spaces, tabs, CRs) is
# passed on as one count, so a file of nothing but newlines costs neither memory nor a Python
# step per line. Only regular files and pipes are read; a pipe has time limits.
_GZIP_MAGIC = b"\x1f\x8b"
_BAD_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BLANK_BYTES = b" \t\r\n"
_NOT_BLANK = re.compile(rb"[^ \t\r\n]")
_NEWLINES = b"\n" * 65536
#: Parsers other than csvlog's see a run of blank lines as its last few lines (all they can tell).
_BLANKS_KEPT = USER_LOOKBACK_LINES + 1
#: Skim logs: between candidates (lines holding the error text) pass over the lines that cannot
#: change the result, at the byte level (see :class:`_Skimmer`); False reads every line.
SKIM = True
_NEEDLE = b"violates foreign key constraint"
#: Bytes that make a line be skipped or changed by decoding (controls, ANSI escapes): a block
#: holding any of them, or invalid UTF-8, is read line by line.
_UNCLEAN = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])
_CLEAN = bytes(b for b in range(256) if b not in _UNCLEAN)

#: The stderr timestamp's bytes (offset, byte; ``None``: an ASCII digit): ``YYYY-MM-DD HH:MM:SS``.
_STDERR_TS_SHAPE = tuple((k, None if c == "d" else ord(c)) for k, c in enumerate("dddd-dd-dd dd:dd:dd"))
#: The severities of :data:`_PG_SEVERITIES`, spelled out.
_PG_SEVERITY_WORDS = tuple(w.encode() for w in ("ERROR LOG WARNING FATAL PANIC NOTICE INFO DEBUG DEBUG1 DEBUG2 "
                                                "DEBUG3 DEBUG4 DEBUG5 STATEMENT DETAIL HINT CONTEXT QUERY "
                                                "LOCATION").split())


def _tail_key(word: bytes) -> int:
    return (word[-3] << 16) | (word[-2] << 8) | word[-1]


#: The severity words by their last three bytes (see _Block._severity_marks).
_SEVERITY_BY_TAIL: dict[int, tuple[bytes, ...]] = {}
for _w in _PG_SEVERITY_WORDS:
    _SEVERITY_BY_TAIL[_tail_key(_w)] = _SEVERITY_BY_TAIL.get(_tail_key(_w), ()) + (_w,)


@lru_cache(maxsize=1)
def _word_bytes() -> Any:
    """A table (NumPy) of the bytes a regex ``\\b`` counts as word characters; every non-ASCII byte
    counts as one (a str pattern's word may be a letter of any script: never a boundary here)."""
    np = _numpy()
    table = np.zeros(256, bool)
    for b in b"0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        table[b] = True
    table[128:] = True
    return table


#: Blocks at least this large are indexed with NumPy (when importable): see :class:`_Block`.
_NUMPY_MIN_BYTES = 1 << 16


@lru_cache(maxsize=1)
def _numpy() -> Any:
    """NumPy (installed with pandas), imported when a large block first needs it; else None."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - pandas needs it
        return None
    return numpy

_Line = tuple[int, str]  # (1-based line number, text)
_Unit = tuple[int, Union[str, int]]  # a line, or (its last line number, count) for a blank run


class _Ctx:
    """What one file's parser needs: where it is, what it looks for, and where to count."""

    def __init__(self, source: str, rx: re.Pattern[str], fk: str | ForeignKey, stats: ScanStats,
                 digest: bool = True, done: Any = None):
        self.source = source
        self.digest = digest  # take the file's SHA-256 as it is read
        self.done = done  # a shared count of bytes read (a worker's progress), or None: print it here
        self.rx = rx
        self.fk = fk = ForeignKey.of(fk)
        self.constraint = fk.name
        self.stats = stats
        self.format = "text"
        self.read = LogFileRead(source)
        self.offset = 0  # bytes (decompressed) taken from the file so far
        self.blanks_kept: int | None = None  # None: blank runs as (line, count); else as lines
        self.idle = False  # the (text) parser holds nothing open: lines far from candidates may be skimmed

    def skip(self, n: int = 1) -> None:
        self.stats.skipped_lines += n
        self.read.skipped_lines += n

    def other(self, name: str) -> None:
        """A violation of another foreign key was passed by: its name is kept (when the stats keep them)."""
        others = getattr(self.stats, "other_constraints", None)
        if others is not None and name != self.constraint:
            others.add(name)

    def user_in(self, text: str | None) -> str | None:
        return find_user(self.rx, text)

    def workspace_in(self, text: str | None, kind: str = "insert") -> str | None:
        """The key of a ``Key (...)=(...)`` detail of this foreign key's violation of ``kind``."""
        m = _KEY_RE.search(text) if text else None
        if m is None or m.group("how").startswith("not") != (kind == "insert"):
            return None
        return m.group("vals") if self.fk.detail_fits(kind, m.group("cols"), m.group("table") or "") else None

    def failure(self, at: datetime, user: str | None, workspace: str | None, line: int,
                kind: str = "insert") -> LogFailure:
        return LogFailure(at=at.astimezone(timezone.utc), user_id=user, workspace_id=workspace,
                          constraint=self.constraint, source=self.source, line=line, format=self.format, kind=kind)


def _open_fd(path: Path) -> int:
    # O_NONBLOCK: opening a named pipe no one writes to must not hang (reads wait in _Source)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))


def _not_readable(mode: int) -> str | None:
    """Why a file of this type is refused (``None`` for a regular file or a pipe)."""
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return None
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


class _Digest:
    """SHA-256 of the bytes given, computed on another thread (hashlib lets go of the GIL), so
    that it costs the scan next to nothing on a second core. At most 8 blocks wait their turn."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._sha.update(data)

    def update(self, data: bytes) -> None:
        if self._thread is None:
            if len(data) < 65536:  # small files: no thread
                self._sha.update(data)
                return
            self._thread = threading.Thread(target=self._run, name="incidentkit-sha256", daemon=True)
            self._thread.start()
        self._queue.put(data)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        self.stop()
        return self._sha.hexdigest()


class _Source(io.RawIOBase):
    """A log's raw bytes, digested (SHA-256) as they are read.

    A regular file is read up to its size at open (one still being written to is not followed);
    a pipe (named pipe, ``<(command)``) until its writer closes it, as long as its first bytes
    come within PIPE_OPEN_SECONDS and it is never silent for PIPE_IDLE_SECONDS. Devices
    (``/dev/zero``), sockets and other special files are refused with a :class:`LogReadError`.
    """

    def __init__(self, path: Path, info: LogFileRead, digest: bool = True, start: int = 0, stop: int | None = None):
        super().__init__()
        self.path, self.info = path, info
        self.fd = -1
        self.digest = _Digest() if digest else None
        try:
            self.fd = _open_fd(path)
        except FileNotFoundError:
            raise LogReadError(f"log file not found: {path}") from None
        except PermissionError:
            raise LogReadError(f"cannot open log file {path}: permission denied") from None
        except OSError as e:
            raise LogReadError(f"cannot open log file {path}: {e.strerror or 'unreadable'}") from None
        st = os.fstat(self.fd)
        why = _not_readable(st.st_mode)
        if why is not None:
            self.close()
            raise LogReadError(f"cannot read log file {path}: {why}, not a regular file or a pipe")
        self.pipe = stat.S_ISFIFO(st.st_mode)
        self.limit: int | None = None if self.pipe else st.st_size
        if not self.pipe:
            os.set_blocking(self.fd, True)
            if start or stop is not None:  # a part of a regular file (see _Part)
                os.lseek(self.fd, start, os.SEEK_SET)
                self.limit = (st.st_size if stop is None else min(stop, st.st_size)) - start
        self.poller = select.poll() if self.pipe else None
        if self.poller is not None:
            self.poller.register(self.fd, select.POLLIN)
        self.done = 0
        self.at_end = False
        info.size = self.limit

    def readable(self) -> bool:
        return True

    def _wait(self) -> None:
        seconds = PIPE_IDLE_SECONDS if self.done else PIPE_OPEN_SECONDS
        assert self.poller is not None
        if not self.poller.poll(seconds * 1000):
            if self.done:
                raise LogReadError(f"log pipe {self.path} sent nothing for {seconds:g} s")
            raise LogReadError(f"nothing was written to log pipe {self.path} within {seconds:g} s "
                               "(is anything writing to it?)")

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.limit is not None:
            view = view[: max(0, self.limit - self.done)]
        if not len(view) or self.at_end:
            self.at_end = True
            return 0
        while True:
            if self.pipe:
                self._wait()
            try:
                n = os.readv(self.fd, [view])
                break
            except BlockingIOError:
                continue
        if n == 0:
            self.at_end = True
            return 0
        if self.digest is not None:
            self.digest.update(bytes(view[:n]))
        self.done += n
        self.info.bytes_read = self.done
        return n

    def read_block(self, size: int) -> bytes:
        """At most ``size`` bytes (one read: a pipe's bytes as they come), digested; ``b""`` at the end.
        The bytes are handed to the digest thread as they are: no copy."""
        if self.limit is not None:
            size = min(size, self.limit - self.done)
        if size <= 0 or self.at_end:
            self.at_end = True
            return b""
        while True:
            if self.pipe:
                self._wait()
            try:
                data = os.read(self.fd, size)
                break
            except BlockingIOError:
                continue
        if not data:
            self.at_end = True
            return b""
        if self.digest is not None:
            self.digest.update(data)
        self.done += len(data)
        self.info.bytes_read = self.done
        return data

    def finish(self) -> None:
        """Read what the scan did not need (a damaged gzip's tail) so the digest is the whole file's."""
        if not self.pipe:
            spare = bytearray(READ_BLOCK)
            while self.readinto(spare):
                pass
        if self.digest is not None:
            digest = self.digest.hexdigest()
            if self.at_end:
                self.info.sha256 = digest

    def close(self) -> None:
        if not self.closed:
            if self.digest is not None:
                self.digest.stop()
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        super().close()


@contextmanager
def _open_log(path: Path, ctx: _Ctx, part: "_Part | None" = None) -> Iterator[Callable[[int], bytes]]:
    """A ``read(n)`` of the file's bytes, decompressed when it starts with gzip's magic bytes.

    Each call returns at most n bytes and what a single read gives (a pipe's bytes as they
    come), ``b""`` at the end. With ``part``, the bytes of that part of a regular uncompressed file.
    """
    if part is not None:
        source = _Source(path, ctx.read, digest=False, start=part.start, stop=part.stop)
        try:
            yield source.readinto
        finally:
            source.close()
        return
    source = _Source(path, ctx.read, digest=ctx.digest)
    try:
        try:
            first = source.read_block(READ_BLOCK)
        except OSError:
            first = b""
        if first[:2] == _GZIP_MAGIC:
            ctx.read.compressed = True
            raw = io.BufferedReader(_Prefixed(first, source), buffer_size=READ_BLOCK)
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield _into(gz.read1, fill=not source.pipe)
        else:
            yield _after(first, source.readinto)
        source.finish()
    finally:
        source.close()


#: A ``readinto(buffer) -> count`` of a log's bytes (0 at the end; a pipe's bytes as they come).
_ReadInto = Callable[[memoryview], int]


def _after(first: bytes, readinto: _ReadInto) -> _ReadInto:
    """``readinto``, the bytes ``first`` coming first."""
    pending = memoryview(first)

    def read_first(view: memoryview) -> int:
        nonlocal pending
        if not len(pending):
            return readinto(view)
        k = min(len(view), len(pending))
        view[:k] = pending[:k]
        pending = pending[k:]
        return k

    return read_first


def _into(read: Callable[[int], bytes], fill: bool = False) -> _ReadInto:
    """A ``readinto`` of ``read``; with ``fill``, reads until the buffer is full or the stream ends
    (a file's gzip stream comes in small pieces: few, large blocks are skimmed faster); without, one
    read (a pipe's bytes as they come)."""
    failed: list[BaseException] = []  # a stream cut short: raised once what came before it is handed over

    def readinto(view: memoryview) -> int:
        if failed:
            raise failed.pop()
        done = 0
        while done < len(view):
            try:
                data = read(len(view) - done)
            except (EOFError, OSError, zlib.error) as e:
                if not done:
                    raise
                failed.append(e)
                break
            view[done:done + len(data)] = data
            done += len(data)
            if not data or not fill:
                break
        return done

    return readinto


class _Prefixed(io.RawIOBase):
    """A raw stream of ``first`` then the rest of ``source`` (for :class:`gzip.GzipFile`)."""

    def __init__(self, first: bytes, source: _Source):
        super().__init__()
        self.pending, self.source = memoryview(first), source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(self.pending):
            data = self.source.read_block(len(view))
            view[:len(data)] = data
            return len(data)
        n = min(len(view), len(self.pending))
        view[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def _decode(raw: bytes | None) -> str | None:
    """The line as text, or ``None`` when it is not clean UTF-8 text (binary, invalid bytes)."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.rstrip("\r\n").lstrip("\ufeff")
    if _BAD_CONTROL.search(text):
        return None
    return _ANSI.sub("", text) if "\x1b" in text else text


#: Progress on a terminal: a line every this many bytes of a log, from the first such (so a scan of
#: more than 50 MB shows it); quiet when stderr is no terminal.
PROGRESS_EVERY = 50_000_000


def _progress(source: str, done: int, final: bool = False) -> None:
    if sys.stderr.isatty():
        end = "\n" if final else ""
        print(f"\r  reading {source}: {done / 1e6:,.0f} MB", end=end, file=sys.stderr, flush=True)


def _blank_run_end(data: bytes, pos: int, end: int) -> int:
    """Where the run of blank lines starting at ``pos`` ends: the start of the first line (before
    ``end``, a line start) holding something else, or ``end``; ``pos`` when that line is pos's."""
    chunk = len(_NEWLINES)
    while pos + chunk <= end and data.startswith(_NEWLINES, pos):  # a newline flood, at memcmp speed
        pos += chunk
    m = _NOT_BLANK.search(data, pos, end)
    if m is None:
        return end
    return data.rfind(b"\n", pos, m.start()) + 1 or pos


def _split(readinto: _ReadInto, ctx: _Ctx) -> Iterator[_Unit]:
    """The units of a byte stream: good lines, blank runs; bad lines are counted as skipped.

    A blank run comes as one (last line, count) unit, or, once ``ctx.blanks_kept`` is set, as
    that many of its last lines (empty), numbered as in the file. The bytes are read into one
    buffer, reused: a line going on past a block is carried to the buffer's start.
    """
    info = ctx.read
    n = 0
    buf = bytearray(READ_BLOCK + MAX_LINE_BYTES)
    view = memoryview(buf)
    have = 0  # the start of a line that goes on in the next block, at buf's start (< MAX_LINE_BYTES)
    overlong = False  # in the middle of a line already too long: its bytes are dropped to its end
    next_report = PROGRESS_EVERY
    try:
        while True:
            info.lines = n
            got = readinto(view[have:have + READ_BLOCK])
            if not got:
                break
            ctx.offset += got
            if ctx.done is not None:
                ctx.done.value += got  # a worker: the parent shows the progress
            elif ctx.offset >= next_report:
                _progress(ctx.source, ctx.offset)
                next_report += PROGRESS_EVERY
            valid = have + got
            data = buf
            pos = 0
            if overlong:
                nl = data.find(b"\n", 0, valid)
                if nl < 0:
                    continue
                n += 1
                ctx.skip()
                overlong = False
                pos = nl + 1
            end = max(data.rfind(b"\n", pos, valid) + 1, pos)  # the complete lines end here
            index: _Block | None = None  # the block's newlines and cleanliness, once needed
            planned = -1  # the candidate line a skim was planned up to
            cand = -1  # the start of the next candidate line (or end), once known
            while pos < end:
                if ctx.idle and pos >= planned and SKIM:
                    skimmer = _SKIMMERS[ctx.format]  # set once the format is known (before idle)
                    if index is None:
                        index = _Block(data, pos, end)
                    if pos < index.skimmable_from:
                        resume, planned = pos, index.skimmable_from
                    else:
                        if cand < pos:
                            cand = skimmer.candidate(data, pos, end)
                        resume, planned = skimmer.skim(data, pos, cand, end, ctx, index)
                    if resume > pos:
                        n += index.newlines(pos, resume)
                        pos = resume
                        continue
                if data[pos] in _BLANK_BYTES:
                    stop = _blank_run_end(data, pos, end)
                    if stop > pos:
                        count = data.count(b"\n", pos, stop)
                        n += count
                        pos = stop
                        keep = ctx.blanks_kept
                        if keep is None:
                            yield n, count
                        else:
                            for i in range(n - min(count, keep) + 1, n + 1):
                                yield i, ""
                        continue
                nl = data.index(b"\n", pos, end)
                n += 1
                text = _decode(data[pos:nl + 1]) if nl + 1 - pos <= MAX_LINE_BYTES else None
                pos = nl + 1
                if text is None:
                    ctx.skip()
                else:
                    yield n, text
            have = valid - end
            if have >= MAX_LINE_BYTES:
                overlong, have = True, 0
            elif have:
                buf[:have] = bytes(view[end:valid])
        if overlong or have:  # the last line, without a newline
            n += 1
            text = None if overlong else _decode(bytes(view[:have]))
            if text is None:
                ctx.skip()
            else:
                yield n, text
    finally:
        info.lines = n
    if ctx.offset >= PROGRESS_EVERY and ctx.done is None:
        _progress(ctx.source, ctx.offset, final=True)


class _Block:
    """One block's complete lines (``data[start:end]``), indexed once for skimming: where skimming
    may start (:attr:`skimmable_from`) and how many newlines lie between two offsets.

    Skimming may start after the block's first line (which may be overlong: no later line can
    be, a block being no longer than a line may be) when its lines are clean UTF-8 text (no line
    of them would be skipped or altered by :func:`_decode`); else nowhere (``end``). With NumPy
    (installed with pandas) both are found in a few vector passes over the block.
    """

    def __init__(self, data: bytearray, start: int, end: int):
        self.data = data
        self.a: Any = None  # data[start:end] as a NumPy array, or None
        self.nl: Any = None  # the offsets (in data) of its newlines, ascending (NumPy), or None
        self._marks: Any = None  # see _severity_marks
        self.start = start
        self.skimmable_from = self._skimmable_from(data, start, end)

    def newlines(self, p: int, q: int) -> int:
        """How many newlines ``data[p:q]`` holds."""
        if self.nl is not None:
            return int(self.nl.searchsorted(q) - self.nl.searchsorted(p))
        return self.data.count(b"\n", p, q)

    def all_braced(self, p: int, q: int) -> bool:
        """Whether every line of ``data[p:q]`` (complete lines) starts with ``{`` and ends with ``}``."""
        if self.nl is None:
            data = self.data
            lines = data.count(b"\n", p, q)
            opens = data.count(b"\n{", p, q - 1) + (data[p:p + 1] == b"{")
            return opens == lines and data.count(b"}\n", p, q) == lines
        ends = self.nl[self.nl.searchsorted(p):self.nl.searchsorted(q)] - self.start
        if not len(ends):
            return True
        a = self.a
        starts = ends[:-1] + 1
        return bool(a[p - self.start] == 123 and (a[starts] == 123).all() and ends[0] > p - self.start
                    and (a[ends - 1] == 125).all())

    def all_stderr_lines(self, p: int, q: int) -> bool:
        """Whether every line of ``data[p:q]`` (complete lines) is a tab continuation or a stderr
        log line as :data:`_STDERR_LINE` matches it: a timestamp ``YYYY-MM-DD HH:MM:SS`` at its
        start, and after it a severity word (``LOG``, ``ERROR``...) at a word boundary followed by
        ``:  ``. ``False`` says only that the lines must be looked at one by one."""
        if self.nl is None:
            return False
        np, a, base = _numpy(), self.a, self.start
        ends = self.nl[self.nl.searchsorted(p):self.nl.searchsorted(q)] - base
        if not len(ends):
            return True
        starts = np.concatenate(([p - base], ends[:-1] + 1))
        tab = a[starts] == 9
        stamped = (ends - starts) >= 19 + 4  # the timestamp, then at least "LOG:  " minus two
        last = len(a) - 1
        for k, want in _STDERR_TS_SHAPE:
            got = a[np.minimum(starts + k, last)]
            stamped &= (got - 48 < 10) if want is None else (got == want)
        if not (tab | stamped).all():
            return False
        lines, line_ends = starts[~tab], ends[~tab]
        found = np.zeros(len(lines), bool)
        marks = self._severity_marks()
        if len(lines) and len(marks):
            marks = marks[marks.searchsorted(lines[0]):marks.searchsorted(line_ends[-1])]
            line_of = lines.searchsorted(marks, "right") - 1
            # a mark in a tab line after the line does not count (the timestamp's bytes hold no word)
            found[line_of[marks + 3 <= line_ends[line_of]]] = True
        return bool(found.all())

    def _severity_marks(self) -> Any:
        """The offsets (in the block) of its ``:  `` preceded by a severity word at a word
        boundary; once per block."""
        if self._marks is None:
            np, a = _numpy(), self.a
            colon = np.flatnonzero((a[:-2] == 58) & (a[1:-1] == 32) & (a[2:] == 32))
            colon = colon[colon >= 11]  # room for a word and the byte before it
            # the three bytes before each colon, as one number: only the words ending so are tried
            tail = (a[colon - 3].astype(np.int32) << 16) | (a[colon - 2].astype(np.int32) << 8) | a[colon - 1]
            word_at = np.full(len(colon), -1)
            word_bytes = _word_bytes()
            for key in np.unique(tail):
                for word in _SEVERITY_BY_TAIL.get(int(key), ()):
                    w = len(word)
                    at = np.flatnonzero(tail == key)
                    c = colon[at]
                    before = a[c[:, None] + np.arange(-w - 1, 0)]  # the byte before the word, the word
                    hit = (before[:, 1:] == np.frombuffer(word, np.uint8)).all(axis=1) & ~word_bytes[before[:, 0]]
                    word_at[at[hit]] = np.maximum(word_at[at[hit]], c[hit] - w)
            keep = word_at >= 0
            self._marks = colon[keep]
        return self._marks

    def _skimmable_from(self, data: bytearray, start: int, end: int) -> int:
        first = data.find(b"\n", start, end) + 1
        if READ_BLOCK > MAX_LINE_BYTES or first == 0 or first >= end:
            return end
        _np = _numpy() if end - start >= _NUMPY_MIN_BYTES else None
        if _np is not None:
            a = self.a = _np.frombuffer(data, _np.uint8, end - start, start)
            self.nl = _np.flatnonzero(a == 10) + start
            controls = int(_np.count_nonzero(a < 32)) - len(self.nl) - int(_np.count_nonzero(a == 9))
            if controls and controls != int(_np.count_nonzero(a == 13)) + int(_np.count_nonzero(a == 12)):
                return end  # a control other than \t, \n, \r, \f
            if _np.count_nonzero(a == 127):
                return end
            lines = data[start:end]
        else:
            lines = data[start:end]  # the buffer's bytes after ``end`` are a past block's
            if lines.translate(None, _CLEAN):
                return end
        if not lines.isascii():
            try:
                data[first:end].decode("utf-8")
            except UnicodeDecodeError:
                return end
        return first


def _skim(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(where to resume reading lines, start of the next candidate line) from ``pos``.

    A text parser with no record open is changed by a line without the error text only through
    its timestamp (the latest one counts) and its user id (the last USER_LOOKBACK_LINES lines
    count). So before the next candidate (or the block's end) only the last USER_LOOKBACK_LINES
    lines, and the latest timestamped line, need reading: the rest is passed over unread.
    """
    return _skim_text(data, pos, _next_candidate(data, pos, end, (_NEEDLE,)))


def _next_candidate(data: bytes, pos: int, end: int, needles: tuple[bytes, ...]) -> int:
    """The start of the first line at or after ``pos`` (a line start) holding one of ``needles``; else ``end``."""
    best = end
    for needle in needles:
        i = data.find(needle, pos, best)
        if i >= 0:
            best = i
    return end if best == end else max(data.rfind(b"\n", pos, best) + 1, pos)


def _skim_text(data: bytes, pos: int, target: int) -> tuple[int, int]:
    starts = 0
    tail = pos  # start of the USER_LOOKBACK_LINES-th line before the target
    stamped = -1  # start of the latest line with a timestamp before the target
    q = target
    while q > pos:
        r = max(data.rfind(b"\n", pos, q - 1) + 1, pos)
        starts += 1
        if starts == USER_LOOKBACK_LINES:
            tail = r
        if stamped < 0 and _leading_time(_decode(data[r:q]) or "") is not None:
            stamped = r
        q = r
        if stamped >= 0 and starts >= USER_LOOKBACK_LINES:
            break
    if starts < USER_LOOKBACK_LINES:
        return pos, target
    return (tail if stamped < 0 else min(tail, stamped)), target


class _Skimmer:
    """How the lines of one format are passed over at the byte level while its parser is idle.

    ``candidate`` finds the next line that may start or make a failure record (it holds a
    needle); ``skim`` takes the lines before it (``pos`` to ``cand``, complete clean UTF-8 lines,
    the parser idle) and returns (where the parser must resume reading lines, up to where no
    skim is tried again). Lines it passes over must leave the idle parser as they found it; those
    the parser would have skipped are counted (``ctx.skip``) here.
    """

    needles: tuple[bytes, ...] = (_NEEDLE,)

    def candidate(self, data: bytes, pos: int, end: int) -> int:
        return _next_candidate(data, pos, end, self.needles)

    def skim(self, data: bytes, pos: int, cand: int, end: int, ctx: _Ctx, index: "_Block") -> tuple[int, int]:
        raise NotImplementedError


class _TextSkimmer(_Skimmer):
    def skim(self, data: bytes, pos: int, cand: int, end: int, ctx: _Ctx, index: "_Block") -> tuple[int, int]:
        return _skim_text(data, pos, cand)


def _as_parsed(raw: bytes) -> str:
    """A clean line's text as :func:`_decode` gives it (the block is known to be clean UTF-8)."""
    return raw.decode("utf-8").rstrip("\r\n").lstrip("\ufeff")


class _RegexSkimmer(_Skimmer):
    """Lines are passed over unless ``bad`` (a newline followed by a line not certainly without
    effect: ``noop`` is sound, not complete) finds one, which :meth:`line_skipped` then decides
    as the parser would (``None``: the parser must read it). With ``ascii_only``, a stretch
    holding other bytes is decided line by line (the bytes pattern means what the parser's str
    pattern means on ASCII only)."""

    noop: re.Pattern[bytes]
    bad: re.Pattern[bytes]
    ascii_only = False

    def line_skipped(self, text: str) -> bool | None:
        raise NotImplementedError

    def skim(self, data: bytes, pos: int, cand: int, end: int, ctx: _Ctx, index: "_Block") -> tuple[int, int]:
        if self.ascii_only and not data[pos:cand].isascii():
            return self._by_line(data, pos, cand, ctx)
        p = pos
        while p < cand:
            if p == 0:
                m = self.noop.match(data, 0, cand)
                q = 0 if m is None else m.end()
            else:
                hit = self.bad.search(data, p - 1, cand)
                q = cand if hit is None else hit.start() + 1
            if q >= cand:
                break
            nl = data.index(b"\n", q, cand)
            verdict = self.line_skipped(_as_parsed(data[q:nl + 1]))
            if verdict is None:
                return q, q
            if verdict:
                ctx.skip()
            p = nl + 1
        return cand, cand

    def _by_line(self, data: bytes, pos: int, cand: int, ctx: _Ctx) -> tuple[int, int]:
        p, skipped, line_skipped = pos, 0, self.line_skipped
        for raw in data[pos:cand].split(b"\n")[:-1]:
            verdict = line_skipped(_as_parsed(raw))
            if verdict is None:
                ctx.skip(skipped)
                return p, p
            skipped += verdict
            p += len(raw) + 1
        ctx.skip(skipped)
        return cand, cand


#: csvlog's or stderr's whitespace-only lines (as ``str.strip`` sees them).
_BLANK_LINE_B = rb"[ \t\r\x0c]*\n"


class _StderrSkimmer(_RegexSkimmer):
    """An idle stderr parser (no record open) is changed by no line without the error text: a
    line is skipped when it is not blank, not a tab continuation, and not a log line."""

    ascii_only = True  # \d, \b: the same in bytes and str patterns on ASCII

    def __init__(self) -> None:
        line = (rb"(?:\t|" + _BLANK_LINE_B + rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?"
                rb"(?: ?[+-]\d\d(?:\d\d)?\b| [A-Za-z]{1,6})?[^\n]*?\b(?:" + _PG_SEVERITIES.encode() + rb"):  )")
        self.noop = re.compile(line)
        self.bad = re.compile(rb"\n(?!" + line + rb")")

    def line_skipped(self, text: str) -> bool | None:
        if text.startswith("\t") or _STDERR_LINE.match(text) is not None:
            return False
        return bool(text.strip())

    def skim(self, data: bytes, pos: int, cand: int, end: int, ctx: _Ctx, index: "_Block") -> tuple[int, int]:
        if index.all_stderr_lines(pos, cand):  # the common case, proven in a few vector passes
            return cand, cand
        return super().skim(data, pos, cand, end, ctx, index)


class _CsvSkimmer(_RegexSkimmer):
    """An idle csvlog parser (no record open) is changed by no blank line and no complete
    one-line record of enough well-formed fields without the error text; any other line is read."""

    def __init__(self) -> None:
        field = rb'(?:"(?:[^"\n]|"")*"|[^",\r\n]*)'
        line = (rb"(?:" + _BLANK_LINE_B + rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Za-z0-9+\-:]+"
                rb"(?:," + field + rb"){" + str(_CSV_MIN_COLUMNS - 1).encode() + rb",}\r*\n)")
        self.noop = re.compile(line)
        self.bad = re.compile(rb"\n(?!" + line + rb")")

    def line_skipped(self, text: str) -> bool | None:
        return False if not text.strip() else None


class _JsonSkimmer(_Skimmer):
    """JSON lines are independent: an idle parser is changed by a line without the error text only
    through the skip of a line that is not framed as a JSON record (see :func:`_json_framed`). When
    every line of a stretch starts with ``{`` and ends with ``}`` (byte counts tell), none is;
    otherwise each line's frame is looked at."""

    def __init__(self, fmt: str):
        self.arrays = fmt == "jsonl"

    def skim(self, data: bytes, pos: int, cand: int, end: int, ctx: _Ctx, index: "_Block") -> tuple[int, int]:
        if index.all_braced(pos, cand):
            return cand, cand
        skipped = 0
        for raw in data[pos:cand].split(b"\n")[:-1]:
            stripped = _as_parsed(raw).strip()
            if stripped and not _json_framed(stripped, self.arrays):
                skipped += 1
        ctx.skip(skipped)
        return cand, cand


def _json_framed(stripped: str, arrays: bool) -> bool:
    """Whether a (stripped, non-empty) line is framed as a JSON record: ``{...}``, or for JSON
    lines also a drain's batch of them ``[{...}]``. A JSON log's line that is not is skipped; one that is
    is parsed only when it holds the error text (a failure needs it, and a line that then does not
    parse is skipped), so a scan reads at the speed of its byte-level search."""
    first, last = stripped[0], stripped[-1]
    if first == "{":
        return last == "}"
    return (arrays and first == "[" and last == "]" and stripped[1:].lstrip()[:1] == "{"
            and stripped[:-1].rstrip()[-1:] == "}")


def _units(path: Path, ctx: _Ctx) -> Iterator[_Unit]:
    """The file's lines and blank runs (see :func:`_split`); registers the file in the stats."""
    with _open_log(path, ctx) as read:
        ctx.stats.files.append(ctx.source)
        reads = getattr(ctx.stats, "file_reads", None)
        if reads is not None:
            reads.append(ctx.read)
        try:
            yield from _split(read, ctx)
        except (EOFError, OSError, zlib.error):  # a truncated or corrupt gzip stream, a read error
            ctx.skip()


def _expanded(units: Iterable[_Unit], keep: int) -> Iterator[_Line]:
    """Lines, with each blank run as its last ``keep`` (empty) lines, numbered as in the file."""
    for n, text in units:
        if isinstance(text, str):
            yield n, text
        else:
            for i in range(n - min(text, keep) + 1, n + 1):
                yield i, ""


# -- format detection ---------------------------------------------------------------------
#: csvlog's log_time is always "YYYY-MM-DD HH:MM:SS.mmm ZONE" (Python's "14:03:22,481" is not one).
_CSV_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [^,\s]+,")
_PG_SEVERITIES = ("ERROR|LOG|WARNING|FATAL|PANIC|NOTICE|INFO|DEBUG[1-5]?|STATEMENT|DETAIL|HINT|CONTEXT|QUERY|LOCATION")
_STDERR_LINE = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: ?[+-]\d\d(?:\d\d)?\b| [A-Za-z]{1,6})?)"
    r"(?P<prefix>.*?)\b(?P<sev>" + _PG_SEVERITIES + r"):  (?P<msg>.*)"
)


def _classify(text: str) -> str | None:
    """The format one line suggests; ``None`` for a line that says nothing (continuation)."""
    if not text.strip() or text[0] in " \t":
        return None
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("[{"):
        obj = _load_json(stripped)
        return "pg_json" if isinstance(obj, dict) and "error_severity" in obj else "jsonl"
    if _CSV_START.match(text):
        return "pg_csv"
    if _STDERR_LINE.match(text):
        return "pg_stderr"
    return "text"


def _sniff(units: Iterator[_Unit], ctx: _Ctx) -> tuple[str, list[_Unit]]:
    """The file's format (majority of its first non-empty lines) and the units read to decide.

    The look-ahead is bounded: SNIFF_LINES classified lines, or SNIFF_MAX_LINES physical lines
    (blank, indented, skipped lines count), or SNIFF_MAX_BYTES, whichever comes first.
    """
    head: list[_Unit] = []
    votes: Counter[str] = Counter()
    order: list[str] = []
    for unit in units:
        head.append(unit)
        n, text = unit
        kind = _classify(text) if isinstance(text, str) else None
        if kind is not None:
            votes[kind] += 1
            if kind not in order:
                order.append(kind)
            if sum(votes.values()) >= SNIFF_LINES:
                break
        if n >= SNIFF_MAX_LINES or ctx.offset >= SNIFF_MAX_BYTES:
            break
    if not votes:
        return "text", head
    best = max(votes.values())
    return next(k for k in order if votes[k] == best), head


def _file_failures(path: Path, ctx: _Ctx) -> Iterator[LogFailure]:
    units = _units(path, ctx)
    fmt, head = _sniff(units, ctx)
    ctx.format = ctx.read.format = fmt
    if fmt == "pg_csv":  # blank lines may sit inside a quoted field: it counts them itself
        yield from _parse_pg_csv(chain(head, units), ctx)
    else:
        ctx.blanks_kept = _BLANKS_KEPT
        ctx.idle = fmt in ("jsonl", "pg_json")  # their lines are independent: never anything open
        yield from _PARSERS[fmt](chain(_expanded(head, _BLANKS_KEPT), units), ctx)


def _part_failures(part: "_Part", ctx: _Ctx) -> Iterator[LogFailure]:
    """The failures whose records start in one part of a file (line numbers from the part's
    first line, 1): its primer lines are read first with nothing counted (see _PRIMER_LINES)."""
    fmt = ctx.format = ctx.read.format = part.format or "text"
    with _open_log(part.path, ctx, part) as read:
        ctx.stats.files.append(ctx.source)
        reads = getattr(ctx.stats, "file_reads", None)
        if reads is not None:
            reads.append(ctx.read)
        ctx.blanks_kept = _BLANKS_KEPT
        ctx.idle = fmt in ("jsonl", "pg_json")
        primer = [(i - len(part.primer), text) for i, text in enumerate(part.primer, 1) if text is not None]
        try:
            yield from _PARSERS[fmt](chain(_primed(primer, ctx), _split(read, ctx)), ctx)
        except (EOFError, OSError):
            ctx.skip()


def _primed(primer: list[_Line], ctx: _Ctx) -> Iterator[_Line]:
    """The primer lines, with whatever the parser counts while it reads them counted nowhere."""
    if not primer:
        return
    counted = ctx.stats, ctx.read
    ctx.stats, ctx.read = LogScan(), LogFileRead(ctx.source)
    try:
        yield from primer
    finally:
        ctx.stats, ctx.read = counted


# -- shared extraction --------------------------------------------------------------------
_FK_MARK = "violates foreign key constraint"
_FK_RE = re.compile(r'violates foreign key constraint \\?"(?P<name>[^"\\]+)\\?"')
_KEY_MARK = "Key ("
_KEY_RE = re.compile(r"Key \((?P<cols>[^)]*)\)=\((?P<vals>.*?)\) is (?P<how>not present in|still referenced from) "
                     r'table(?: \\?"(?P<table>[^"\\]*))?')
_DELETE_SIDE = "update or delete on table"


def _kind_of(message_before: str) -> str:
    """``"delete"`` when the message before the constraint's name is the delete side's, else ``"insert"``."""
    return "delete" if _DELETE_SIDE in message_before[-400:] else "insert"

_TZ_HOURS = {
    "UTC": 0, "GMT": 0, "UT": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2, "EET": 2,
    "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6,
    "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "JST": 9, "KST": 9,
    "AEST": 10, "AEDT": 11, "ACST": 9.5, "AWST": 8, "NZST": 12, "NZDT": 13,
}
_TS_CORE = (
    r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[.,](?P<frac>\d{1,9}))?"
    r"(?:\s?(?P<tz>Z|[+-]\d\d(?::?\d\d)?|(?:" + "|".join(sorted(_TZ_HOURS, key=len, reverse=True)) + r")\b))?"
)
_TS_RE = re.compile(_TS_CORE)
_LEADING_TS_RE = re.compile(r"\s*\[?" + _TS_CORE)


def find_user(rx: re.Pattern[str], text: str | None) -> str | None:
    """The first user id in ``text``: the pattern's group ``user``, else its first group, else the match."""
    if not text:
        return None
    m = rx.search(text)
    if m is None:
        return None
    if "user" in rx.groupindex:
        return m.group("user")
    return m.group(1) if rx.groups else m.group(0)


def _tz_of(tz: str | None) -> timezone:
    if not tz or tz == "Z":
        return timezone.utc
    if tz[0] in "+-":
        digits = tz[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0)
        return timezone(timedelta(minutes=minutes if tz[0] == "+" else -minutes))
    return timezone(timedelta(hours=_TZ_HOURS.get(tz, 0)))


def _from_match(m: re.Match[str]) -> datetime | None:
    frac = (m.group("frac") or "").ljust(6, "0")[:6]
    try:
        naive = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"]), int(frac))
        return naive.replace(tzinfo=_tz_of(m.group("tz"))).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _from_epoch(value: float) -> datetime | None:
    """Epoch seconds; values above 1e11 are milliseconds (1e14 microseconds, 1e17 nanoseconds)."""
    for limit, div in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
        if abs(value) > limit:
            value /= div
            break
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def parse_time(value: Any) -> datetime | None:
    """A UTC datetime from ISO-8601 / PostgreSQL text or epoch numbers; ``None`` when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        return _from_epoch(float(text))
    m = _TS_RE.match(text)
    return _from_match(m) if m else None


def _leading_time(text: str) -> datetime | None:
    if not text or not (text[0].isdigit() or text[0] in " \t["):
        return None
    m = _LEADING_TS_RE.match(text)
    return _from_match(m) if m else None


def _has_key_detail(text: str | None) -> bool:
    return bool(text) and _KEY_RE.search(text) is not None


def _truncated(text: str, mark: str, rx: re.Pattern[str]) -> bool:
    """The line holds the start of a marker but not the whole of it: it was cut."""
    return mark in text and rx.search(text) is None


# -- plain text (application logs) ----------------------------------------------------------
@dataclass
class _TextRecord:
    line: int
    at: datetime | None
    before_user: str | None
    user: str | None = None
    workspace: str | None = None
    kind: str = "insert"


def _text_record_ends(rec: _TextRecord, n: int, text: str, has_ts: bool) -> bool:
    if n - rec.line > TEXT_RECORD_MAX_LINES:
        return True
    return has_ts and _KEY_MARK not in text  # a new entry starts (a timestamped Detail still belongs)


def _absorb_text(rec: _TextRecord, text: str, ctx: _Ctx) -> None:
    if rec.workspace is None and _KEY_MARK in text:
        rec.workspace = ctx.workspace_in(text, rec.kind)
        if rec.workspace is None and not _has_key_detail(text):
            ctx.skip()  # a cut "Key (...)" detail
    if rec.user is None:
        rec.user = ctx.user_in(text)


def _finish_text(rec: _TextRecord, ctx: _Ctx) -> Iterator[LogFailure]:
    if rec.at is None:
        ctx.skip()  # no timestamp anywhere before the error: cannot place it in time
        return
    yield ctx.failure(rec.at, rec.user or rec.before_user, rec.workspace, rec.line, rec.kind)


class _TextParser:
    """The state of a text log: the latest timestamp, recent user ids, the open failure record."""

    def __init__(self, ctx: _Ctx):
        self.ctx = ctx
        self.last_ts: datetime | None = None
        self.recent: deque[str] = deque(maxlen=USER_LOOKBACK_LINES)  # user ids of the last lines, or ""
        self.rec: _TextRecord | None = None

    def feed(self, n: int, text: str) -> Iterator[LogFailure]:
        ts = _leading_time(text)
        if self.rec is not None and _text_record_ends(self.rec, n, text, ts is not None):
            yield from self.flush()
        if ts is not None:
            self.last_ts = ts
        if _FK_MARK in text:
            yield from self._error_line(n, text)
        elif self.rec is not None:
            _absorb_text(self.rec, text, self.ctx)
        else:
            self.recent.append(self.ctx.user_in(text) or "")
        self.ctx.idle = self.rec is None

    def _error_line(self, n: int, text: str) -> Iterator[LogFailure]:
        fk = _FK_RE.search(text)
        if fk is None:
            self.ctx.skip()  # the error line was cut before its constraint's name
            return
        before = next((u for u in reversed(self.recent) if u), None)
        self.recent.clear()  # the lines before an error belong to it, whichever constraint it names
        ours = fk.group("name") == self.ctx.constraint
        if not ours:
            self.ctx.other(fk.group("name"))
        if ours and self._repeats(n):
            _absorb_text(self.rec, text, self.ctx)  # type: ignore[arg-type]
            return
        yield from self.flush()
        if ours:
            self.rec = _TextRecord(line=n, at=self.last_ts, before_user=before, kind=_kind_of(text[:fk.start()]))
            _absorb_text(self.rec, text, self.ctx)

    def _repeats(self, n: int) -> bool:
        """The open record's error printed again (message, then stack) before any detail."""
        rec = self.rec
        return rec is not None and rec.workspace is None and n - rec.line <= TEXT_DUPLICATE_WINDOW

    def flush(self) -> Iterator[LogFailure]:
        if self.rec is not None:
            rec, self.rec = self.rec, None
            yield from _finish_text(rec, self.ctx)


def _parse_text(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    parser = _TextParser(ctx)
    for n, text in lines:
        yield from parser.feed(n, text)
    yield from parser.flush()


# -- PostgreSQL stderr ----------------------------------------------------------------------
_PG_SECONDARY = {"DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION"}
#: A failed insert is reported at these levels; a ``LOG:  statement: ...`` quoting the text is not one.
_PG_ERROR_LEVELS = {"ERROR", "FATAL"}


@dataclass
class _PgRecord:
    key: tuple[str, str]  # (timestamp, prefix): shared by every line of one report
    line: int
    at: datetime
    workspace: str | None = None
    context_user: str | None = None
    statement_user: str | None = None
    last_field: str | None = None  # the field a tab-indented continuation line continues
    kind: str = "insert"


def _absorb_pg(rec: _PgRecord, sev: str, msg: str, ctx: _Ctx) -> None:
    rec.last_field = sev
    if sev == "DETAIL" and rec.workspace is None:
        rec.workspace = ctx.workspace_in(msg, rec.kind)
    elif sev == "CONTEXT" and rec.context_user is None:
        rec.context_user = ctx.user_in(msg)
    elif sev in ("STATEMENT", "QUERY") and rec.statement_user is None:
        rec.statement_user = ctx.user_in(msg)


def _finish_pg(rec: _PgRecord, ctx: _Ctx) -> LogFailure:
    return ctx.failure(rec.at, rec.context_user or rec.statement_user, rec.workspace, rec.line, rec.kind)


def _start_pg(m: re.Match[str], n: int, ctx: _Ctx) -> _PgRecord | None:
    """A record for an error line about our constraint; None otherwise (cut lines are counted)."""
    msg = m.group("msg")
    if m.group("sev") not in _PG_ERROR_LEVELS or _FK_MARK not in msg:
        return None
    fk = _FK_RE.search(msg)
    if fk is None:
        ctx.skip()
        return None
    if fk.group("name") != ctx.constraint:
        ctx.other(fk.group("name"))
        return None
    at = parse_time(m.group("ts"))
    if at is None:
        ctx.skip()
        return None
    return _PgRecord(key=(m.group("ts"), m.group("prefix")), line=n, at=at, kind=_kind_of(msg[:fk.start()]))


def _parse_pg_stderr(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    rec: _PgRecord | None = None
    for n, text in lines:
        ctx.idle = False
        if text.startswith("\t"):  # continuation of a multi-line message, detail, context...
            if rec is not None and rec.last_field:
                _absorb_pg(rec, rec.last_field, text.strip(), ctx)
        elif (m := _STDERR_LINE.match(text)) is None:
            if text.strip():
                ctx.skip()
        elif m.group("sev") in _PG_SECONDARY:
            if rec is not None:
                if rec.key == (m.group("ts"), m.group("prefix")):
                    _absorb_pg(rec, m.group("sev"), m.group("msg"), ctx)
                else:
                    rec.last_field = None  # another process's line: stop continuing ours
        else:
            if rec is not None:
                yield _finish_pg(rec, ctx)
            rec = _start_pg(m, n, ctx)
        ctx.idle = rec is None  # no record open: lines without the error text may be skimmed
    if rec is not None:
        yield _finish_pg(rec, ctx)


# -- PostgreSQL csvlog ----------------------------------------------------------------------
_CSV_TIME, _CSV_SEVERITY, _CSV_MESSAGE, _CSV_DETAIL = 0, 11, 13, 14
_CSV_INTERNAL_QUERY, _CSV_CONTEXT, _CSV_QUERY = 16, 18, 19
_CSV_MIN_COLUMNS = 14  # up to the message; later columns vary with the version


def _csv_records(units: Iterable[_Unit], ctx: _Ctx) -> Iterator[tuple[int, list[str]]]:
    """(first line, physical lines) of each record: quotes balanced, starting with a timestamp."""
    buf: list[str] = []  # cleared, never rebound: _idle_when_empty watches it
    start = quotes = size = 0
    for n, text in _idle_when_empty(units, buf, ctx):
        if not isinstance(text, str):  # a run of blank lines: part of an open record (a quoted field)
            if buf and len(buf) + text > MAX_CSV_RECORD_LINES:
                ctx.skip(MAX_CSV_RECORD_LINES + 1)  # as line by line: cut when it grows past the limit
                buf.clear()
            elif buf:
                buf.extend([""] * text)
            continue
        if buf and _CSV_START.match(text):
            ctx.skip(len(buf))  # the previous record was cut inside a quoted field
            buf.clear()
        if not buf:
            if not text.strip():
                continue
            if not _CSV_START.match(text):
                ctx.skip()
                continue
            start, quotes, size = n, 0, 0
        buf.append(text)
        quotes += text.count('"')
        size += len(text)
        if quotes % 2 == 0:
            yield start, buf
            buf.clear()
        elif size > MAX_CSV_RECORD_CHARS or len(buf) > MAX_CSV_RECORD_LINES:
            ctx.skip(len(buf))
            buf.clear()
    if buf:
        ctx.skip(len(buf))


def _idle_when_empty(units: Iterable[_Unit], buf: list[str], ctx: _Ctx) -> Iterator[_Unit]:
    """The units, the parser marked idle (skimmable) whenever it asks for one with no record open."""
    for unit in units:
        yield unit
        ctx.idle = not buf
    ctx.idle = False


def _csv_row(physical: list[str]) -> list[str] | None:
    """The record's fields (csv module), or None when it is not one well-formed row."""
    try:
        rows = list(csv.reader([line + "\n" for line in physical]))
    except csv.Error:
        return _csv_row_large(physical)
    return rows[0] if len(rows) == 1 else None


def _csv_row_large(physical: list[str]) -> list[str] | None:
    """Retry with a field size limit large enough for a record we accepted (huge statements)."""
    old = csv.field_size_limit()
    if old >= MAX_CSV_RECORD_CHARS:
        return None
    try:
        csv.field_size_limit(MAX_CSV_RECORD_CHARS)
        rows = list(csv.reader([line + "\n" for line in physical]))
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(old)
    return rows[0] if len(rows) == 1 else None


def _column(row: list[str], i: int) -> str:
    return row[i] if len(row) > i else ""


def _parse_pg_csv(units: Iterable[_Unit], ctx: _Ctx) -> Iterator[LogFailure]:
    for start, physical in _csv_records(units, ctx):
        row = _csv_row(physical)
        if row is None or len(row) < _CSV_MIN_COLUMNS:
            ctx.skip(len(physical))
            continue
        message = row[_CSV_MESSAGE]
        if row[_CSV_SEVERITY] not in _PG_ERROR_LEVELS or _FK_MARK not in message:
            continue
        fk = _FK_RE.search(message)
        at = parse_time(row[_CSV_TIME])
        if fk is None or at is None:
            ctx.skip(len(physical))
            continue
        if fk.group("name") != ctx.constraint:
            ctx.other(fk.group("name"))
            continue
        user = (ctx.user_in(_column(row, _CSV_CONTEXT)) or ctx.user_in(_column(row, _CSV_QUERY))
                or ctx.user_in(_column(row, _CSV_INTERNAL_QUERY)))
        kind = _kind_of(message[:fk.start()])
        yield ctx.failure(at, user, ctx.workspace_in(_column(row, _CSV_DETAIL), kind), start, kind)


# -- PostgreSQL jsonlog -------------------------------------------------------------------
def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _parse_pg_json(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    for n, text in lines:
        stripped = text.strip()
        if not stripped:
            continue
        if _FK_MARK not in text:  # PostgreSQL writes the message's text as it is (it escapes no letter)
            if not _json_framed(stripped, arrays=False):
                ctx.skip()
            continue
        obj = _load_json(text)
        if not isinstance(obj, dict):
            ctx.skip()
            continue
        message = obj.get("message")
        if obj.get("error_severity") not in _PG_ERROR_LEVELS or not isinstance(message, str) \
                or _FK_MARK not in message:
            continue
        fk = _FK_RE.search(message)
        at = parse_time(obj.get("timestamp"))
        if fk is None or at is None:
            ctx.skip()
            continue
        if fk.group("name") != ctx.constraint:
            ctx.other(fk.group("name"))
            continue
        user = _first_user(ctx, obj.get("context"), obj.get("statement"), obj.get("internal_query"))
        detail = obj.get("detail")
        kind = _kind_of(message[:fk.start()])
        yield ctx.failure(at, user, ctx.workspace_in(detail if isinstance(detail, str) else None, kind), n, kind)


def _first_user(ctx: _Ctx, *texts: Any) -> str | None:
    for text in texts:
        user = ctx.user_in(text) if isinstance(text, str) else None
        if user:
            return user
    return None


# -- JSON lines (log drains) ----------------------------------------------------------------
TIME_KEYS = ("timestamp", "time", "ts", "@timestamp", "date", "timestampInMs", "datetime")
USER_KEYS = frozenset({"userid", "user", "privydid", "did", "usr", "usrid", "privyuserid", "privyid"})
_USER_ID_KEYS = ("id", "did", "userId", "privyDid")  # inside a user object: {"user": {"id": ...}}
_JSON_DEPTH = 6


def _dicts_breadth_first(obj: dict[str, Any], depth: int = _JSON_DEPTH) -> Iterator[dict[str, Any]]:
    level: list[dict[str, Any]] = [obj]
    for _ in range(depth):
        nxt: list[dict[str, Any]] = []
        for d in level:
            yield d
            for v in d.values():
                if isinstance(v, dict):
                    nxt.append(v)
                elif isinstance(v, list):
                    nxt.extend(x for x in v if isinstance(x, dict))
        if not nxt:
            return
        level = nxt


def _strings(value: Any, depth: int = _JSON_DEPTH) -> Iterator[str]:
    """Every string in a JSON value, in document order."""
    if isinstance(value, str):
        yield value
    elif depth > 0 and isinstance(value, dict):
        for v in value.values():
            yield from _strings(v, depth - 1)
    elif depth > 0 and isinstance(value, list):
        for v in value:
            yield from _strings(v, depth - 1)


def _json_time(obj: dict[str, Any]) -> datetime | None:
    for d in _dicts_breadth_first(obj):
        for key in TIME_KEYS:
            if key in d:
                at = parse_time(d[key])
                if at is not None:
                    return at
    return None


def _norm_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "").replace(".", "")


def _json_user(obj: dict[str, Any], ctx: _Ctx) -> str | None:
    """A user id from a user field (``userId``, ``usr.id``, ``user: {id}``...), checked by the pattern."""
    for d in _dicts_breadth_first(obj):
        for key, value in d.items():
            if _norm_key(key) not in USER_KEYS:
                continue
            if isinstance(value, dict):
                value = next((value[k] for k in _USER_ID_KEYS if isinstance(value.get(k), str)), None)
            user = ctx.user_in(value) if isinstance(value, str) else None
            if user:
                return user
    return None


def _json_workspaces(blob: str, ctx: _Ctx) -> list[tuple[str | None, str]]:
    """(workspace id, kind) of our constraint's errors in a record's text (each error's next ``Key``)."""
    matches = list(_FK_RE.finditer(blob))
    found: list[tuple[str | None, str]] = []
    first_kind: str | None = None
    for i, m in enumerate(matches):
        if m.group("name") != ctx.constraint:
            ctx.other(m.group("name"))
            continue
        kind = _kind_of(blob[matches[i - 1].end() if i else 0:m.start()])
        first_kind = first_kind or kind
        end = matches[i + 1].start() if i + 1 < len(matches) else len(blob)
        ws = ctx.workspace_in(blob[m.end():end], kind)
        if ws and (ws, kind) not in found:
            found.append((ws, kind))
    if not found and matches:
        kind = first_kind or "insert"  # detail field before the message
        found.append((ctx.workspace_in(blob[: matches[0].start()], kind), kind))
    return found


def _json_record_failures(obj: dict[str, Any], n: int, ctx: _Ctx) -> Iterator[LogFailure]:
    blob = "\n".join(_strings(obj))
    if _FK_MARK not in blob:
        return
    if not any(m.group("name") == ctx.constraint for m in _FK_RE.finditer(blob)):
        for m in _FK_RE.finditer(blob):
            ctx.other(m.group("name"))
        if _FK_RE.search(blob) is None:
            ctx.skip()  # the message was cut inside the constraint's name
        return
    at = _json_time(obj)
    if at is None:
        ctx.skip()
        return
    user = _json_user(obj, ctx) or ctx.user_in(blob)
    for ws, kind in _json_workspaces(blob, ctx):
        yield ctx.failure(at, user, ws, n, kind)


def _parse_jsonl(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    for n, text in lines:
        stripped = text.strip()
        if not stripped:
            continue
        if _FK_MARK not in stripped:
            if not _json_framed(stripped, arrays=True):
                ctx.skip()
            continue
        obj = _load_json(stripped)
        records = obj if isinstance(obj, list) else [obj]  # a drain's batch saved as one array
        if not records or not all(isinstance(r, dict) for r in records):
            ctx.skip()
            continue
        for record in records:
            yield from _json_record_failures(record, n, ctx)


#: The byte-level skim of each format (see :class:`_Skimmer`).
_SKIMMERS: dict[str, _Skimmer] = {
    "text": _TextSkimmer(),
    "jsonl": _JsonSkimmer("jsonl"),
    "pg_stderr": _StderrSkimmer(),
    "pg_csv": _CsvSkimmer(),
    "pg_json": _JsonSkimmer("pg_json"),
}

_PARSERS = {
    "text": _parse_text,
    "jsonl": _parse_jsonl,
    "pg_stderr": _parse_pg_stderr,
    "pg_csv": _parse_pg_csv,
    "pg_json": _parse_pg_json,
}


def find_all(block: bytes, needle: bytes, start: int, end: int) -> Iterator[int]:
    """Every offset of ``needle`` in ``block[start:end]``, left to right, not overlapping."""
    i = block.find(needle, start, end)
    while i >= 0:
        yield i
        i = block.find(needle, i + len(needle), end)


# -- for app_events.py
def read_log_lines(path: PathArg, stats: ScanStats | None = None,
                   blank_lines_kept: int = 0) -> tuple[str, Iterator[tuple[int, str]]]:
    """One log file's format (one of FORMATS, decided as :func:`iter_failures` decides it, from
    its first lines) and its readable lines, numbered as in the file, read as the failure scan
    reads them (see :func:`iter_lines`); of a run of blank lines only the last
    ``blank_lines_kept`` come. The file is opened and its first lines read at once
    (:class:`LogReadError` when it cannot be); ``stats`` gets the file (and its
    :class:`LogFileRead` when it has ``file_reads``) and counts the lines skipped. Read the lines
    to their end, or ``close()`` them, to close the file."""
    target: ScanStats = stats if stats is not None else LogScan()
    ctx = _Ctx(str(path), compile_user_pattern(DEFAULT_USER_PATTERN), DEFAULT_CONSTRAINT, target)
    units = _units(Path(path), ctx)
    try:
        fmt, head = _sniff(units, ctx)
    except BaseException:
        units.close()
        raise
    ctx.format = ctx.read.format = fmt
    keep = max(0, int(blank_lines_kept))
    ctx.blanks_kept = keep
    return fmt, _lines_after_sniff(head, units, keep)


def _lines_after_sniff(head: list[_Unit], units: Iterator[_Unit], keep: int) -> Iterator[_Line]:
    """The lines of :func:`read_log_lines` (closing it, even unstarted, lets go of the file)."""
    try:
        yield from _expanded(head, keep)
        yield from _expanded(units, keep)
    finally:
        units.close()  # type: ignore[attr-defined]


def leading_time(text: str) -> datetime | None:
    """The timestamp a text log line starts with (as the text parser reads it), UTC; else ``None``."""
    return _leading_time(text)


def json_records(text: str) -> list[dict[str, Any]] | None:
    """The records of one JSON-lines line: one object, or a drain's batch saved as one array of
    objects; ``None`` when the line is not that (broken JSON, a bare value)."""
    obj = _load_json(text.strip())
    records = obj if isinstance(obj, list) else [obj]
    if not records or not all(isinstance(r, dict) for r in records):
        return None
    return records


def json_time(record: dict[str, Any]) -> datetime | None:
    """A JSON record's time (under TIME_KEYS, possibly nested), UTC; ``None`` when it has none."""
    return _json_time(record)


def json_user(record: dict[str, Any], user_pattern: str | re.Pattern[str] = DEFAULT_USER_PATTERN) -> str | None:
    """The user id of a JSON record's user field (``userId``, ``usr.id``...), checked by the pattern."""
    ctx = _Ctx("", compile_user_pattern(user_pattern), DEFAULT_CONSTRAINT, LogScan())
    return _json_user(record, ctx)


def json_first_string(record: dict[str, Any], keys: Iterable[str]) -> str | None:
    """The first string under one of ``keys`` in a JSON record, searched level by level
    (``{"attributes": {"message": ...}}`` is found), the keys in the order given."""
    wanted = tuple(keys)
    for d in _dicts_breadth_first(record):
        for key in wanted:
            value = d.get(key)
            if isinstance(value, str):
                return value
    return None
