"""Deletions of workspaces and memberships, as the application's own logs record them.

A schema map names, in any number of ``[[deletions.log_events]]`` rules, how the application's
request log shows a deletion::

    [[deletions.log_events]]
    table = "workspaces"          # or "memberships"
    pattern = 'DELETE /api/teams/(?P<id>[0-9a-f-]{36}) 2[0-9][0-9]'

(:class:`~incidentkit.db.schema.LogEventRule`, checked by
:func:`~incidentkit.db.schema.log_event_rules`). Each rule is a Python regular expression with a
named group ``id`` (the deleted row's id) and, optionally, ``user`` (who deleted it). This module
reads application logs and yields one :class:`AppLogEvent` per record a rule matches.

Files are found and read as the failure scan reads them (:mod:`incidentkit.evidence.logs`:
files, globs, directories; gzip by its magic bytes; bounded memory; binary, invalid and
overlong lines skipped and counted), and their format is decided the same way. Only application
logs are read: ``text`` (a rule is matched against each line; the time is the line's leading
timestamp, else the latest one before it) and ``jsonl`` (a rule is matched against the record's
message field, see MESSAGE_KEYS, and, when that does not match, against the raw line; the time
is the record's own time field). PostgreSQL's server logs (``pg_stderr``, ``pg_csv``,
``pg_json``) are left out, unread past their first lines (:mod:`.server_log` reads them). A
record a rule matches but that carries no readable time cannot date a deletion: it is counted in
``skipped_lines``, never guessed.

:func:`scan_app_events` gives each deletion once: the same table, id and rule seen in several
files within SAME_EVENT_SECONDS is one event listing every place it was seen (``seen_in``).
:func:`iter_app_events` streams the records file by file, one event per record.

The regular expressions are the user's; a line is never longer than ``logs.MAX_LINE_BYTES`` and
at most MAX_MATCHES_PER_RECORD matches are taken from one record. A rule with a required
literal (``DELETE /api/teams/`` above) is tried only on lines holding it (:func:`required_literal`);
the results are those of trying every rule on every line (``PREFILTER = False``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..db.schema import LogEventRule, SchemaMap, log_event_rules
from ..exceptions import ConfigError
from ..text import iso_utc, one_line
from . import logs
from .inputs import normalize_workspace_id
from .logs import DEFAULT_USER_PATTERN, LogFileRead, Paths

#: The formats read as application logs; the others (PostgreSQL's own) are left out.
APP_FORMATS = ("text", "jsonl")
#: A JSON record's message: the first string under one of these keys, searched level by level.
MESSAGE_KEYS = ("message", "msg", "log", "text", "textPayload", "body", "short_message", "event")
#: The same event (table, id, rule) seen in several files within this many seconds is one event.
SAME_EVENT_SECONDS = logs.SAME_FAILURE_SECONDS
#: How many characters of the matched record's message an event keeps.
MESSAGE_CHARS = 300
#: At most this many matches of one rule are taken from one record (a pattern that matches
#: everywhere, even the empty string, stays cheap).
MAX_MATCHES_PER_RECORD = 100
#: Try a rule only on lines holding its required literal (:func:`required_literal`); the
#: results are the same either way.
PREFILTER = True


@dataclass(frozen=True)
class AppLogEvent:
    """One deletion an application log recorded: which row (``table``, ``id``), when (``at``),
    where (``file``, 1-based ``line``, ``format``), who (``actor``: the rule's ``user`` group, else
    the user id the user pattern finds in the record, else ``None``), the record's ``message``
    (one line, escaped, cut) and the ``rule`` (pattern text) that matched. ``seen_in`` lists every
    (file, line) of the event, the first first (one place for a record straight from a file)."""

    table: str  # "workspaces" | "memberships"
    id: str
    at: datetime  # timezone-aware, UTC
    file: str
    line: int
    format: str  # "text" | "jsonl"
    actor: str | None
    message: str
    rule: str
    seen_in: tuple[tuple[str, int], ...] = ()

    @property
    def where(self) -> str:
        """``file:line`` of the first place it was seen."""
        return f"{self.file}:{self.line}"

    @property
    def places(self) -> tuple[tuple[str, int], ...]:
        return self.seen_in or ((self.file, self.line),)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``at`` is ISO-8601 UTC ending in ``Z``."""
        return {
            "table": self.table,
            "id": self.id,
            "at": iso_utc(self.at),
            "file": self.file,
            "line": self.line,
            "format": self.format,
            "actor": self.actor,
            "message": self.message,
            "rule": self.rule,
            "seen_in": [{"file": f, "line": n} for f, n in self.places],
        }


