"""Deletions and creations of workspaces and memberships, as the PostgreSQL server log records them.

With ``log_statement = 'mod'`` (or ``'all'``) the server logs every data-modifying statement
before it runs it; pgaudit (``pgaudit.log = 'write'``) logs ``AUDIT:`` lines. This module reads
those lines and yields one :class:`ServerLogEvent` per DELETE or INSERT on a watched table
(the mapped workspaces and memberships tables), with the ids it names::

    LOG:  statement: delete from workspaces where id = '0f9c...'
    LOG:  execute <unnamed>: delete from "app"."teams" where "teams"."id" = $1
    DETAIL:  parameters: $1 = '0f9c...'
    LOG:  AUDIT: SESSION,1,1,WRITE,DELETE,TABLE,public.workspaces,"delete from ...",<not logged>

Statements are recognised schema-qualified or not, quoted or not, with ``col = value``,
``col in (...)`` and ``col = any(value)`` (an array literal ``'{a,b}'``, ``ARRAY[...]`` or a
parameter holding one), values as literals or ``$n`` parameters (casts allowed). INSERTs give
the ids of their ``values`` rows. Every ``col = value`` of the WHERE clause (or column of the
INSERT) is kept in ``keys``; ``ids`` are the values of the table's mapped id column. The WHERE
clause is not evaluated: ``id = $1 and deleted_at is null`` names ``$1`` whatever else holds.

Formats: ``stderr`` (with any ``log_line_prefix``: give the server's setting, or a list of
them; by default the usual ones are tried, see :data:`DEFAULT_PREFIXES`), ``csvlog`` and
``jsonlog``. csvlog and jsonlog carry the database, session id, pid and virtual transaction id
of every line; stderr only what its prefix prints (``%d``, ``%c``, ``%p``, ``%v``...). Lines of
another database than ``database`` are ignored (in stderr only when the prefix prints ``%d``).

A logged statement is not a committed one. An event's ``status`` is :data:`STATUS_LOGGED`
("statement logged, commit not observed"), or :data:`STATUS_FAILED` when its session logged an
ERROR (or FATAL, PANIC) or a ROLLBACK before its next logged statement. Where both lines carry
a virtual transaction id (csvlog, jsonlog, ``%v``), an error counts only in the statement's own
transaction, and up to that transaction's end rather than the next statement. Failed events
are left out unless ``include_failed=True``.

stderr and jsonlog files are read in blocks of READ_BLOCK bytes, csvlog line by line (gzip
decompressed as it streams); memory holds a block and the statements of open transactions.
Only the records that can change the result are decoded (:data:`SKIM`), found at the byte
level: those naming a watched table (ASCII case-insensitively, as PostgreSQL folds unquoted
names), pgaudit lines, session ends, and every record of a session while it has statements
pending (its next statement, error or ROLLBACK settles them); the result is the same as reading
every line (events, their order and status, the counts). ``skipped_lines`` counts the lines
that could not be read (no known prefix, broken JSON or CSV) among those holding a watched
table's name, ``AUDIT:`` or a session's end (csvlog: a statement or an error too), lines longer
than MAX_LINE_BYTES and csvlog records longer than MAX_CSV_RECORD_CHARS, and statements on a
watched table without a readable time; a gzip stream cut short counts once.
Paths are files, globs or directories
(:func:`incidentkit.evidence.logs.iter_log_files`); the files are read in name order as one
history, so a session's statements and errors may span a rotation.

The API: :func:`scan_server_logs` (everything, each statement once, in time order),
:func:`iter_server_log_events` (streamed as settled), and the pure parts they are made of:
:func:`prefix_pattern`, :func:`statement_changes`, :func:`parse_parameters`,
:func:`parse_array_literal`, :func:`watched_tables`.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import json
import os
import re
import stat
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

from ..db.schema import SchemaMap, split_qualified
from ..exceptions import ConfigError, LogReadError
from ..text import iso_utc, one_line
from .logs import Paths, find_all, iter_log_files, parse_time

STATUS_LOGGED = "statement logged, commit not observed"
STATUS_FAILED = "statement logged, then an error or rollback in its session before its next statement"

KINDS = ("delete", "insert")
FORMATS = ("pg_stderr", "pg_csv", "pg_json")

#: The server's default ``log_line_prefix``, the embedded server's, and common managed ones;
#: tried in this order when no prefix is given, then a loose "timestamp ... SEVERITY:" match.
DEFAULT_PREFIXES = (
    "%m [%p] ",
    "%m [%p] %q%u@%d/%a ",
    "%t [%p] ",
    "%t:%r:%u@%d:[%p]:",
    "%m [%p] %q[user=%u,db=%d,app=%a] ",
)

#: A physical line longer than this (newline included) is skipped and counted.
MAX_LINE_BYTES = 1 << 20
#: A csvlog record (several physical lines when a field holds newlines) longer than this is skipped.
MAX_CSV_RECORD_CHARS = 4 << 20
#: stderr and jsonlog records that cannot change the result are passed over at the byte level
#: (False: every line is decoded and parsed; the results are the same). csvlog is read line by line.
SKIM = True
#: Bytes read at a time when skimming.
READ_BLOCK = 4 << 20
#: How much of the statement an event keeps (for showing it).
STATEMENT_CHARS = 500

PrefixArg = Union[str, Sequence[str], None]


# -- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WatchedTable:
    """A table whose deletions and insertions are looked for: ``entity`` is the mapped name."""

    entity: str  # "workspaces" | "memberships" (or any name the caller gives)
    schema: str
    name: str
    id_column: str = "id"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)  # slots: a busy log gives hundreds of thousands
class ServerLogEvent:
    """One DELETE or INSERT on a watched table, as one line of a server log recorded it."""

    kind: str  # "delete" | "insert"
    table: str  # the entity as mapped: "workspaces" | "memberships"
    relation: str  # the mapped table, schema-qualified: "app.teams"
    ids: tuple[str, ...]  # values of the mapped id column the statement names (may be empty)
    keys: tuple[tuple[str, tuple[str | None, ...]], ...]  # every (column, values) it names
    logged_at: datetime  # UTC, as the log line's timestamp (to the second with %t)
    database: str | None
    session: str | None  # the session id (%c, csvlog, jsonlog)
    pid: int | None
    vxid: str | None  # virtual transaction id, where the format has it
    file: str
    line: int  # 1-based, the line where the statement's record starts
    format: str  # one of FORMATS
    via: str  # "statement" | "execute" | "pgaudit"
    statement: str  # the statement text, cut to STATEMENT_CHARS
    failed: bool = False
    user: str | None = None  # the database user, where the format carries it
    app: str | None = None  # the application_name, where the format carries it
    seen_in: tuple[tuple[str, int], ...] = ()  # (file, line) of every copy (scan_server_logs)

    @property
    def status(self) -> str:
        return STATUS_FAILED if self.failed else STATUS_LOGGED

    @property
    def who(self) -> str | None:
        """``user@database (application)``, as far as the log line says."""
        who = "@".join(x for x in (self.user, self.database) if x) or None
        if self.app:
            who = f"{who or 'a session'} ({self.app})"
        return who

    def key(self, column: str) -> tuple[str | None, ...]:
        """The values the statement gives ``column`` (empty when it names none)."""
        return next((values for col, values in self.keys if col == column), ())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "table": self.table,
            "relation": self.relation,
            "ids": list(self.ids),
            "keys": {col: list(values) for col, values in self.keys},
            "logged_at": iso_utc(self.logged_at),
            "database": self.database,
            "session": self.session,
            "pid": self.pid,
            "vxid": self.vxid,
            "file": self.file,
            "line": self.line,
            "format": self.format,
            "via": self.via,
            "statement": self.statement,
            "user": self.user,
            "application_name": self.app,
            "status": self.status,
            "failed": self.failed,
            "sources": [{"file": f, "line": n} for f, n in (self.seen_in or ((self.file, self.line),))],
        }


@dataclass
class ServerLogScan:
    """What :func:`scan_server_logs` found: events (copies merged), files read, lines skipped."""

    events: list[ServerLogEvent] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    failed_statements: int = 0  # events left out as failed (counted even when excluded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": [e.to_dict() for e in self.events],
            "files": list(self.files),
            "skipped_lines": self.skipped_lines,
            "failed_statements": self.failed_statements,
        }


# -- public entry points ------------------------------------------------------------------
def watched_tables(tables: SchemaMap | Mapping[str, str] | Iterable[WatchedTable] | None = None
                   ) -> tuple[WatchedTable, ...]:
    """The tables to watch: the workspaces and memberships of a schema map (default: the
    reference schema's), ``{"workspaces": "app.teams", ...}`` (id column ``id``), or
    :class:`WatchedTable` objects as they are."""
    if tables is None:
        tables = SchemaMap.default()
    if isinstance(tables, SchemaMap):
        return tuple(WatchedTable(t.entity, t.schema, t.name, t.columns.get("id") or "id")
                     for t in (tables.workspaces, tables.memberships))
    if isinstance(tables, Mapping):
        out = []
        for entity, qualified in tables.items():
            if not isinstance(qualified, str):
                raise ConfigError(f"the table for {entity!r} must be a name (schema.table)")
            schema, name = split_qualified(qualified)
            out.append(WatchedTable(str(entity), schema, name))
        return tuple(out)
    out = list(tables)
    if not all(isinstance(t, WatchedTable) for t in out):
        raise ConfigError("watched tables must be a schema map, a mapping or WatchedTable objects")
    return tuple(out)


def iter_server_log_events(
    paths: Paths,
    tables: SchemaMap | Mapping[str, str] | Iterable[WatchedTable] | None = None,
    *,
    database: str | None = None,
    log_line_prefix: PrefixArg = None,
    include_failed: bool = False,
    kinds: Iterable[str] = KINDS,
    stats: ServerLogScan | None = None,
) -> Iterator[ServerLogEvent]:
    """Stream the events in ``paths`` (files in name order, read as one history).

    An event is yielded once it is settled: at its session's next statement, error or the end
    of the files (so not quite in file order). ``stats`` (a :class:`ServerLogScan`), when given,
    gets the files read, skipped lines and failed statements as the scan goes. Paths are checked
    at once (:class:`LogReadError`), a bad prefix or kind raises :class:`ConfigError`.
    """
    target = stats if stats is not None else ServerLogScan()
    reader, files = _reader(paths, tables, database, log_line_prefix, include_failed, kinds, target)
    return reader.run(files)


def _reader(paths: Paths, tables: Any, database: str | None, log_line_prefix: PrefixArg, include_failed: bool,
            kinds: Iterable[str], stats: ServerLogScan) -> tuple[_Reader, list[Path]]:
    watched = watched_tables(tables)
    wanted = frozenset(kinds)
    bad = wanted - set(KINDS)
    if bad:
        raise ConfigError(f"unknown event kind(s): {', '.join(sorted(bad))} (known: {', '.join(KINDS)})")
    prefixes = _prefix_patterns(log_line_prefix)
    files = list(iter_log_files(paths))
    return _Reader(watched, wanted, database, prefixes, include_failed, stats), files


def scan_server_logs(
    paths: Paths,
    tables: SchemaMap | Mapping[str, str] | Iterable[WatchedTable] | None = None,
    *,
    database: str | None = None,
    log_line_prefix: PrefixArg = None,
    include_failed: bool = False,
    kinds: Iterable[str] = KINDS,
) -> ServerLogScan:
    """Every event in ``paths``, in time order, each statement once.

    The same statement read from several files (the server's stderr, csvlog and jsonlog of one
    run, or a log_statement line and its pgaudit line) is one event: same kind, table, ids,
    outcome and second. It keeps the first copy's fields and lists every copy in ``seen_in``.
    """
    scan = ServerLogScan()
    merged: dict[tuple[Any, ...], ServerLogEvent] = {}
    reader, files = _reader(paths, tables, database, log_line_prefix, include_failed, kinds, scan)
    reader.mark_seen = True  # each event comes with seen_in = ((file, line),)
    for event in reader.run(files):
        # every column the statement names is part of the event: two deletions on a composite key
        # that share their first column are two events
        key = (event.kind, event.table, event.ids, event.keys, event.logged_at.replace(microsecond=0), event.failed)
        first = merged.get(key)
        if first is None:
            merged[key] = event
        elif (event.file, event.line) not in first.seen_in:
            merged[key] = replace(first, seen_in=first.seen_in + ((event.file, event.line),))
    scan.events = sorted(merged.values(), key=lambda e: (e.logged_at, e.file, e.line))
    return scan


# -- log_line_prefix -> regex -----------------------------------------------------------------
_TS_MS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}(?: [^\s\[\]]+)?"
_TS_S = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: [^\s\[\]]+)?"
_ANY = r".*?"
#: Each escape of log_line_prefix: (group name, regex). Names given to several escapes (``%m``
#: and ``%t``) take the first one's value.
_ESCAPES: dict[str, tuple[str, str]] = {
    "a": ("app", _ANY), "u": ("user", _ANY), "d": ("db", _ANY), "r": ("remote", _ANY),
    "h": ("host", _ANY), "b": ("backend", _ANY), "i": ("tag", _ANY),
    "p": ("pid", r"\d+"), "P": ("leader", r"\d*"), "l": ("line_num", r"\d+"),
    "m": ("ts", _TS_MS), "t": ("ts", _TS_S), "n": ("ts", r"\d+\.\d+"), "s": ("start", _TS_S),
    "e": ("sqlstate", r"[0-9A-Z]{5}"), "c": ("session", r"[0-9a-f]+\.[0-9a-f]+"),
    "v": ("vxid", r"(?:-?\d+/\d+)?"), "x": ("xid", r"\d+"), "Q": ("query_id", r"-?\d+"),
}
_SEVERITIES = r"DEBUG[1-5]|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT|STATEMENT|QUERY|LOCATION"
_SEV_TAIL = r"(?P<sev>" + _SEVERITIES + r"):  (?P<msg>.*)"
_ESCAPE_RE = re.compile(r"%(-?\d*)(.)")
#: When no prefix fits: a timestamp first, the severity later, a ``[pid]`` anywhere between.
_LOOSE = re.compile(r"(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?: ?[^\s\[\]]+)?)(?P<rest>.*?)\b" + _SEV_TAIL)
_LOOSE_PID = re.compile(r"\[(\d+)\]")


def prefix_pattern(log_line_prefix: str) -> re.Pattern[str]:
    """A regex matching a stderr line written with this ``log_line_prefix``: groups ``ts``,
    ``pid``, ``db``, ``session``, ``vxid``... (those the prefix prints), ``sev`` and ``msg``.

    ``%q`` makes what follows optional (processes without a session stop there); padding
    (``%-10u``) is allowed. :class:`ConfigError` when the prefix prints no timestamp.
    """
    if not isinstance(log_line_prefix, str):
        raise ConfigError("log_line_prefix must be a string")
    out: list[str] = []
    used: set[str] = set()
    optional_from: int | None = None
    pos = 0
    for m in _ESCAPE_RE.finditer(log_line_prefix):
        out.append(re.escape(log_line_prefix[pos:m.start()]))
        pos = m.end()
        pad, char = m.group(1), m.group(2)
        if char == "%":
            out.append("%")
        elif char == "q":
            optional_from = len(out)
        elif char in _ESCAPES:
            name, rx = _ESCAPES[char]
            body = rx if pad in ("", "-") else rf" *{rx} *"
            out.append(f"(?P<{name}>{body})" if name not in used else f"(?:{body})")
            used.add(name)
    out.append(re.escape(log_line_prefix[pos:]))
    if "ts" not in used:
        raise ConfigError(f"log_line_prefix {one_line(log_line_prefix, 100)!r} prints no time (%m, %t or %n): "
                          "the server log cannot date a statement without one")
    if optional_from is not None:
        out = out[:optional_from] + ["(?:" + "".join(out[optional_from:]) + ")?"]
    return re.compile("".join(out) + _SEV_TAIL)


def _prefix_patterns(arg: PrefixArg) -> tuple[re.Pattern[str] | None, ...]:
    """The stderr line regexes to try, in order; ``None`` stands for the loose match."""
    if arg is None:
        return tuple(prefix_pattern(p) for p in DEFAULT_PREFIXES) + (None,)
    items = [arg] if isinstance(arg, str) else list(arg)
    if not items:
        raise ConfigError("no log_line_prefix given")
    return tuple(prefix_pattern(p) for p in items)


# -- SQL: what a statement deletes or inserts ----------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<ws>\s+|--[^\n]*|/\*.*?\*/)
      |(?P<estr>[Ee]'(?:[^'\\]|\\.|'')*')
      |(?P<str>(?:[Nn]|[Uu]&)?'(?:[^']|'')*')
      |(?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)\$)
      |(?P<param>\$\d+)
      |(?P<qident>"(?:[^"]|"")*")
      |(?P<word>[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)
      |(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
      |(?P<op>::|.)""",
    re.S | re.X,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "word" (lower-cased), "ident" (quoted), "str", "param", "num", "op"
    value: str


#: Tokens of the statements read lately (prepared statements repeat their text): bounded.
_TOKEN_CACHE: dict[str, tuple[_Tok, ...]] = {}
_TOKEN_CACHE_ENTRIES = 512
_TOKEN_CACHE_CHARS = 2000


def _tokens(sql: str) -> tuple[_Tok, ...]:
    toks = _TOKEN_CACHE.get(sql)
    if toks is None:
        toks = _tokenize(sql)
        if len(sql) <= _TOKEN_CACHE_CHARS:
            if len(_TOKEN_CACHE) >= _TOKEN_CACHE_ENTRIES:
                _TOKEN_CACHE.clear()
            _TOKEN_CACHE[sql] = toks
    return toks


def _tokenize(sql: str) -> tuple[_Tok, ...]:
    out: list[_Tok] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup if m.lastgroup != "tag" else "dollar"
        text = m.group(kind)
        if kind == "ws":
            continue
        if kind == "word":
            out.append(_Tok("word", _ascii_lower(text)))  # PostgreSQL folds ASCII letters only
        elif kind == "qident":
            out.append(_Tok("ident", text[1:-1].replace('""', '"')))
        elif kind == "str":
            body = text[text.index("'") + 1:-1]
            out.append(_Tok("str", body.replace("''", "'")))
        elif kind == "estr":
            body = text[2:-1].replace("''", "'")
            out.append(_Tok("str", re.sub(r"\\(.)", r"\1", body)))
        elif kind == "dollar":
            tag_end = text.index("$", 1) + 1
            out.append(_Tok("str", text[tag_end:len(text) - tag_end]))
        elif kind == "param":
            out.append(_Tok("param", text[1:]))
        else:
            out.append(_Tok(kind, text))
    return tuple(out)


@dataclass(frozen=True)
class Change:
    """What one statement (or one of its parts) does to one table, read from its text."""

    kind: str  # "delete" | "insert"
    schema: str | None  # as written; None when unqualified
    name: str
    keys: tuple[tuple[str, tuple[str | None, ...]], ...]  # (column, values) as named

    def values(self, column: str) -> tuple[str | None, ...]:
        return next((v for c, v in self.keys if c == column), ())


def _is_name(t: _Tok) -> bool:
    return t.kind in ("word", "ident")


def _qualified_name(toks: list[_Tok], i: int) -> tuple[list[str], int]:
    """``a.b.c`` from ``i``: the parts and the index after them."""
    parts: list[str] = []
    while i < len(toks) and _is_name(toks[i]):
        parts.append(toks[i].value)
        if i + 2 < len(toks) and toks[i + 1].value == "." and toks[i + 1].kind == "op" and _is_name(toks[i + 2]):
            i += 2
            continue
        i += 1
        break
    return parts, i


_CLAUSE_WORDS = {"where", "using", "returning", "set", "values", "select", "default", "on", "overriding",
                 "as", "from", "with", "only", "order", "limit", "group", "for", "window", "union"}


def _skip_cast(toks: list[_Tok], i: int) -> int:
    """Past any ``::type`` (``::uuid[]``, ``::character varying(36)``) starting at ``i``."""
    while i < len(toks) and toks[i].kind == "op" and toks[i].value == "::":
        i += 1
        while i < len(toks) and _is_name(toks[i]):
            i += 1
            if i < len(toks) and toks[i].value == "." and i + 1 < len(toks) and _is_name(toks[i + 1]):
                i += 1
        if i < len(toks) and toks[i].value == "(":
            i = _close(toks, i) + 1
        while i + 1 < len(toks) and toks[i].value == "[" and toks[i + 1].value == "]":
            i += 2
    return i


def _close(toks: list[_Tok], i: int) -> int:
    """The index of the bracket closing the one at ``i`` (or the last token)."""
    opening = toks[i].value
    closing = {"(": ")", "[": "]"}[opening]
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind != "op":
            continue
        if toks[j].value in "([":
            depth += 1
        elif toks[j].value in ")]":
            depth -= 1
            if depth == 0:
                return j if toks[j].value == closing else j
    return len(toks) - 1


def _scalar(toks: list[_Tok], i: int, params: Mapping[int, str | None]) -> tuple[bool, str | None, int]:
    """A single value at ``i`` (literal or parameter, with casts, in parentheses or not):
    (found, value, index after it). ``typename 'literal'`` (``uuid '...'``) counts."""
    if i < len(toks) and toks[i].value == "(" and toks[i].kind == "op":
        end = _close(toks, i)
        ok, value, j = _scalar(toks, i + 1, params)
        if ok and j == end:
            return True, value, _skip_cast(toks, end + 1)
        return False, None, i
    if i + 1 < len(toks) and toks[i].kind == "word" and toks[i + 1].kind == "str":
        i += 1  # uuid '...'
    if i >= len(toks):
        return False, None, i
    t = toks[i]
    if t.kind in ("str", "num"):
        return True, t.value, _skip_cast(toks, i + 1)
    if t.kind == "param":
        return True, params.get(int(t.value)), _skip_cast(toks, i + 1)
    if t.kind == "word" and t.value == "null":
        return True, None, _skip_cast(toks, i + 1)
    return False, None, i


def _ends_value(toks: list[_Tok], j: int) -> bool:
    """Whether a value may end at ``j`` (nothing of an expression follows it)."""
    if j >= len(toks):
        return True
    t = toks[j]
    return (t.kind == "op" and t.value in ",);]") or (t.kind == "word" and t.value in
                                                     {"and", "or", "returning", "then", "order", "limit", "for"})


def parse_array_literal(text: str | None) -> tuple[str | None, ...]:
    """``{a,"b c",NULL}`` -> ``("a", "b c", None)`` (one dimension); ``()`` when it is not one."""
    if text is None:
        return ()
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return ()
    body = text[1:-1]
    out: list[str | None] = []
    for m in re.finditer(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^,{}"]*?))\s*(?:,|$)', body):
        if m.group(1) is not None:
            out.append(re.sub(r"\\(.)", r"\1", m.group(1)))
        elif m.group(2):
            out.append(None if m.group(2).upper() == "NULL" else m.group(2))
        if m.end() >= len(body):
            break
    return tuple(out)


def _list_values(toks: list[_Tok], i: int, end: int, params: Mapping[int, str | None]
                 ) -> tuple[str | None, ...] | None:
    """The values of ``v, v, ...`` between ``i`` and ``end``; None when one is not a plain value."""
    values: list[str | None] = []
    while i < end:
        ok, value, j = _scalar(toks, i, params)
        if not ok or not (j == end or (toks[j].kind == "op" and toks[j].value == ",")):
            return None
        values.append(value)
        i = j + 1
    return tuple(values)


def _array_values(toks: list[_Tok], i: int, params: Mapping[int, str | None]
                  ) -> tuple[tuple[str | None, ...] | None, int]:
    """``any(...)``'s argument at ``i`` (after the parenthesis): an array literal, parameter or
    ``ARRAY[...]``; (values or None, index after it)."""
    if i < len(toks) and toks[i].kind == "word" and toks[i].value == "array" and i + 1 < len(toks) \
            and toks[i + 1].value == "[":
        end = _close(toks, i + 1)
        return _list_values(toks, i + 2, end, params), _skip_cast(toks, end + 1)
    ok, value, j = _scalar(toks, i, params)
    if not ok:
        return None, i
    return parse_array_literal(value), j


def _conditions(toks: list[_Tok], start: int, end: int, aliases: set[str],
                params: Mapping[int, str | None]) -> dict[str, list[str | None]]:
    """``col = v``, ``col in (v, ...)``, ``col = any(...)`` in ``toks[start:end]`` (a WHERE clause),
    for columns of the table (unqualified, or qualified by its name or alias)."""
    found: dict[str, list[str | None]] = {}
    i = start
    while i < end:
        if not _is_name(toks[i]) or (i > start and toks[i - 1].kind == "op" and toks[i - 1].value in (".", "::")):
            i += 1
            continue
        parts, j = _qualified_name(toks, i)
        if j >= end or len(parts) > 3 or (len(parts) > 1 and parts[-2] not in aliases):
            i = j
            continue
        column = parts[-1]
        values: tuple[str | None, ...] | None = None
        t = toks[j]
        if t.kind == "op" and t.value == "=":
            k = j + 1
            if k + 1 < end and toks[k].kind == "word" and toks[k].value in ("any", "some") and toks[k + 1].value == "(":
                close = _close(toks, k + 1)
                vals, after = _array_values(toks, k + 2, params)
                values = vals if after == close else None
                j = close + 1
            else:
                ok, value, after = _scalar(toks, k, params)
                if ok and _ends_value(toks, after):
                    values = (value,)
                j = max(after, k)
        elif t.kind == "word" and t.value == "in" and j + 1 < end and toks[j + 1].value == "(":
            close = _close(toks, j + 1)
            values = _list_values(toks, j + 2, close, params)
            j = close + 1
        if values is not None and column not in ("null", "true", "false"):
            bucket = found.setdefault(column, [])
            bucket.extend(v for v in values if v not in bucket)
        i = max(j, i + 1)
    return found


def _clause_end(toks: list[_Tok], i: int, stop_words: set[str]) -> int:
    """Where a clause starting at ``i`` ends: a stop word or ``;`` at its depth, or its closing bracket."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j]
        if t.kind == "op" and t.value in "([":
            depth += 1
        elif t.kind == "op" and t.value in ")]":
            if depth == 0:
                return j
            depth -= 1
        elif depth == 0 and ((t.kind == "op" and t.value == ";") or (t.kind == "word" and t.value in stop_words)):
            return j
    return len(toks)


def _target(toks: list[_Tok], i: int) -> tuple[list[str], set[str], int] | None:
    """The table after DELETE FROM / INSERT INTO at ``i``: (name parts, its aliases, index after)."""
    if i < len(toks) and toks[i].kind == "word" and toks[i].value == "only":
        i += 1
    parts, j = _qualified_name(toks, i)
    if not parts or len(parts) > 3:
        return None
    if j < len(toks) and toks[j].value == "*" and toks[j].kind == "op":
        j += 1
    aliases = {parts[-1]}
    if j < len(toks) and toks[j].kind == "word" and toks[j].value == "as" and j + 1 < len(toks) and _is_name(toks[j + 1]):
        aliases.add(toks[j + 1].value)
        j += 2
    elif j < len(toks) and _is_name(toks[j]) and not (toks[j].kind == "word" and toks[j].value in _CLAUSE_WORDS):
        aliases.add(toks[j].value)
        j += 1
    return parts, aliases, j


def _next_comma(toks: list[_Tok], i: int, end: int) -> int:
    """The first ``,`` from ``i`` outside brackets, or ``end``."""
    depth = 0
    for j in range(i, end):
        t = toks[j]
        if t.kind != "op":
            continue
        if t.value in "([":
            depth += 1
        elif t.value in ")]":
            depth -= 1
        elif t.value == "," and depth == 0:
            return j
    return end


def _delete(toks: list[_Tok], i: int, params: Mapping[int, str | None]) -> Change | None:
    target = _target(toks, i)
    if target is None:
        return None
    parts, aliases, j = target
    keys: dict[str, list[str | None]] = {}
    if j < len(toks) and toks[j].kind == "word" and toks[j].value == "using":
        j = _clause_end(toks, j + 1, {"where", "returning"})
    if j < len(toks) and toks[j].kind == "word" and toks[j].value == "where":
        end = _clause_end(toks, j + 1, {"returning"})
        keys = _conditions(toks, j + 1, end, aliases, params)
    return Change("delete", parts[-2] if len(parts) > 1 else None, parts[-1],
                  tuple((c, tuple(v)) for c, v in keys.items()))


def _insert(toks: list[_Tok], i: int, params: Mapping[int, str | None]) -> Change | None:
    target = _target(toks, i)
    if target is None:
        return None
    parts, _aliases, j = target
    columns: list[str] = []
    if j < len(toks) and toks[j].value == "(" and toks[j].kind == "op":
        close = _close(toks, j)
        columns = [t.value for t in toks[j + 1:close] if _is_name(t)]
        j = close + 1
    if j < len(toks) and toks[j].kind == "word" and toks[j].value == "overriding":
        j += 3
    keys: dict[str, list[str | None]] = {}
    if columns and j < len(toks) and toks[j].kind == "word" and toks[j].value == "values":
        j += 1
        while j < len(toks) and toks[j].value == "(" and toks[j].kind == "op":
            close = _close(toks, j)
            k = j + 1
            for col in columns:
                if k >= close:
                    break
                ok, value, after = _scalar(toks, k, params)
                if ok and (after == close or (toks[after].kind == "op" and toks[after].value == ",")):
                    keys.setdefault(col, []).append(value)
                    k = after + 1
                else:  # an expression (default, a function call...): no value for this column
                    k = _next_comma(toks, k, close) + 1
            j = close + 1
            if j < len(toks) and toks[j].kind == "op" and toks[j].value == ",":
                j += 1
            else:
                break
    return Change("insert", parts[-2] if len(parts) > 1 else None, parts[-1],
                  tuple((c, tuple(v)) for c, v in keys.items()))


def statement_changes(sql: str, params: Mapping[int, str | None] | None = None) -> list[Change]:
    """Every DELETE and INSERT in ``sql`` (several statements, CTEs included), with the values
    its WHERE clause or VALUES rows give each column; ``$n`` resolved from ``params``."""
    toks = _tokens(sql)
    params = params or {}
    out: list[Change] = []
    for i, t in enumerate(toks):
        if t.kind != "word" or i + 1 >= len(toks) or toks[i + 1].kind != "word":
            continue
        change = None
        if t.value == "delete" and toks[i + 1].value == "from":
            change = _delete(toks, i + 2, params)
        elif t.value == "insert" and toks[i + 1].value == "into":
            change = _insert(toks, i + 2, params)
        if change is not None:
            out.append(change)
    return out


_PARAM_RE = re.compile(r"\$(\d+) = (?:(NULL)|'((?:[^']|'')*)'(?:\.\.\.)?)")


def parse_parameters(detail: str | None) -> dict[int, str | None]:
    """``parameters: $1 = 'a', $2 = NULL`` (the DETAIL of an ``execute`` line) -> ``{1: "a", 2: None}``."""
    if not detail:
        return {}
    return {int(m.group(1)): (None if m.group(2) else m.group(3).replace("''", "'"))
            for m in _PARAM_RE.finditer(detail)}


def _is_rollback(sql: str) -> bool:
    toks = _tokens(sql)
    return bool(toks) and toks[0].kind == "word" and toks[0].value in ("rollback", "abort") and not any(
        t.kind == "word" and t.value in ("to", "prepared") for t in toks[1:3])


# -- records: one server message, whatever the format -------------------------------------------
@dataclass
class _Record:
    line: int
    sev: str
    message: str
    ts: Any  # the timestamp as logged (parsed only for the records that become events)
    database: str | None = None
    session: str | None = None
    pid: int | None = None
    vxid: str | None = None
    detail: str | None = None
    last: str | None = "message"  # the field a stderr continuation line continues
    user: str | None = None  # the database user (%u, csvlog, jsonlog)
    app: str | None = None  # the application_name (%a, csvlog, jsonlog)


_ERROR_LEVELS = {"ERROR", "FATAL", "PANIC"}
_SECONDARY = {"DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION"}
_EXECUTE = re.compile(r"execute (?!fetch from )[^:]*: ")
_DURATION = re.compile(r"duration: [\d.]+ ms  ")
_CSV_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [^,\s]*,")
_CSV_USER, _CSV_APP = 1, 22
_CSV_TIME, _CSV_DB, _CSV_PID, _CSV_SESSION, _CSV_VXID, _CSV_SEVERITY, _CSV_MESSAGE, _CSV_DETAIL = 0, 2, 3, 5, 9, 11, 13, 14


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Lines:
    """One file, opened (gzip by its magic bytes) and read line by line or, skimming, in blocks.

    Lines longer than MAX_LINE_BYTES are counted as skipped and never reach a parser; a gzip
    stream cut short or corrupt ends the file (its last partial line is lost) and counts once.
    """

    def __init__(self, path: Path, stats: ServerLogScan):
        self.path, self.stats = path, stats
        self.gzip = False

    def skip(self, n: int = 1) -> None:
        self.stats.skipped_lines += n

    def open(self) -> Any:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the caller's with
        except OSError as e:
            raise LogReadError(f"cannot open log file {self.path}: {e.strerror or 'unreadable'}") from None
        mode = os.fstat(fh.fileno()).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            fh.close()
            raise LogReadError(f"cannot read log file {self.path}: not a regular file or a pipe")
        if fh.peek(2)[:2] == b"\x1f\x8b":
            self.gzip = True
            return _Closing(gzip.GzipFile(fileobj=fh, mode="rb"), fh)
        return fh

    def lines(self, stream: Any, n: int = 0, until_text: bool = False) -> Iterator[tuple[int, bytes]]:
        """The lines after line ``n`` (numbered, raw, newline included); with ``until_text``
        only up to the first one that is not blank."""
        try:
            while raw := stream.readline(MAX_LINE_BYTES + 1):
                n += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    self.skip()
                    while raw and not raw.endswith(b"\n"):
                        raw = stream.readline(MAX_LINE_BYTES + 1)
                    continue
                yield n, raw
                if until_text and _text(raw).strip():
                    return
        except (EOFError, OSError, zlib.error):  # a gzip stream cut short or corrupt
            self.failed = True
            self.skip()

    failed = False

    def read_block(self, stream: Any) -> tuple[bytes, bool]:
        """Up to READ_BLOCK bytes (at least one) and whether the file ended (cut or corrupt
        counts once). Gzip is decompressed a chunk at a time so that a corrupt stream gives
        what the line-by-line read gives before it."""
        if not self.gzip:
            try:
                data = stream.read(READ_BLOCK)
            except OSError:
                self.failed = True
                return b"", True
            return data, not data
        parts: list[bytes] = []
        size = 0
        try:
            while size < READ_BLOCK:
                part = stream.read1(READ_BLOCK - size)
                if not part:
                    return b"".join(parts), True
                parts.append(part)
                size += len(part)
        except (EOFError, OSError, zlib.error):
            self.failed = True
            return b"".join(parts), True
        return b"".join(parts), False


class _Closing:
    """A gzip stream that closes its file too."""

    def __init__(self, stream: Any, fh: Any):
        self.stream, self.fh = stream, fh

    def __enter__(self) -> Any:
        return self.stream

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stream.close()
        finally:
            self.fh.close()


def _sniff(lines: list[tuple[int, bytes]]) -> str:
    """The format of a file from its first non-empty line."""
    for _n, raw in lines:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text.lstrip():
            continue
        if text.lstrip().startswith("{"):
            return "pg_json"
        if _CSV_START.match(text):
            return "pg_csv"
        return "pg_stderr"
    return "pg_stderr"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r\n")


# -- which lines can matter ------------------------------------------------------------------
# A record can change what the scan returns only if (a) it names a watched table (ASCII
# case-insensitively, as PostgreSQL folds unquoted names), (b) it is an error, a ROLLBACK/ABORT
# or a session's end, (c) it is a pgaudit line, or (d) it belongs to a session with statements
# still pending (its next statement settles them). An error or a ROLLBACK changes nothing in a
# session with nothing pending (it fails and settles that session's pending statements only), so
# (d) finds every one that matters. The needles searched in every block are therefore the watched
# names, ``AUDIT: `` and ``disconnection: `` (a session's end also forgets its last pgaudit
# statement); (d) is looked for as the session's id (or pid) while it has statements pending.
# An unreadable line counts in ``skipped_lines`` only when it holds one of those needles,
# whichever way the file is read, so the count does not depend on skimming.
_STDERR_STATIC = (b"AUDIT: ", b"disconnection: ")
#: jsonlog: ``\u`` too, so that no escaped spelling of a needle hides from the byte search.
_JSON_STATIC = (b"AUDIT: ", b"disconnection: ", b"\\u")
#: A stderr line holding none of these, not tab-indented, starts a record (or is unreadable):
#: either way the record before it is complete.
_SECONDARY_BYTES = re.compile(("(?:" + "|".join(sorted(_SECONDARY)) + "):  ").encode())
#: A needle may be searched at the byte level only when no escape or decoding can split it.
_PLAIN_NAME = re.compile(r'[^"\\/\x00-\x1f\x7f\ufffd]+')

_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


def _ascii_lower(s: str) -> str:
    """Lower-cased as PostgreSQL folds an unquoted name: ASCII letters only."""
    return s.lower() if s.isascii() else s.translate(_ASCII_LOWER)


def _has_needle(raw: bytes, exact: tuple[bytes, ...], folded: tuple[bytes, ...]) -> bool:
    if any(x in raw for x in exact):
        return True
    if folded:
        low = raw.lower()
        return any(x in low for x in folded)
    return False


class _JsonMachine:
    """jsonlog: one line, one record."""

    single_line = True

    def __init__(self, src: _Lines, database: str | None = None):
        self.src, self.database = src, database
        self.open = False

    @staticmethod
    def continues(raw: bytes) -> bool:
        return False

    def feed(self, n: int, text: str, static: bool) -> _Record | None:
        if not text.strip():
            return None
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("message"), str):
            if static:
                self.src.skip()
            return None
        database = _str_or_none(obj.get("dbname"))
        if database is not None and self.database is not None and database != self.database:
            return None  # another database's: the reader would pass it over
        detail = obj.get("detail")
        return _Record(line=n, sev=str(obj.get("error_severity") or ""), message=obj["message"],
                       ts=obj.get("timestamp"), database=database,
                       session=_str_or_none(obj.get("session_id")), pid=_int(obj.get("pid")),
                       vxid=_str_or_none(obj.get("vxid")), detail=detail if isinstance(detail, str) else None,
                       user=_str_or_none(obj.get("user")), app=_str_or_none(obj.get("application_name")))

    def close(self) -> _Record | None:
        return None


class _StderrMachine:
    """stderr: a message line, its tab-indented continuation lines and the DETAIL (HINT...) lines
    of the same prefix are one record; any other line ends it."""

    single_line = False

    def __init__(self, src: _Lines, patterns: tuple[re.Pattern[str] | None, ...]):
        self.src, self.patterns = src, patterns
        self.rec: _Record | None = None
        self.prefix = ""

    @property
    def open(self) -> bool:
        return self.rec is not None

    @staticmethod
    def continues(raw: bytes) -> bool:
        """The line may belong to the record before it (a superset: read, it may not)."""
        return raw[:1] == b"\t" or _SECONDARY_BYTES.search(raw) is not None

    def feed(self, n: int, text: str, static: bool) -> _Record | None:
        rec = self.rec
        if text.startswith("\t"):
            if rec is not None and rec.last == "message":
                rec.message += "\n" + text[1:]
            elif rec is not None and rec.last == "detail":
                rec.detail = (rec.detail or "") + "\n" + text[1:]
            return None
        m = None
        for rx in self.patterns:
            m = rx.match(text) if rx is not None else _LOOSE.match(text)
            if m is not None:
                break
        if m is None:
            if static and text.strip():
                self.src.skip()
            self.rec = None
            return rec
        sev = m.group("sev")
        prefix = text[: m.start("sev")]
        if sev in _SECONDARY:
            if rec is not None and prefix == self.prefix:
                if sev == "DETAIL" and rec.detail is None:
                    rec.detail = m.group("msg")
                    rec.last = "detail"
                else:
                    rec.last = None  # HINT, CONTEXT...: their continuation lines are not needed
            return None
        groups = m.groupdict()
        pid = _int(groups.get("pid"))
        if pid is None and "rest" in groups:
            found = _LOOSE_PID.search(groups["rest"] or "")
            pid = _int(found.group(1)) if found else None
        self.rec = _Record(line=n, sev=sev, message=m.group("msg"), ts=groups["ts"],
                           database=groups.get("db") if "db" in groups else None,
                           session=groups.get("session") or None, pid=pid, vxid=groups.get("vxid") or None,
                           user=_known(groups.get("user")), app=_known(groups.get("app")))
        self.prefix = prefix
        return rec

    def close(self) -> _Record | None:
        rec, self.rec = self.rec, None
        return rec


_Machine = Union[_JsonMachine, _StderrMachine]


def _full_records(lines: Iterable[tuple[int, bytes]], machine: _Machine, exact: tuple[bytes, ...],
                  folded: tuple[bytes, ...]) -> Iterator[_Record]:
    """Every line through the machine (the reference the skim is equal to)."""
    for n, raw in lines:
        rec = machine.feed(n, _text(raw), _has_needle(raw, exact, folded))
        if rec is not None:
            yield rec


class _Skim:
    """The records of the rest of a file that can matter, found at the byte level.

    A block's candidate lines are those holding a static needle, and those holding the id of a
    session with pending statements (asked of the reader as records are handed over, so the
    set changes as the file is read). A candidate's whole record is read: from the line that
    starts it (found walking back over continuation lines) to the next line that starts another.
    Between candidates nothing is decoded. The records handed over are exactly those the full
    read gives for the same lines, in the same order; the others are passed over whole.
    """

    def __init__(self, src: _Lines, machine: _Machine, exact: tuple[bytes, ...], folded: tuple[bytes, ...],
                 reader: _Reader, json_keys: bool):
        self.src, self.m, self.exact, self.folded, self.reader = src, machine, exact, folded, reader
        self.json_keys = json_keys

    def needle(self, key: Any) -> bytes | None:
        """What every line of the session ``key`` holds; None when nothing sure is (every line
        is then a candidate while the session has pending statements)."""
        if isinstance(key, str) and _PLAIN_NAME.fullmatch(key):
            try:
                return key.encode("utf-8")
            except UnicodeEncodeError:
                return None
        if isinstance(key, int) and not isinstance(key, bool) and not self.json_keys and key >= 0:
            return str(key).encode()  # the prefix's digits, leading zeros or not
        return None

    def records(self, stream: Any, n: int) -> Iterator[_Record]:
        src, m = self.src, self.m
        buf = b""
        base = n + 1  # the number of the line starting at buf[0]
        scanned = 0  # buf[:scanned] is complete lines already searched
        longs: set[int] = set()  # where overlong lines (counted, never read) start in buf
        in_overlong = False
        eof = False
        while not eof:
            data, eof = src.read_block(stream)
            if in_overlong:
                j = data.find(b"\n")
                if j < 0:
                    continue
                data = data[j + 1:]
                in_overlong = False
                longs.add(len(buf))
                buf += b"\n"  # the overlong line's place, so that the lines after keep their numbers
            buf += data
            end = len(buf) if eof and not src.failed else buf.rfind(b"\n") + 1
            if len(buf) - end > MAX_LINE_BYTES:  # a line too long to hold: dropped as it streams
                src.skip()
                buf = buf[:end]
                in_overlong = not eof
            long_starts = _overlong_starts(buf, scanned, end)
            src.skip(len(long_starts))
            longs |= long_starts
            keep = yield from self._region(buf, base, scanned, end, longs, eof)
            base += buf.count(b"\n", 0, keep)
            buf = buf[keep:]
            longs = {p - keep for p in longs if p >= keep}
            scanned = end - keep
        if src.failed:
            src.skip()
        rec = m.close()
        if rec is not None:
            yield rec

    def _region(self, buf: bytes, base: int, scanned: int, end: int, longs: set[int], eof: bool
                ) -> Iterator[_Record]:
        """Hand over the candidate records of ``buf[:end]`` (complete lines); return where the
        next block's buffer starts."""
        m, reader = self.m, self.reader
        continues = m.continues
        hits = {buf.rfind(b"\n", 0, i) + 1 for x in self.exact for i in find_all(buf, x, scanned, end)}
        if self.folded:
            low = buf.lower()
            hits.update(low.rfind(b"\n", 0, i) + 1 for x in self.folded for i in find_all(low, x, scanned, end))
        hits -= longs
        static = sorted(hits)
        si = 0
        cursor = [0, base]  # a line start and its number

        def number(p: int) -> int:
            at, no = cursor
            no += buf.count(b"\n", at, p) if p >= at else -buf.count(b"\n", p, at)
            cursor[0], cursor[1] = p, no
            return no

        def line_end(p: int) -> int:
            e = buf.find(b"\n", p, end)
            return end if e < 0 else e

        def feed_from(p: int, through: int) -> Iterator[_Record]:
            """Feed the lines from ``p`` through the one at ``through``, then the continuation
            lines after it; return where feeding stopped (a line starting a record, or end)."""
            while p < end:
                e = line_end(p)
                if p > through and p not in longs and not continues(buf[p:e]):
                    break
                if p not in longs:
                    rec = m.feed(number(p), buf[p:e].decode("utf-8", "replace").rstrip("\r\n"), p in hits)
                    if rec is not None:
                        yield rec
                p = e + 1
            return min(p, end)

        # pending sessions: the next line holding each one's needle, in a heap
        heap: list[tuple[int, int, Any]] = []
        where: dict[Any, int] = {}
        wild: set[Any] = set()
        seq = 0

        def push(key: Any, frm: int) -> None:
            nonlocal seq
            needle = self.needle(key)
            if needle is None:
                wild.add(key)
                return
            i = buf.find(needle, frm, end)
            pos = end if i < 0 else buf.rfind(b"\n", 0, i) + 1
            where[key] = pos
            seq += 1
            heapq.heappush(heap, (pos, seq, key))

        reader.fresh.clear()
        for key in reader.pending:
            push(key, 0)

        fed = 0
        if m.open:  # the record open at the end of the last block goes on
            fed = yield from feed_from(0, -1)
        while True:
            if fed < end and m.open:
                rec = m.close()
                if rec is not None:
                    yield rec
            pending = reader.pending
            if reader.fresh:
                for key in reader.fresh:
                    if key in pending and key not in where and key not in wild:
                        push(key, fed)
                reader.fresh.clear()
            while si < len(static) and static[si] < fed:
                si += 1
            nxt = static[si] if si < len(static) else end
            if wild:
                wild.intersection_update(pending)
                if wild:
                    nxt = fed
            while heap and heap[0][0] < nxt:
                pos, _s, key = heap[0]
                if key not in pending:
                    heapq.heappop(heap)
                    where.pop(key, None)
                elif pos < fed:
                    heapq.heappop(heap)
                    push(key, fed)
                else:
                    nxt = pos
                    break
            if nxt >= end:
                break
            start = nxt  # walk back to the line that starts its record
            while start > fed:
                if start not in longs and not continues(buf[start:line_end(start)]):
                    break
                start = buf.rfind(b"\n", 0, start - 1) + 1
            fed = yield from feed_from(max(start, fed), nxt)
        if eof:
            return end
        if m.open:
            return end
        keep = end  # from the last line that starts a record: a walk back may need what follows it
        p = buf.rfind(b"\n", 0, end - 1) + 1 if end else 0
        while p >= fed and p < end:
            keep = p
            if p not in longs and not continues(buf[p:line_end(p)]):
                break
            if p == 0:
                break
            p = buf.rfind(b"\n", 0, p - 1) + 1
        if end - keep > READ_BLOCK:  # a record longer than a block, passed over: read it instead
            yield from feed_from(keep, end)
            return end
        return keep


def _csv_records(lines: Iterable[tuple[int, str]], src: _Lines) -> Iterator[_Record]:
    buf: list[str] = []
    start = quotes = size = 0
    for n, text in lines:
        if buf and _CSV_START.match(text) and quotes % 2 == 1 and text.count('"') % 2 == 0:
            src.skip(len(buf))  # the open record was cut inside a quoted field
            buf = []
        if not buf:
            if not text.strip():
                continue
            if not _CSV_START.match(text):
                src.skip()
                continue
            start, quotes, size = n, 0, 0
        buf.append(text)
        quotes += text.count('"')
        size += len(text)
        if quotes % 2 == 0 and not any(needle in line for line in buf for needle in _CSV_NEEDLES):
            buf = []
        elif quotes % 2 == 0:
            row = _csv_row(buf)
            if row is None or len(row) <= _CSV_DETAIL:
                src.skip(len(buf))
            else:
                yield _Record(line=start, sev=row[_CSV_SEVERITY], message=row[_CSV_MESSAGE],
                              ts=row[_CSV_TIME], database=row[_CSV_DB],
                              session=row[_CSV_SESSION] or None, pid=_int(row[_CSV_PID]),
                              vxid=row[_CSV_VXID] or None, detail=row[_CSV_DETAIL] or None,
                              user=row[_CSV_USER] or None,
                              app=(row[_CSV_APP] or None) if len(row) > _CSV_APP else None)
            buf = []
        elif size > MAX_CSV_RECORD_CHARS:
            src.skip(len(buf))
            buf = []
    if buf:
        src.skip(len(buf))


def _csv_row(physical: list[str]) -> list[str] | None:
    old = csv.field_size_limit()
    try:
        csv.field_size_limit(max(old, MAX_CSV_RECORD_CHARS))
        rows = list(csv.reader([line + "\n" for line in physical]))
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(old)
    return rows[0] if len(rows) == 1 else None


def _overlong_starts(block: bytes, start: int, end: int) -> set[int]:
    """Where the lines of ``block[start:end]`` longer than MAX_LINE_BYTES start. A line that long
    holds a whole aligned window of half that size without a newline, so only such windows are
    looked at closely (a few ``find`` calls per block)."""
    half = MAX_LINE_BYTES // 2
    out: set[int] = set()
    k = start
    while k + half <= end:
        if block.find(b"\n", k, k + half) >= 0:
            k += half
            continue
        line_start = block.rfind(b"\n", 0, k) + 1
        line_end = block.find(b"\n", k, end)
        line_end = end if line_end < 0 else line_end
        if line_end - line_start > MAX_LINE_BYTES:
            out.add(line_start)
        k = line_end + 1
    return out


#: A csvlog record holding none of these cannot matter.
_CSV_NEEDLES = ("statement: ", "execute ", "AUDIT: ", ",ERROR,", ",FATAL,", ",PANIC,", "disconnection: ")


def _known(value: str | None) -> str | None:
    """A prefix escape's value; None for empty and the server's ``[unknown]``."""
    return None if not value or value == "[unknown]" else value


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- from records to settled events --------------------------------------------------------------
@dataclass
class _Pending:
    vxid: str | None
    events: list[ServerLogEvent]


class _Reader:
    """Turns records into events and settles them per session (see the module's docstring)."""

    def __init__(self, watched: tuple[WatchedTable, ...], kinds: frozenset[str], database: str | None,
                 patterns: tuple[re.Pattern[str] | None, ...], include_failed: bool, stats: ServerLogScan):
        self.watched, self.kinds, self.database = watched, kinds, database
        self.patterns, self.include_failed, self.stats = patterns, include_failed, stats
        self.names = {_ascii_lower(t.name) for t in watched}
        self.pending: dict[Any, list[_Pending]] = {}
        self.fresh: list[Any] = []  # sessions that got pending statements (for the skim)
        self.last_audit: dict[Any, str] = {}
        self.mark_seen = False  # events carry their own (file, line) in seen_in (scan_server_logs)
        self.strings: dict[str, str] = {}  # one copy of each database, session, user, application name
        # the names as bytes, folded; skimming needs names no escape or decoding can split
        self.folded = tuple(sorted(n.encode("utf-8", "replace") for n in self.names))
        self.skimmable = all(_PLAIN_NAME.fullmatch(n) for n in self.names)

    def same(self, value: str | None) -> str | None:
        """``value``, the first copy of it (events share their few distinct names)."""
        if value is None:
            return None
        if len(self.strings) >= 100_000:
            self.strings.clear()
        return self.strings.setdefault(value, value)

    def run(self, files: list[Path]) -> Iterator[ServerLogEvent]:
        for path in files:
            src = _Lines(path, self.stats)
            with src.open() as stream:
                head = list(src.lines(stream, 0, until_text=True))
                fmt = _sniff(head)
                self.stats.files.append(str(path))
                n = head[-1][0] if head else 0
                if fmt == "pg_csv":
                    texts = ((k, _text(raw)) for k, raw in chain(head, () if src.failed else src.lines(stream, n)))
                    records: Iterable[_Record] = _csv_records(texts, src)
                else:
                    json_format = fmt == "pg_json"
                    machine: _Machine = _JsonMachine(src, self.database) if json_format else _StderrMachine(src, self.patterns)
                    exact = _JSON_STATIC if json_format else _STDERR_STATIC
                    records = self._records(src, stream, head, machine, exact, json_format)
                for rec in records:
                    yield from self._record(rec, str(path), fmt)
        for key in list(self.pending):
            yield from self._settle(key, lambda p: True)

    def _records(self, src: _Lines, stream: Any, head: list[tuple[int, bytes]], machine: _Machine,
                 exact: tuple[bytes, ...], json_format: bool) -> Iterator[_Record]:
        folded = self.folded
        yield from _full_records(head, machine, exact, folded)
        n = head[-1][0] if head else 0
        if not src.failed:
            if SKIM and self.skimmable:
                yield from _Skim(src, machine, exact, folded, self, json_format).records(stream, n)
                return
            yield from _full_records(src.lines(stream, n), machine, exact, folded)
        rec = machine.close()
        if rec is not None:
            yield rec

    def _record(self, rec: _Record, file: str, fmt: str) -> Iterator[ServerLogEvent]:
        if self.database is not None and rec.database is not None and rec.database != self.database:
            return
        key = rec.session or rec.pid
        if rec.sev in _ERROR_LEVELS:
            yield from self._fail(key, rec.vxid)
            return
        if rec.sev != "LOG":
            return
        if rec.message.startswith("disconnection: "):  # log_disconnections: the session is over
            self.last_audit.pop(key, None)
            yield from self._settle(key, lambda p: True)
            return
        parsed = self._statement(rec, key)
        if parsed is None:
            return
        sql, params, via = parsed
        if via != "pgaudit":
            # The session went on to its next statement: what it ran before is settled (within
            # the same transaction, where the vxid tells, it can still be rolled back).
            if sql.lstrip()[:8].lower().startswith(("rollback", "abort")) and _is_rollback(sql):
                yield from self._fail(key, rec.vxid)
            yield from self._settle(key, lambda p: p.vxid is None or rec.vxid is None or p.vxid != rec.vxid)
        lowered = _ascii_lower(sql)
        if not any(word in lowered for word in self.kinds) or not any(n in lowered for n in self.names):
            return  # cannot be about a watched table: not worth parsing
        if params is None:
            params = parse_parameters(rec.detail)
        events = self._events(rec, sql, params, via, file, fmt)
        if events:
            entries = self.pending.get(key)
            if entries is None:
                entries = self.pending[key] = []
                self.fresh.append(key)
            entries.append(_Pending(rec.vxid, events))

    def _statement(self, rec: _Record, key: Any) -> tuple[str, dict[int, str | None] | None, str] | None:
        """The statement, its parameters (None: those of the record's DETAIL, parsed when needed)
        and how it was logged."""
        msg = _DURATION.sub("", rec.message, count=1) if rec.message.startswith("duration: ") else rec.message
        if msg.startswith("statement: "):
            return msg[len("statement: "):], {}, "statement"
        m = _EXECUTE.match(msg)
        if m is not None:
            return msg[m.end():], None, "execute"
        if msg.startswith("AUDIT: "):
            return self._audit(msg[len("AUDIT: "):], key)
        return None

    def _audit(self, body: str, key: Any) -> tuple[str, dict[int, str | None], str] | None:
        """``SESSION,1,1,WRITE,DELETE,TABLE,public.workspaces,"delete ...",<params>`` (pgaudit's README)."""
        try:
            row = next(csv.reader([body]))
        except (csv.Error, StopIteration):
            return None
        if len(row) < 8:
            return None
        sql = row[7]
        if sql == "<previously logged>":  # pgaudit.log_statement_once: the statement's first line had it
            sql = self.last_audit.get(key, "")
        else:
            self.last_audit[key] = sql
        if row[4].upper() not in ("DELETE", "INSERT"):
            return None
        values = row[8:]
        params: dict[int, str | None] = {}
        if values and values[0] not in ("<not logged>", "<none>", "<long param suppressed>"):
            params = {i + 1: (None if v == "<null>" else v) for i, v in enumerate(values)}
        return sql, params, "pgaudit"

    def _events(self, rec: _Record, sql: str, params: dict[int, str | None], via: str, file: str,
                fmt: str) -> list[ServerLogEvent]:
        out = []
        at = _time(rec.ts)
        shown = ""
        for change in statement_changes(sql, params):
            if change.kind not in self.kinds:
                continue
            for table in self.watched:
                if not _same_table(change, table):
                    continue
                ids = tuple(v for v in change.values(table.id_column) if v is not None)
                shown = shown or _shown(sql)
                same = self.same
                out.append(ServerLogEvent(
                    kind=change.kind, table=table.entity, relation=table.qualified, ids=ids, keys=change.keys,
                    logged_at=at,  # type: ignore[arg-type]  # None is dropped below
                    database=same(rec.database), session=same(rec.session), pid=rec.pid, vxid=rec.vxid,
                    file=file, line=rec.line, format=fmt, via=via, statement=shown, user=same(rec.user),
                    app=same(rec.app),
                    seen_in=((file, rec.line),) if self.mark_seen else ()))
        if out and at is None:
            self.stats.skipped_lines += 1  # a statement we cannot date is no evidence
            return []
        return out

    def _fail(self, key: Any, vxid: str | None) -> Iterator[ServerLogEvent]:
        for p in self.pending.get(key, []):
            if vxid is None or p.vxid is None or p.vxid == vxid:
                p.events = [replace(e, failed=True) for e in p.events]
        yield from self._settle(key, lambda p: True)

    def _settle(self, key: Any, done: Any) -> Iterator[ServerLogEvent]:
        entries = self.pending.get(key)
        if not entries:
            return
        keep = []
        for p in entries:
            if not done(p):
                keep.append(p)
                continue
            for event in p.events:
                if event.failed:
                    self.stats.failed_statements += 1
                    if not self.include_failed:
                        continue
                yield event
        if keep:
            self.pending[key] = keep
        else:
            del self.pending[key]


#: PostgreSQL's ``%m`` time (csvlog's and jsonlog's too): parsed once per second, then the milliseconds.
_MS_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ([A-Za-z]{1,5})")
_SECONDS: dict[tuple[str, str], datetime | None] = {}


def _time(ts: Any) -> datetime | None:
    """:func:`~incidentkit.evidence.logs.parse_time` of a log line's time, the same value, faster
    for the server's own ``2025-10-08 09:41:27.118 UTC`` (the zone's offset is whole minutes)."""
    m = _MS_TIME.fullmatch(ts) if isinstance(ts, str) else None
    if m is None:
        return parse_time(ts)
    key = (m.group(1), m.group(3))
    base = _SECONDS.get(key, False)
    if base is False:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        base = _SECONDS[key] = parse_time(f"{key[0]} {key[1]}")
    if base is None:
        return parse_time(ts)
    return base.replace(microsecond=int(m.group(2)) * 1000)


_SHOWN: dict[str, str] = {}


def _shown(sql: str) -> str:
    """The statement as an event shows it (cached like the tokens)."""
    out = _SHOWN.get(sql)
    if out is None:
        out = one_line(sql, STATEMENT_CHARS)
        if len(sql) <= _TOKEN_CACHE_CHARS:
            if len(_SHOWN) >= _TOKEN_CACHE_ENTRIES:
                _SHOWN.clear()
            _SHOWN[sql] = out
    return out


def _fold(name: str) -> str:
    return _ascii_lower(name)


def _same_table(change: Change, table: WatchedTable) -> bool:
    """The statement's table is the watched one: same name, and same schema when it names one.

    Names are compared as PostgreSQL does after parsing (unquoted ones folded to lower case, which
    the tokenizer did); the mapped names are compared as written and lower-cased.
    """
    if change.name not in (table.name, _fold(table.name)):
        return False
    return change.schema is None or change.schema in (table.schema, _fold(table.schema))
