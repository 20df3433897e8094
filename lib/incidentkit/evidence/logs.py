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
has one). Only the given constraint counts; other violations are ignored. Damaged content never
stops a scan: undecodable, binary, overlong, truncated or unparsable lines are counted in
``skipped_lines`` and skipped. Files are read line by line (gzip detected by its magic bytes),
so memory stays bounded whatever their size. Only paths that cannot be read at all raise
:class:`~incidentkit.exceptions.LogReadError`.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import os
import re
import sys
import zlib
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import chain
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Protocol, Union

from ..exceptions import ConfigError, LogReadError
from ..text import iso_utc

DEFAULT_USER_PATTERN = r"did:privy:[a-z0-9]+"
DEFAULT_CONSTRAINT = "users_primary_workspace_id_workspaces_id_fk"

FORMATS = ("text", "jsonl", "pg_stderr", "pg_csv", "pg_json")

#: A physical line longer than this is skipped (and counted), never held in memory whole.
MAX_LINE_BYTES = 1 << 20
#: A csvlog record (several physical lines when fields hold newlines) longer than this is skipped.
MAX_CSV_RECORD_CHARS = 4 << 20
#: How many non-empty lines decide a file's format.
SNIFF_LINES = 20
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
class LogFailure:
    """One failed insert or update of a user, as one log file recorded it."""

    at: datetime  # timezone-aware, UTC
    user_id: str | None
    workspace_id: str | None
    constraint: str
    source: str  # the file, as given or as found in a directory
    line: int  # 1-based line where the failure record starts (the error line)
    format: str  # one of FORMATS

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
        }


@dataclass
class LogScan:
    """Everything one scan found: the failures, the lines it had to skip and the files it read."""

    failures: list[LogFailure] = field(default_factory=list)
    skipped_lines: int = 0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": [f.to_dict() for f in self.failures],
            "skipped_lines": self.skipped_lines,
            "files": list(self.files),
        }


class ScanStats(Protocol):
    """What ``iter_failures(stats=...)`` updates as it goes (a :class:`LogScan` will do)."""

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
    constraint: str = DEFAULT_CONSTRAINT,
    stats: ScanStats | None = None,
) -> Iterator[LogFailure]:
    """Stream the failures in ``paths``, file by file, in file order.

    Paths and the user pattern are checked at once (``LogReadError``/``ConfigError``); files are
    opened as the iteration reaches them. ``stats``, when given, is updated as the scan goes:
    ``files`` gets each file opened and ``skipped_lines`` counts the lines skipped.
    """
    rx = compile_user_pattern(user_pattern)
    files = list(iter_log_files(paths))
    target: ScanStats = stats if stats is not None else LogScan()
    return _iter_files(files, rx, constraint, target)


def scan_logs(
    paths: Paths,
    *,
    user_pattern: str | re.Pattern[str] = DEFAULT_USER_PATTERN,
    constraint: str = DEFAULT_CONSTRAINT,
) -> LogScan:
    """Read everything and return the failures with the skipped-line count and the files read."""
    scan = LogScan()
    scan.failures.extend(iter_failures(paths, user_pattern=user_pattern, constraint=constraint, stats=scan))
    return scan


def compile_user_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """The user-id regex, compiled; :class:`ConfigError` when it is not a valid regex."""
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        raise ConfigError(f"invalid user id pattern {pattern!r}: {e}") from None