@dataclass
class AppEventScan:
    """What a scan found: the events (each once, in time order), the application log files read
    (``files``, with ``file_reads``), the lines skipped (damaged, or matched but without a time),
    and the files left out as PostgreSQL server logs (``skipped_files``: (file, format))."""

    events: list[AppLogEvent] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    file_reads: list[LogFileRead] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": [e.to_dict() for e in self.events],
            "files": list(self.files),
            "skipped_lines": self.skipped_lines,
            "skipped_files": [{"file": f, "format": fmt} for f, fmt in self.skipped_files],
            "file_reads": [r.to_dict() for r in self.file_reads],
        }


# -- public entry points ------------------------------------------------------------------
def check_rules(rules: Any) -> tuple[LogEventRule, ...]:
    """The rules as :class:`~incidentkit.db.schema.LogEventRule` objects: a schema map's
    ``log_events``, rules as they are, or ``{"table", "pattern"}`` tables (checked as the
    schema map checks them); :class:`ConfigError` for anything else."""
    if rules is None:
        return ()
    if isinstance(rules, SchemaMap):
        return tuple(rules.log_events)
    if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Iterable):
        raise ConfigError("log event rules must be a schema map or a list of rules (table, pattern)")
    items = list(rules)
    if all(isinstance(r, Mapping) for r in items):
        return log_event_rules([dict(r) for r in items])
    if not all(_is_rule(r) for r in items):
        raise ConfigError("log event rules must be a schema map or a list of rules (table, pattern)")
    return tuple(items)


def iter_app_events(
    paths: Paths,
    rules: Any,
    *,
    user_pattern: str | re.Pattern[str] = DEFAULT_USER_PATTERN,
    stats: AppEventScan | None = None,
) -> Iterator[AppLogEvent]:
    """Stream the events in ``paths``, file by file, each file's in line order (one event per
    record and rule and id: the same deletion in two files is two events here).

    ``rules``: a :class:`SchemaMap` (its ``log_events``) or a list of rules (see
    :func:`check_rules`). No rules: nothing is read, the paths are not even looked at. Otherwise
    paths, rules and the user pattern are checked at once (:class:`LogReadError`,
    :class:`ConfigError`) and each file is opened as the iteration reaches it. ``stats``, when
    given, gets the files read (``files``, ``file_reads``), the files left out as server logs
    (``skipped_files``) and the skipped lines as the scan goes.
    """
    checked = check_rules(rules)
    if not checked:
        return iter(())
    rx = logs.compile_user_pattern(user_pattern)
    files = list(logs.iter_log_files(paths))
    target = stats if stats is not None else AppEventScan()
    return _iter_files(files, _Matcher(checked), rx, target)


def scan_app_events(
    paths: Paths,
    rules: Any,
    *,
    user_pattern: str | re.Pattern[str] = DEFAULT_USER_PATTERN,
    seconds: float = SAME_EVENT_SECONDS,
) -> AppEventScan:
    """Every deletion in ``paths`` once, in time order (see :func:`merge_app_events`), with the
    files read and the lines skipped. No rules: an empty scan, nothing read."""
    scan = AppEventScan()
    events = list(iter_app_events(paths, rules, user_pattern=user_pattern, stats=scan))
    scan.events = merge_app_events(events, seconds)
    return scan


def merge_app_events(events: Iterable[AppLogEvent], seconds: float = SAME_EVENT_SECONDS) -> list[AppLogEvent]:
    """One event per deletion, each listing every place it was seen, in time order.

    Two records are the same deletion when they have the same table, id and rule, come from
    different files, and the later is at most ``seconds`` after the merged event's earliest
    record. Records from one file are never merged (a repeated request in one log is another
    event). The merged event is its earliest record, with an actor it lacked taken from the
    others, and ``seen_in`` in time order.
    """
    ordered = sorted(enumerate(events), key=lambda p: (p[1].at, p[0]))
    groups: list[list[AppLogEvent]] = []
    by_key: dict[tuple[str, str, str], _OpenGroups] = {}
    for _, e in ordered:
        key = (e.table, e.id, e.rule)
        open_ = by_key.get(key)
        if open_ is None:
            open_ = by_key[key] = _OpenGroups()
        home = open_.place(e, seconds)
        if home is None:
            home = open_.add(e)
            groups.append(home)
        home.append(e)
    out = []
    for g in groups:
        first = g[0]
        actor = first.actor or next((x.actor for x in g if x.actor), None)
        places = tuple(dict.fromkeys(p for x in g for p in x.places))
        out.append(replace(first, actor=actor, seen_in=places))
    return out


def required_literal(pattern: str | re.Pattern[str]) -> str | None:
    """A piece of text every match of ``pattern`` contains, or ``None`` when none is known.

    Conservative: the longest run of plain characters at the pattern's top level (outside
    groups, classes and alternatives; a character a quantifier applies to ends the run). Patterns
    with a top-level ``|``, or compiled case-insensitive or verbose, have none.
    """
    if isinstance(pattern, re.Pattern):
        text, flags = pattern.pattern, pattern.flags
    else:
        text = pattern
        try:
            flags = re.compile(pattern).flags
        except (re.error, TypeError, RecursionError, OverflowError):
            return None
    if not isinstance(text, str) or flags & (re.IGNORECASE | re.VERBOSE):
        return None
    runs = _literal_runs(text)
    if runs is None:
        return None
    best = max(runs, key=len, default="")
    return best or None


# -- reading ------------------------------------------------------------------------------
def _is_rule(value: Any) -> bool:
    return (isinstance(getattr(value, "table", None), str)
            and isinstance(getattr(value, "pattern", None), re.Pattern)
            and "id" in value.pattern.groupindex)


class _FileStats:
    """One file's counts, added to the scan's once it is known to be an application log."""

    def __init__(self) -> None:
        self.skipped_lines = 0
        self.files: list[str] = []
        self.file_reads: list[LogFileRead] = []


def _iter_files(files: list[Path], matcher: "_Matcher", rx: re.Pattern[str],
                stats: AppEventScan) -> Iterator[AppLogEvent]:
    for path in files:
        yield from _file_events(path, matcher, rx, stats)


def _file_events(path: Path, matcher: "_Matcher", rx: re.Pattern[str],
                 stats: AppEventScan) -> Iterator[AppLogEvent]:
    own = _FileStats()
    fmt, lines = logs.read_log_lines(path, own)
    try:
        if fmt not in APP_FORMATS:
            stats.skipped_files.append((str(path), fmt))
            return
        stats.files.extend(own.files)
        stats.file_reads.extend(own.file_reads)
        reader = _text_events if fmt == "text" else _jsonl_events
        for event in reader(lines, str(path), matcher, rx, own):
            yield event
    finally:
        lines.close()  # type: ignore[attr-defined]
        if fmt in APP_FORMATS:
            stats.skipped_lines += own.skipped_lines


def _text_events(lines: Iterable[tuple[int, str]], file: str, matcher: "_Matcher", rx: re.Pattern[str],
                 own: _FileStats) -> Iterator[AppLogEvent]:
    clock = _Clock()
    for n, text in lines:
        clock.see(text)
        found = matcher.matches(text)
        if not found:
            continue
        last_ts = clock.now()
        if last_ts is None:
            own.skipped_lines += 1  # no timestamp at or before it: cannot date the deletion
            continue
        for rule, m in found:
            yield _event(rule, m, last_ts, file, n, "text", text, _actor(rx, m, text))


class _Clock:
    """The latest leading timestamp of a text log's lines so far (:func:`logs.leading_time`),
    parsed only when asked for.

    Parsing every line's timestamp costs more than the rest of a scan: the last PENDING short
    lines are kept and parsed, latest first, when an event needs the time or when they are
    PENDING (so typically one line in PENDING is parsed). A line longer than KEEP_CHARS is
    parsed at once, never kept (memory stays a few kB).
    """

    PENDING = 64
    KEEP_CHARS = 256

    def __init__(self) -> None:
        self.last: datetime | None = None
        self.pending: list[str] = []

    def see(self, text: str) -> None:
        if len(text) > self.KEEP_CHARS:
            at = logs.leading_time(text)
            if at is not None:
                self.last = at
                self.pending.clear()
            return
        self.pending.append(text)
        if len(self.pending) >= self.PENDING:
            self.now()

    def now(self) -> datetime | None:
        for text in reversed(self.pending):
            at = logs.leading_time(text)
            if at is not None:
                self.last = at
                break
        self.pending.clear()
        return self.last