def _iter_files(files: list[Path], rx: re.Pattern[str], constraint: str, stats: ScanStats) -> Iterator[LogFailure]:
    for path in files:
        yield from _file_failures(path, _Ctx(str(path), rx, constraint, stats))


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
_GZIP_MAGIC = b"\x1f\x8b"
_BAD_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Ctx:
    """What one file's parser needs: where it is, what it looks for, and where to count."""

    def __init__(self, source: str, rx: re.Pattern[str], constraint: str, stats: ScanStats):
        self.source = source
        self.rx = rx
        self.constraint = constraint
        self.stats = stats
        self.format = "text"

    def skip(self, n: int = 1) -> None:
        self.stats.skipped_lines += n

    def user_in(self, text: str | None) -> str | None:
        return find_user(self.rx, text)

    def failure(self, at: datetime, user: str | None, workspace: str | None, line: int) -> LogFailure:
        return LogFailure(at=at.astimezone(timezone.utc), user_id=user, workspace_id=workspace,
                          constraint=self.constraint, source=self.source, line=line, format=self.format)


def _open_raw(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise LogReadError(f"log file not found: {path}") from None
    except PermissionError:
        raise LogReadError(f"cannot open log file {path}: permission denied") from None
    except OSError as e:
        raise LogReadError(f"cannot open log file {path}: {e.strerror or 'unreadable'}") from None


@contextmanager
def _open_log(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it starts with gzip's magic bytes."""
    raw = _open_raw(path)
    try:
        try:
            magic = raw.peek(2)[:2]  # type: ignore[attr-defined]
        except OSError:
            magic = b""
        if magic == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw
    finally:
        raw.close()


def _raw_lines(fh: IO[bytes]) -> Iterator[bytes | None]:
    """Physical lines; ``None`` stands for an overlong line, whose bytes are discarded."""
    while True:
        chunk = fh.readline(MAX_LINE_BYTES)
        if not chunk:
            return
        if len(chunk) >= MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = fh.readline(MAX_LINE_BYTES)
            yield None
        else:
            yield chunk


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


#: Progress on a terminal: a line every this many bytes of a log (quiet when stderr is no terminal).
PROGRESS_EVERY = 64 * 1024 * 1024


def _progress(source: str, done: int, final: bool = False) -> None:
    if sys.stderr.isatty():
        end = "\n" if final else ""
        print(f"\r  reading {source}: {done / 1e6:,.0f} MB", end=end, file=sys.stderr, flush=True)


def _lines(path: Path, ctx: _Ctx) -> Iterator[tuple[int, str]]:
    """(line number, text) of each good line; bad lines are counted as skipped and left out."""
    with _open_log(path) as fh:
        ctx.stats.files.append(ctx.source)
        n = done = 0
        next_report = PROGRESS_EVERY
        try:
            for raw in _raw_lines(fh):
                n += 1
                done += len(raw) if raw is not None else MAX_LINE_BYTES
                if done >= next_report:
                    _progress(ctx.source, done)
                    next_report += PROGRESS_EVERY
                text = _decode(raw)
                if text is None:
                    ctx.skip()
                else:
                    yield n, text
        except (EOFError, OSError, zlib.error):  # a truncated or corrupt gzip stream
            ctx.skip()
        if done >= PROGRESS_EVERY:
            _progress(ctx.source, done, final=True)


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


def _sniff(lines: Iterator[tuple[int, str]]) -> tuple[str, list[tuple[int, str]]]:
    """The file's format (majority of its first non-empty lines) and the lines read to decide."""
    head: list[tuple[int, str]] = []
    votes: Counter[str] = Counter()
    order: list[str] = []
    for item in lines:
        head.append(item)
        kind = _classify(item[1])
        if kind is None:
            continue
        votes[kind] += 1
        if kind not in order:
            order.append(kind)
        if sum(votes.values()) >= SNIFF_LINES:
            break
    if not votes:
        return "text", head
    best = max(votes.values())
    return next(k for k in order if votes[k] == best), head


def _file_failures(path: Path, ctx: _Ctx) -> Iterator[LogFailure]:
    lines = _lines(path, ctx)
    fmt, head = _sniff(lines)
    ctx.format = fmt
    yield from _PARSERS[fmt](chain(head, lines), ctx)


# -- shared extraction --------------------------------------------------------------------
_FK_MARK = "violates foreign key constraint"
_FK_RE = re.compile(r'violates foreign key constraint \\?"(?P<name>[^"\\]+)\\?"')
_KEY_MARK = "Key ("
_KEY_RE = re.compile(r"Key \((?P<cols>[^)]*)\)=\((?P<vals>.*?)\) is not present in table")

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


def _workspace_in(text: str | None) -> str | None:
    m = _KEY_RE.search(text) if text else None
    return m.group("vals") if m else None


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


def _text_record_ends(rec: _TextRecord, n: int, text: str, has_ts: bool) -> bool:
    if n - rec.line > TEXT_RECORD_MAX_LINES:
        return True
    return has_ts and _KEY_MARK not in text  # a new entry starts (a timestamped Detail still belongs)


def _absorb_text(rec: _TextRecord, text: str, ctx: _Ctx) -> None:
    if rec.workspace is None and _KEY_MARK in text:
        rec.workspace = _workspace_in(text)
        if rec.workspace is None:
            ctx.skip()  # a cut "Key (...)" detail
    if rec.user is None:
        rec.user = ctx.user_in(text)


def _finish_text(rec: _TextRecord, ctx: _Ctx) -> Iterator[LogFailure]:
    if rec.at is None:
        ctx.skip()  # no timestamp anywhere before the error: cannot place it in time
        return
    yield ctx.failure(rec.at, rec.user or rec.before_user, rec.workspace, rec.line)


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

    def _error_line(self, n: int, text: str) -> Iterator[LogFailure]:
        fk = _FK_RE.search(text)
        if fk is None:
            self.ctx.skip()  # the error line was cut before its constraint's name
            return
        before = next((u for u in reversed(self.recent) if u), None)
        self.recent.clear()  # the lines before an error belong to it, whichever constraint it names
        ours = fk.group("name") == self.ctx.constraint
        if ours and self._repeats(n):
            _absorb_text(self.rec, text, self.ctx)  # type: ignore[arg-type]
            return
        yield from self.flush()
        if ours:
            self.rec = _TextRecord(line=n, at=self.last_ts, before_user=before)
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


def _absorb_pg(rec: _PgRecord, sev: str, msg: str, ctx: _Ctx) -> None:
    rec.last_field = sev
    if sev == "DETAIL" and rec.workspace is None:
        rec.workspace = _workspace_in(msg)
    elif sev == "CONTEXT" and rec.context_user is None:
        rec.context_user = ctx.user_in(msg)
    elif sev in ("STATEMENT", "QUERY") and rec.statement_user is None:
        rec.statement_user = ctx.user_in(msg)


def _finish_pg(rec: _PgRecord, ctx: _Ctx) -> LogFailure:
    return ctx.failure(rec.at, rec.context_user or rec.statement_user, rec.workspace, rec.line)


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
        return None
    at = parse_time(m.group("ts"))
    if at is None:
        ctx.skip()
        return None
    return _PgRecord(key=(m.group("ts"), m.group("prefix")), line=n, at=at)


def _parse_pg_stderr(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    rec: _PgRecord | None = None
    for n, text in lines:
        if text.startswith("\t"):  # continuation of a multi-line message, detail, context...
            if rec is not None and rec.last_field:
                _absorb_pg(rec, rec.last_field, text.strip(), ctx)
            continue
        m = _STDERR_LINE.match(text)
        if m is None:
            if text.strip():
                ctx.skip()
            continue
        sev = m.group("sev")
        key = (m.group("ts"), m.group("prefix"))
        if sev in _PG_SECONDARY:
            if rec is not None:
                if rec.key == key:
                    _absorb_pg(rec, sev, m.group("msg"), ctx)
                else:
                    rec.last_field = None  # another process's line: stop continuing ours
            continue
        if rec is not None:
            yield _finish_pg(rec, ctx)
        rec = _start_pg(m, n, ctx)
    if rec is not None:
        yield _finish_pg(rec, ctx)


# -- PostgreSQL csvlog ----------------------------------------------------------------------
_CSV_TIME, _CSV_SEVERITY, _CSV_MESSAGE, _CSV_DETAIL = 0, 11, 13, 14
_CSV_INTERNAL_QUERY, _CSV_CONTEXT, _CSV_QUERY = 16, 18, 19
_CSV_MIN_COLUMNS = 14  # up to the message; later columns vary with the version


def _csv_records(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[tuple[int, list[str]]]:
    """(first line, physical lines) of each record: quotes balanced, starting with a timestamp."""
    buf: list[str] = []
    start = quotes = size = 0
    for n, text in lines:
        if buf and _CSV_START.match(text):
            ctx.skip(len(buf))  # the previous record was cut inside a quoted field
            buf = []
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
            buf = []
        elif size > MAX_CSV_RECORD_CHARS:
            ctx.skip(len(buf))
            buf = []
    if buf:
        ctx.skip(len(buf))


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


def _parse_pg_csv(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    for start, physical in _csv_records(lines, ctx):
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
            continue
        user = (ctx.user_in(_column(row, _CSV_CONTEXT)) or ctx.user_in(_column(row, _CSV_QUERY))
                or ctx.user_in(_column(row, _CSV_INTERNAL_QUERY)))
        yield ctx.failure(at, user, _workspace_in(_column(row, _CSV_DETAIL)), start)


# -- PostgreSQL jsonlog -------------------------------------------------------------------
def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _parse_pg_json(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    for n, text in lines:
        if not text.strip():
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
            continue
        user = _first_user(ctx, obj.get("context"), obj.get("statement"), obj.get("internal_query"))
        detail = obj.get("detail")
        yield ctx.failure(at, user, _workspace_in(detail if isinstance(detail, str) else None), n)


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


def _json_workspaces(blob: str, ctx: _Ctx) -> list[str | None]:
    """The workspace ids of our constraint's errors in a record's text (each error's next ``Key``)."""
    matches = list(_FK_RE.finditer(blob))
    found: list[str | None] = []
    for i, m in enumerate(matches):
        if m.group("name") != ctx.constraint:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(blob)
        ws = _workspace_in(blob[m.end():end])
        if ws and ws not in found:
            found.append(ws)
    if not found and matches:
        found.append(_workspace_in(blob[: matches[0].start()]))  # detail field before the message
    return found


def _json_record_failures(obj: dict[str, Any], n: int, ctx: _Ctx) -> Iterator[LogFailure]:
    blob = "\n".join(_strings(obj))
    if _FK_MARK not in blob:
        return
    if not any(m.group("name") == ctx.constraint for m in _FK_RE.finditer(blob)):
        if _FK_RE.search(blob) is None:
            ctx.skip()  # the message was cut inside the constraint's name
        return
    at = _json_time(obj)
    if at is None:
        ctx.skip()
        return
    user = _json_user(obj, ctx) or ctx.user_in(blob)
    for ws in _json_workspaces(blob, ctx):
        yield ctx.failure(at, user, ws, n)


def _parse_jsonl(lines: Iterable[tuple[int, str]], ctx: _Ctx) -> Iterator[LogFailure]:
    for n, text in lines:
        stripped = text.strip()
        if not stripped:
            continue
        obj = _load_json(stripped)
        records = obj if isinstance(obj, list) else [obj]  # a drain's batch saved as one array
        if not records or not all(isinstance(r, dict) for r in records):
            ctx.skip()
            continue
        if _FK_MARK not in stripped:
            continue
        for record in records:
            yield from _json_record_failures(record, n, ctx)


_PARSERS = {
    "text": _parse_text,
    "jsonl": _parse_jsonl,
    "pg_stderr": _parse_pg_stderr,
    "pg_csv": _parse_pg_csv,
    "pg_json": _parse_pg_json,
}