def _jsonl_events(lines: Iterable[tuple[int, str]], file: str, matcher: "_Matcher", rx: re.Pattern[str],
                  own: _FileStats) -> Iterator[AppLogEvent]:
    for n, text in lines:
        if not text.strip():
            continue
        records = logs.json_records(text)
        if records is None:
            own.skipped_lines += 1  # broken JSON, a bare value
            continue
        undated = False
        for record in records:
            raw = text.strip() if len(records) == 1 else json.dumps(record, ensure_ascii=False)
            message = logs.json_first_string(record, MESSAGE_KEYS)
            found = _record_matches(matcher, message, raw)
            if not found:
                continue
            at = logs.json_time(record)
            if at is None:
                undated = True
                continue
            field_user = logs.json_user(record, rx)  # a user field (userId, usr.id...) first
            for rule, m, where in found:
                actor = _group(m, "user") or field_user or _actor(rx, m, where)
                yield _event(rule, m, at, file, n, "jsonl", message if message is not None else raw, actor)
        if undated:
            own.skipped_lines += 1  # matched, but no readable time: cannot date the deletion


def _record_matches(matcher: "_Matcher", message: str | None, raw: str) -> list[tuple[LogEventRule, re.Match[str], str]]:
    """Each rule's matches in the message field, else (that rule not matching it) in the raw line."""
    out: list[tuple[LogEventRule, re.Match[str], str]] = []
    for rule, lit in matcher.rules:
        found = matcher.rule_matches(rule, lit, message) if message is not None else []
        where = message
        if not found:
            found, where = matcher.rule_matches(rule, lit, raw), raw
        out.extend((rule, m, where) for m in found)  # type: ignore[misc]
    return out


class _Matcher:
    """The rules with their required literals (the prefilter)."""

    def __init__(self, rules: tuple[LogEventRule, ...]):
        self.rules = [(r, required_literal(r.pattern) if PREFILTER else None) for r in rules]

    def rule_matches(self, rule: LogEventRule, lit: str | None, text: str) -> list[re.Match[str]]:
        """The matches of one rule that name an id (each id once), at most MAX_MATCHES_PER_RECORD."""
        if lit is not None and lit not in text:
            return []
        out: list[re.Match[str]] = []
        ids: set[str] = set()
        for i, m in enumerate(rule.pattern.finditer(text)):
            if i >= MAX_MATCHES_PER_RECORD:
                break
            key = _group(m, "id")
            if key is not None and key not in ids:
                ids.add(key)
                out.append(m)
        return out

    def matches(self, text: str) -> list[tuple[LogEventRule, re.Match[str]]]:
        return [(rule, m) for rule, lit in self.rules for m in self.rule_matches(rule, lit, text)]


def _group(m: re.Match[str], name: str) -> str | None:
    """The named group's text, stripped; ``None`` when absent, unmatched or empty."""
    if name not in m.re.groupindex:
        return None
    value = m.group(name)
    return value.strip() or None if isinstance(value, str) else None


def _actor(rx: re.Pattern[str], m: re.Match[str], text: str) -> str | None:
    """The rule's ``user`` group, else the first user id in ``text`` outside the deleted row's
    id (a membership's id may itself be a user id)."""
    user = _group(m, "user")
    if user is not None:
        return user
    start, end = m.span("id")
    return logs.find_user(rx, text[:start]) or logs.find_user(rx, text[end:])


def _event(rule: LogEventRule, m: re.Match[str], at: datetime, file: str, line: int, fmt: str, shown: str,
           actor: str | None) -> AppLogEvent:
    key = _group(m, "id") or ""
    if rule.table == "workspaces":
        key = normalize_workspace_id(key) or key
    return AppLogEvent(
        table=rule.table, id=key, at=at.astimezone(timezone.utc), file=file, line=line, format=fmt,
        actor=actor, message=one_line(shown, MESSAGE_CHARS),
        rule=rule.pattern.pattern, seen_in=((file, line),))


class _OpenGroups:
    """The groups of one (table, id, rule), in time order, for :func:`merge_app_events`.

    ``start`` is the first group still within reach; ``joined[file]`` the end of the run of
    groups from ``start`` on that all hold ``file`` (a new event from that file can only join a
    later one): so an event finds its group in a step or two, however many copies one file
    repeats within the window (hostile logs), instead of looking at every open group.
    """

    def __init__(self) -> None:
        self.groups: list[list[AppLogEvent]] = []
        self.files: list[set[str]] = []
        self.start = 0
        self.joined: dict[str, int] = {}

    def place(self, e: AppLogEvent, seconds: float) -> list[AppLogEvent] | None:
        """The earliest group within reach holding none of ``e``'s files (``e`` joins it), else None."""
        while self.start < len(self.groups) and (e.at - self.groups[self.start][0].at).total_seconds() > seconds:
            self.files[self.start] = set()  # out of reach for good
            self.start += 1
        files = {f for f, _ in e.places}
        i = max(self.start, *(self.joined.get(f, 0) for f in files))
        while i < len(self.groups) and files & self.files[i]:
            i += 1
        if i == len(self.groups):
            return None
        self._note(i, files)
        return self.groups[i]

    def add(self, e: AppLogEvent) -> list[AppLogEvent]:
        """A new group for ``e`` (which the caller appends to it)."""
        self.groups.append([])
        self.files.append(set())
        self._note(len(self.groups) - 1, {f for f, _ in e.places})
        return self.groups[-1]

    def _note(self, i: int, files: set[str]) -> None:
        self.files[i] |= files
        for f in files:
            j = max(self.start, self.joined.get(f, 0))
            while j < len(self.groups) and f in self.files[j]:
                j += 1
            self.joined[f] = j


# -- the prefilter's literal ----------------------------------------------------------------
_QUANTIFIERS = "?*+{"
_ESCAPED_LITERAL = frozenset("\\.^$|?*+()[]{}/-_:=@#%&~'\"<>,;!` ")
_BRACES = re.compile(r"\{\d*(?:,\d*)?\}")
_CLASS_ESCAPES = frozenset("dDwWsSbBAZzGnrtfv0123456789xuUNpP")


def _literal_runs(pattern: str) -> list[str] | None:
    """The runs of plain characters at the top level of ``pattern``; ``None`` when the pattern
    has a top-level alternative (then no run is required)."""
    runs: list[str] = []
    run: list[str] = []
    depth = 0
    i, n = 0, len(pattern)

    def end_run() -> None:
        if run:
            runs.append("".join(run))
            run.clear()

    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1] if i + 1 < n else ""
            i = _escape_end(pattern, i)
            if depth or nxt in _CLASS_ESCAPES or nxt not in _ESCAPED_LITERAL:
                end_run()
                continue
            if i < n and pattern[i] in _QUANTIFIERS:
                end_run()  # "\.?": optional
                continue
            run.append(nxt)
            continue
        if c == "[":
            end_run()
            i = _class_end(pattern, i)
            continue
        if c == "(":
            end_run()
            depth += 1
            i += 1
            continue
        if c == ")":
            end_run()
            depth = max(0, depth - 1)
            i += 1
            continue
        if c == "|":
            if depth == 0:
                return None
            i += 1
            continue
        if depth:
            i += 1
            continue
        if c == "{":
            end_run()  # a quantifier "{m,n}" (its character was dropped above), or a literal "{"
            q = _BRACES.match(pattern, i)
            i = q.end() if q else i + 1
            continue
        if c in ".^$" or c in _QUANTIFIERS:  # (a quantified character never joined the run: see below)
            end_run()
            i += 1
            continue
        if i + 1 < n and pattern[i + 1] in _QUANTIFIERS:
            end_run()  # "s?": optional, "s+"/"s{2}": repeated
            i += 1
            continue
        run.append(c)
        i += 1
    end_run()
    return runs


def _escape_end(pattern: str, i: int) -> int:
    """The index just past the escape starting at ``i`` (``\\x41``, ``\\u00e9``, ``\\N{...}``, ``\\12``...)."""
    nxt = pattern[i + 1] if i + 1 < len(pattern) else ""
    if nxt == "N" and pattern.startswith("{", i + 2):
        close = pattern.find("}", i + 3)
        return len(pattern) if close < 0 else close + 1
    width = {"x": 2, "u": 4, "U": 8}.get(nxt)
    if width is not None:
        return min(len(pattern), i + 2 + width)
    j = i + 2
    if nxt.isdigit():  # a back reference or an octal escape: up to three digits
        while j < len(pattern) and j < i + 4 and pattern[j].isdigit():
            j += 1
    return j


def _class_end(pattern: str, i: int) -> int:
    """The index just past the character class opening at ``i`` (``[]...]`` and ``[^]...]`` too)."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "]":
            return j + 1
        j += 1
    return len(pattern)
