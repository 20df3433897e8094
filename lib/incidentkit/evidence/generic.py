"""Verdicts for any foreign key, from the logs: the failures of every constraint, each key's history, a verdict.

Three steps, each usable alone:

:func:`scan_any`
    The foreign-key violations in the logs, of one constraint or of every one (grouped by
    constraint). A cheap pass over the lines holding ``violates foreign key constraint`` finds the
    names, then :func:`~incidentkit.evidence.logs.scan_logs` reads each constraint's failures, and
    the record's ``Detail`` (re-read at the failure's file and line) gives its key
    ``{column: value}``. Each :class:`AnyFailure` has its ``constraint``, ``direction``
    (``insert``: a row pointing at a missing key; ``delete``: a referenced row still referenced)
    and ``key``.
:func:`gather_histories`
    Each key's history in one read-only snapshot, batched per constraint: the referenced row now,
    the audit table's rows of the referenced table (when the mapping's audit table exists), the
    rows on the other foreign keys into the referenced table (the *paths*, ``ForeignKeyDef.paths``)
    that point at the key now, with the audit rows that wrote them; then, outside the database,
    the server log's DELETE/INSERT on the referenced table and point-in-time probes (an as-of
    command and a read-only ``exists`` query per instant).
:func:`decide_generic`
    The verdict, a pure function of one failure's :class:`KeyEvidence` (as
    :func:`incidentkit.evidence.rules.decide` is for the mapped relationship), with the generic
    names of :func:`incidentkit.evidence.registry.names` ``("generic")``.

:func:`affected_any` puts them together (``incidentkit affected --constraint NAME | --error TEXT``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import config
from ..analysis.constraints import ForeignKeyDef, ParsedError, discover, parse_error
from ..exceptions import AsOfError, ConfigError
from ..text import conninfo_parts, fmt_time, iso_utc, one_line, scrub_secrets
from . import logs, registry
from .inputs import check_window
from .model import DELETION_ORIGINS, Deletion, Stamp
from .rules import Decision, _relative, _within, short_list

#: The formats of PostgreSQL's own logs (read again for statements on the referenced table).
SERVER_FORMATS = ("pg_stderr", "pg_csv", "pg_json")
#: Lines read from a failure's first line to find its ``Detail`` (a record's own lines).
DETAIL_LINES = 12
#: Rows listed at most per path and key (the count is always exact up to ROW_CAP).
PATH_ROW_LIMIT = 20
ROW_CAP = 1000

# The name in ``violates foreign key constraint "NAME"``, quoted as a log writes it: "x", \"x\" (JSON), ""x"" (CSV).
_NAME_RE = re.compile(r'violates foreign key constraint (?:""|\\"|")(?P<name>[^"\\\n]+)(?:""|\\"|")')
_NEEDLE = "violates foreign key constraint"
# Values a column type can certainly not take (checked before a typed comparison is sent).
_INT_RE = re.compile(r"[+-]?\d{1,19}")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_NUM_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|NaN|[+-]?Infinity", re.I)


# -- 1. the failures in the logs ----------------------------------------------------------------
@dataclass(frozen=True)
class AnyFailure:
    """One violation of a foreign key, as the logs recorded it (merged across logs: ``sources``)."""

    at: datetime
    constraint: str
    #: ``insert`` (insert or update of a referencing row) or ``delete`` (update or delete of a referenced row).
    direction: str
    #: ``{column: value}`` as the error's Detail gives it (the referencing columns on an insert,
    #: the referenced ones on a delete); empty when the record has no Detail.
    key: dict[str, str]
    source: str
    line: int
    format: str
    sources: tuple[tuple[str, int], ...] = ()
    #: Each column got its own value (False: no Detail, or values holding ", " kept whole).
    key_exact: bool = False
    #: The tables the error names: the referencing one (a partition's name for a partitioned table)
    #: and the referenced one (from the Detail on an insert, the message on a delete); the
    #: catalog's names when the key was named from the catalog (``scan_any(definition=...)``).
    table: str | None = None
    referenced_table: str | None = None
    #: The Detail's values as printed (``north, 9``).
    raw_key: str | None = None
    user_id: str | None = None

    @property
    def places(self) -> tuple[tuple[str, int], ...]:
        return self.sources or ((self.source, self.line),)

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso_utc(self.at), "constraint": self.constraint, "direction": self.direction,
                "key": dict(self.key), "key_exact": self.key_exact, "table": self.table,
                "referenced_table": self.referenced_table, "source": self.source, "line": self.line,
                "format": self.format, "sources": [{"file": f, "line": n} for f, n in self.places]}


@dataclass
class AnyScan:
    """The violations found, by constraint (names in order), and what reading the logs amounted to."""

    by_constraint: dict[str, list[AnyFailure]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    file_reads: list[logs.LogFileRead] = field(default_factory=list)
    skipped_lines: int = 0

    @property
    def failures(self) -> list[AnyFailure]:
        """Every failure, by constraint then time."""
        return [f for name in self.by_constraint for f in self.by_constraint[name]]

    def server_files(self) -> list[str]:
        return [r.path for r in self.file_reads if r.format in SERVER_FORMATS]

    def to_dict(self) -> dict[str, Any]:
        return {"constraints": {n: [f.to_dict() for f in fs] for n, fs in self.by_constraint.items()},
                "files": list(self.files), "file_reads": [r.to_dict() for r in self.file_reads],
                "skipped_lines": self.skipped_lines}


def constraint_names(paths: logs.Paths) -> list[str]:
    """The foreign-key constraints named in the logs' violations, in name order (one cheap pass:
    only lines holding ``violates foreign key constraint`` are looked at)."""
    return _names_and_records([str(p) for p in logs.iter_log_files(paths)])[0]


def _names_and_records(files: list[str]) -> tuple[list[str], dict[tuple[str, int], str]]:
    """The constraint names, and the text (DETAIL_LINES lines) from each line that names one: a
    failure's record starts at its error line, so its Detail is then read in the same pass."""
    names: set[str] = set()
    records: dict[tuple[str, int], list[str]] = {}
    for path in files:
        open_: list[list[str]] = []
        last = -DETAIL_LINES
        for n, text in logs.iter_lines(path, blank_lines_kept=0):
            if n - last < DETAIL_LINES:
                for lines in open_:
                    if len(lines) < DETAIL_LINES:
                        lines.append(text)
            elif open_:
                open_ = []
            if _NEEDLE in text:
                found = [m.group("name") for m in _NAME_RE.finditer(text)]
                if found:
                    names.update(found)
                    lines = [text]
                    records[(path, n)] = lines
                    open_ = [x for x in open_ if len(x) < DETAIL_LINES] + [lines]
                    last = n
    return sorted(names), {k: "\n".join(v) for k, v in records.items()}


def scan_any(paths: logs.Paths, constraint: str | logs.ForeignKey | None = None, *,
             user_pattern: str | re.Pattern[str] = logs.DEFAULT_USER_PATTERN,
             definition: ForeignKeyDef | None = None) -> AnyScan:
    """The violations of ``constraint`` in ``paths`` (with no constraint: of every foreign key the
    logs name), one :class:`AnyFailure` per failure, the records of one failure in several logs
    merged (:func:`~incidentkit.evidence.logs.merge_failures`), each with its key from its Detail.

    The Detail is read again at each failure's line, except with no constraint (the pass that
    finds the names keeps it) or with the constraint's ``definition`` from the catalog, whose
    columns then name the Detail's values (read again only when they do not split into them)."""
    files = [str(p) for p in logs.iter_log_files(paths)]
    known: dict[tuple[str, int], str] = {}
    if constraint is not None:
        wanted = [logs.ForeignKey.of(constraint)]
    else:
        names, known = _names_and_records(files)
        wanted = [logs.ForeignKey(n) for n in names]
    out = AnyScan(files=files)
    scans = []
    for fk in wanted:
        scan = logs.scan_logs(files, constraint=fk, user_pattern=user_pattern)
        scans.append((fk.name, logs.merge_failures(scan.failures)))
        out.file_reads, out.skipped_lines = scan.file_reads, scan.skipped_lines
    if not scans and files:  # nothing named: still say what the files are (and read them once)
        scan = logs.scan_logs(files, constraint=logs.ForeignKey("\x00none"), user_pattern=user_pattern)
        out.file_reads, out.skipped_lines = scan.file_reads, scan.skipped_lines
    formats = {r.path: r.format for r in out.file_reads}
    from_catalog: dict[int, AnyFailure] = {}
    if definition is not None:
        for _, fs in scans:
            for f in fs:
                g = _key_from_catalog(f, definition)
                if g is not None:
                    from_catalog[id(f)] = g
    places = [p for _, fs in scans for f in fs if id(f) not in from_catalog for p in f.places]
    records = {**known, **_records([p for p in places if p not in known])}
    for name, failures in scans:
        out.by_constraint[name] = [from_catalog.get(id(f)) or _with_key(f, records, formats) for f in failures]
    return out


def _key_from_catalog(f: logs.LogFailure, fk: ForeignKeyDef) -> AnyFailure | None:
    """The failure with its key named by the catalog's columns (None when the values do not split into them)."""
    if f.workspace_id is None or f.constraint != fk.name:
        return None
    columns = fk.columns if f.kind == "insert" else fk.referenced_columns
    values = f.workspace_id.split(", ")
    if len(values) != len(columns):
        return None
    return AnyFailure(at=f.at, constraint=f.constraint, direction=f.kind, key=dict(zip(columns, values)),
                      source=f.source, line=f.line, format=f.format, sources=f.sources, key_exact=True, table=fk.table,
                      referenced_table=fk.referenced_table, raw_key=f.workspace_id, user_id=f.user_id)


def _records(places: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The text of each record (its first DETAIL_LINES lines) at (file, line), one pass per file."""
    starts: dict[str, set[int]] = defaultdict(set)
    for file, line in places:
        starts[file].add(line)
    out: dict[tuple[str, int], list[str]] = {}
    for file, wanted in starts.items():
        pending = deque(sorted(wanted))
        open_: list[int] = []
        try:
            for n, text in logs.iter_lines(file, blank_lines_kept=0):
                while pending and pending[0] <= n:
                    open_.append(pending.popleft())
                open_ = [s for s in open_ if n < s + DETAIL_LINES]
                for s in open_:
                    out.setdefault((file, s), []).append(text)
                if not pending and not open_:
                    break
        except Exception:  # noqa: BLE001 - a file that cannot be read again only loses its keys
            continue
    return {k: "\n".join(v) for k, v in out.items()}


def _with_key(f: logs.LogFailure, records: dict[tuple[str, int], str], formats: dict[str, str | None]
              ) -> AnyFailure:
    parsed: ParsedError | None = None
    for place in f.places:
        text = records.get(place)
        if not text:
            continue
        if formats.get(place[0]) == "pg_csv":
            text = text.replace('""', '"')
        try:
            p = parse_error(text)
        except ConfigError:
            continue
        if p.constraint != f.constraint:
            continue
        values = ", ".join(p.key.values()) if p.key_exact else next(iter(p.key.values()), None)
        if f.workspace_id is not None and values != f.workspace_id:
            continue
        parsed = p
        break
    key: dict[str, str] = {}
    exact = False
    table = referenced = None
    if parsed is not None:
        key, exact, table, referenced = dict(parsed.key), parsed.key_exact, parsed.table, parsed.referenced_table
    elif f.workspace_id is not None:
        key = {"?": f.workspace_id}
    return AnyFailure(at=f.at, constraint=f.constraint, direction=f.kind, key=key, source=f.source, line=f.line,
                      format=f.format, sources=f.sources, key_exact=exact, table=table, referenced_table=referenced,
                      raw_key=f.workspace_id, user_id=f.user_id)


# -- 2. the evidence about one key ---------------------------------------------------------------
@dataclass(frozen=True)
class PathRow:
    """A row on a path (another foreign key into the referenced table, or on a delete the
    constraint's own referencing table) that holds the key now."""

    constraint: str
    table: str  # schema-qualified
    row: dict[str, Any]  # its primary key (or ctid)
    written_at: datetime | None = None
    written_how: str = ""  # "audit transaction 123" | "commit timestamp"

    def describe(self) -> str:
        row = ", ".join(f"{k}={v}" for k, v in self.row.items())
        return f"{self.table} ({row})"

    def to_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint, "table": self.table, "row": dict(self.row),
                "written_at": iso_utc(self.written_at) if self.written_at else None, "written_how": self.written_how}


@dataclass(frozen=True)
class KeyEvidence:
    """Everything :func:`decide_generic` needs about one failure. Plain values: no database, no I/O."""

    failure_at: datetime
    constraint: str
    direction: str
    #: ``{column: value}`` as the Detail names it.
    key: dict[str, str]
    #: The referencing and referenced tables, schema-qualified (as the catalog names them).
    table: str
    referenced_table: str
    #: The key as the referenced table's columns (None: the Detail gives no usable key).
    referenced_key: dict[str, str] | None = None
    #: A note when the key is unusable (no Detail, values kept whole, not of the column's type).
    key_problem: str = ""
    #: The referenced row exists now.
    exists_now: bool = False
    creations: tuple[Stamp, ...] = ()
    deletions: tuple[Deletion, ...] = ()
    #: Rows on the other foreign keys into the referenced table that hold the key now.
    path_rows: tuple[PathRow, ...] = ()
    #: On a delete: rows of the referencing table that hold the key now.
    referencing_rows: tuple[PathRow, ...] = ()
    #: The audit table was read for the referenced table; its earliest insert of it.
    audit: bool = False
    audit_since: datetime | None = None
    #: Point-in-time probes found the key absent at every probe back to this instant.
    absent_since: datetime | None = None
    as_of_probes: int = 0
    #: Sources consulted besides the audit table (``server_log``, ``as_of``).
    outside_sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    source: str = ""
    line: int = 0

    @property
    def key_text(self) -> str:
        return "(" + ", ".join(f"{k}={v}" for k, v in self.key.items()) + ")" if self.key else "(unknown)"

    def nearest_deletion(self) -> Deletion | None:
        if not self.deletions:
            return None
        return min(self.deletions, key=lambda d: abs((d.at - self.failure_at).total_seconds()))


#: Which source a verdict rests on when several saw one deletion (as in the seed's rule).
_RANK = {origin: i for i, origin in enumerate(DELETION_ORIGINS)}


def decide_generic(ev: KeyEvidence, window: float = config.DEFAULT_WINDOW_SECONDS) -> Decision:
    """The verdict for one failure of any foreign key and the sentences behind it. Pure: no I/O.

    In order: no usable key -> ``insufficient_evidence``; a delete refused -> ``still_referenced``
    (naming the referencing rows); a path row holding the key while the referenced row is missing
    -> ``dangling_path``; a deletion within ``window`` -> ``concurrent_deletion``; the referenced
    row created only after the failure -> ``path_before_parent``; it exists now otherwise ->
    ``insufficient_evidence``; no source at all -> ``insufficient_evidence``; deleted before the
    window -> ``stale_read``; a bracket across the window's edge or a deletion only later ->
    ``insufficient_evidence``; no creation and no deletion where the audit table or the probes
    cover the time -> ``key_never_existed`` (inferred); from logs alone -> ``insufficient_evidence``.
    """
    verdict, sentences, deletion, strength = _decide(ev, check_window(window))
    if verdict not in registry.names("generic"):
        raise KeyError(f"verdict {verdict!r} is not of the generic family")
    return Decision(registry.get(verdict).name, sentences, deletion, strength)


def _decide(ev: KeyEvidence, w: float) -> tuple[str, list[str], Deletion | None, str]:
    t = ev.failure_at
    ref = ev.referenced_table
    key = ev.key_text
    where = f" ({Path(ev.source).name} line {ev.line})" if ev.source else ""
    if ev.direction == "delete":
        head = (f"{fmt_time(t)}: an update or delete of {ref} key {key} failed on {ev.constraint}: "
                f"it is still referenced from {ev.table}{where}.")
    else:
        head = (f"{fmt_time(t)}: an insert or update on {ev.table} failed on {ev.constraint}: key {key} "
                f"was not present in {ref}{where}.")
    out = [head, *ev.notes]

    if ev.referenced_key is None:
        return "insufficient_evidence", out + [
            (ev.key_problem or "The log record gives no usable key") + ", so nothing can be checked in the database."
        ], None, "none"

    created_before = sorted((c for c in ev.creations if c.at <= t), key=lambda c: c.at)
    created_after = sorted((c for c in ev.creations if c.at > t), key=lambda c: c.at)
    near = sorted((d for d in ev.deletions if _within(d, t, w)), key=lambda d: (_RANK[d.origin], _distance(d, t)))

    def deletion_sentences(d: Deletion) -> list[str]:
        if d.after is not None:
            return [f"The row {key} of {ref} existed at {fmt_time(d.after)} ({_relative(d.after, t)}) and was gone "
                    + ("by the failure" if d.bounded_by_failure else f"at {fmt_time(d.at)} ({_relative(d.at, t)})")
                    + f": deleted in between ({d.how()})."]
        return [f"{fmt_time(d.at)}: the row {key} of {ref} was deleted ({d.how()}), {_relative(d.at, t)}."]

    def creation_sentence() -> list[str]:
        if created_before:
            c = created_before[-1]
            return [f"{fmt_time(c.at)}: the row {key} of {ref} was created ({c.how()}), {_relative(c.at, t)}."]
        return []

    def corroboration(d: Deletion) -> list[str]:
        others = [x for x in ev.deletions if x is not d and x.origin != d.origin
                  and abs((x.at - d.at).total_seconds()) <= w]
        return [f"Also seen: {x.how()}, {fmt_time(x.at)}." for x in others]

    def path_sentences() -> list[str]:
        out_ = []
        for p in ev.path_rows[:PATH_ROW_LIMIT]:
            s = f"Path {p.constraint}: {p.describe()} points at key {key}"
            if p.written_at is not None:
                s += f", written {fmt_time(p.written_at)} ({p.written_how}), {_relative(p.written_at, t)}"
            out_.append(s + ".")
        if len(ev.path_rows) > PATH_ROW_LIMIT:
            out_.append(f"... and {len(ev.path_rows) - PATH_ROW_LIMIT} more path rows.")
        return out_

    # 1. the delete side: the referenced row could not go while rows referenced it
    if ev.direction == "delete":
        rows = ev.referencing_rows
        if rows:
            out.append(f"{len(rows)} row{'s' if len(rows) != 1 else ''} of {ev.table} hold{'s' if len(rows) == 1 else ''}"
                       f" key {key} now: {short_list([r.describe() for r in rows])}; the deletion of {ref} key {key} "
                       f"was refused while {'they' if len(rows) != 1 else 'it'} referenced it (ON DELETE NO ACTION / "
                       "RESTRICT).")
            strength = "recorded"
        else:
            out.append(f"No row of {ev.table} holds key {key} now: the rows that referenced it at the failure were "
                       "removed or changed since.")
            strength = "inferred"
        out.append(f"The row {key} of {ref} " + ("still exists." if ev.exists_now else "has no row now: a later "
                                                  "deletion succeeded."))
        return "still_referenced", out, ev.nearest_deletion(), strength

    # 2. a path row that points at the missing referenced row
    if ev.path_rows and not ev.exists_now:
        out += path_sentences()
        out.append(f"The row {key} of {ref} has no row now although {'these rows reference' if len(ev.path_rows) != 1 else 'this row references'} "
                   "it: stored data a foreign key should have prevented (a NOT VALID constraint, triggers disabled "
                   "during a restore?). Whatever reads the key from that path fails the same way until it is cleaned up.")
        d = ev.nearest_deletion()
        if d is not None:
            out += deletion_sentences(d)
        out += creation_sentence()
        return "dangling_path", out, d, "recorded"

    # 3. deleted within the window
    if near:
        d = near[0]
        out += deletion_sentences(d)
        out.append(f"That is within the {w:g} s window around the failure: the referenced row was deleted while the "
                   f"write that needed it ran (it read the key, then wrote {ev.table} after the deletion).")
        out += corroboration(d) + creation_sentence() + path_sentences()
        return "concurrent_deletion", out, d, d.strength

    # 4. exists now
    if ev.exists_now:
        if created_after and not created_before:
            c = created_after[0]
            out.append(f"{fmt_time(c.at)}: the row {key} of {ref} was created ({c.how()}), {_relative(c.at, t)}: it "
                       "exists now, but did not exist yet when the failing write ran: it was written before its parent.")
            out += path_sentences()
            return "path_before_parent", out, None, "recorded"
        out += creation_sentence()
        out.append(f"The row {key} of {ref} exists now and no deletion of it is recorded within {w:g} s of the "
                   "failure: its history does not explain the violation" + (
                       "." if created_before else " (when it was created is not recorded)."))
        return "insufficient_evidence", out, None, "none"

    # 5. missing now, no source
    if not ev.audit and not ev.outside_sources:
        out.append(f"The row {key} of {ref} has no row now and there is no deletion source (no audit table, no server "
                   "log statements, no point-in-time probes): when it was deleted, or whether it ever existed, cannot "
                   "be told.")
        return "insufficient_evidence", out, None, "none"

    if created_after and not created_before:
        c = created_after[0]
        out.append(f"{fmt_time(c.at)}: the row {key} of {ref} was created ({c.how()}), {_relative(c.at, t)}: it did "
                   "not exist yet when the failing write ran.")
        later = [d for d in ev.deletions if d.at >= c.at]
        if later:
            out += deletion_sentences(later[0])
        out += path_sentences()
        return "path_before_parent", out, later[0] if later else None, "recorded"

    before = sorted((d for d in ev.deletions if (d.at - t).total_seconds() < -w), key=lambda d: d.at)
    straddling = [d for d in ev.deletions if not _within(d, t, w) and (d.at - t).total_seconds() >= -w
                  and (d.earliest - t).total_seconds() <= w]
    if before:
        d = before[-1]
        out += deletion_sentences(d)
        recreated = [c for c in ev.creations if d.at < c.at <= t]
        if recreated:
            c = recreated[-1]
            out.append(f"{fmt_time(c.at)}: it was created again ({c.how()}), {_relative(c.at, t)}: it existed when the "
                       "write ran, so its history does not explain the violation.")
            return "insufficient_evidence", out, d, "none"
        out.append(f"That is more than {w:g} s before the failure: the write used a key already gone when it started "
                   "(read from a replica, a long-running transaction or a cache).")
        out += corroboration(d) + creation_sentence() + path_sentences()
        return "stale_read", out, d, d.strength

    if straddling:
        d = straddling[0]
        out += deletion_sentences(d)
        out.append(f"That interval reaches across the edge of the {w:g} s window around the failure, so whether the "
                   "deletion was concurrent or earlier cannot be told (probe with a finer --as-of-precision).")
        return "insufficient_evidence", out, d, "none"

    after = sorted((d for d in ev.deletions if (d.at - t).total_seconds() > w), key=lambda d: d.at)
    if after:
        out += creation_sentence() + deletion_sentences(after[0])
        out.append(f"It existed when the write ran and was deleted only later (beyond the {w:g} s window): its "
                   "history does not explain the violation.")
        return "insufficient_evidence", out, after[0], "none"

    if not ev.creations and ev.absent_since is not None:
        out.append(f"The row {key} of {ref} has no row now and was absent at every point-in-time probe back to "
                   f"{fmt_time(ev.absent_since)} ({ev.as_of_probes} probe{'s' if ev.as_of_probes != 1 else ''}): it "
                   "never existed in the history the probes reach.")
        out += path_sentences()
        return "key_never_existed", out, None, "inferred"

    if not ev.creations and ev.audit:
        since = (f" (its earliest recorded insert into {ref} is at {fmt_time(ev.audit_since)})" if ev.audit_since
                 else f" (it records no insert into {ref} at all)")
        out.append(f"The row {key} of {ref} has no row now and the audit table holds no row of it: it was never "
                   f"created nor deleted while the audit table recorded{since}.")
        out += path_sentences()
        return "key_never_existed", out, None, "inferred"

    if not ev.creations:
        out.append(f"The row {key} of {ref} has no row now and no deletion of it is found in the sources used "
                   f"({', '.join(ev.outside_sources)}). Logs cover only their own time, so this does not show that it "
                   "never existed; an as-of command (--as-of-command) would probe the database's history.")
        return "insufficient_evidence", out, None, "none"

    out += creation_sentence()
    out.append(f"The row {key} of {ref} has no row now, but no deletion of it is recorded: the sources miss it (audit "
               "trigger disabled, rows purged, a log that does not cover the time?).")
    return "insufficient_evidence", out, None, "none"


def _distance(d: Deletion, t: datetime) -> float:
    return min(abs((d.at - t).total_seconds()), abs((d.earliest - t).total_seconds()))


# -- 2b. reading the history (one snapshot per constraint) ---------------------------------------
def _typed_ok(value: str, sql_type: str) -> bool:
    """False when ``value`` certainly cannot be read as ``sql_type`` (a typed comparison would fail)."""
    t = sql_type.lower()
    if t in ("integer", "bigint", "smallint"):
        return bool(_INT_RE.fullmatch(value))
    if t == "uuid":
        return bool(_UUID_RE.fullmatch(value))
    if t.startswith(("numeric", "real", "double precision")):
        return bool(_NUM_RE.fullmatch(value))
    if t == "boolean":
        return value.lower() in ("t", "f", "true", "false")
    return "\x00" not in value


def _column_types(reader, schema: str, table: str) -> dict[str, str]:
    rows = reader.all(
        """
        select a.attname::text as name, format_type(a.atttypid, a.atttypmod) as type
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %(schema)s and c.relname = %(table)s and a.attnum > 0 and not a.attisdropped
        """, {"schema": schema, "table": table})
    return {r["name"]: r["type"] for r in rows}


def _keys_sql(count: int) -> Any:
    """``unnest(%(i)s::int[], %(v0)s::text[], ...) as k(i, v0, ...)``: the keys as a relation."""
    from psycopg import sql

    cols = [sql.Identifier(f"v{j}") for j in range(count)]
    arrays = [sql.SQL("%(i)s::int[]")] + [sql.SQL(f"%(v{j})s::text[]") for j in range(count)]
    return sql.SQL("unnest({}) as k(i, {})").format(sql.SQL(", ").join(arrays), sql.SQL(", ").join(cols))


def _key_params(keys: list[tuple[str, ...]]) -> dict[str, Any]:
    width = len(keys[0]) if keys else 0
    params: dict[str, Any] = {"i": list(range(len(keys)))}
    for j in range(width):
        params[f"v{j}"] = [k[j] for k in keys]
    return params


def _match(columns: Sequence[str], types: dict[str, str], alias: str = "x") -> Any:
    """``x.c0 = k.v0::type0 and ...``: typed, so an index on the columns serves it."""
    from psycopg import sql

    return sql.SQL(" and ").join(
        sql.SQL("{}.{} = {}::{}").format(sql.Identifier(alias), sql.Identifier(c), sql.Identifier("k", f"v{j}"),
                                         sql.SQL(types[c]))
        for j, c in enumerate(columns))


def present_keys(reader, fk: ForeignKeyDef, keys: list[tuple[str, ...]], types: dict[str, str]) -> set[int]:
    """The indexes of ``keys`` (values of the referenced columns) that have a row in the referenced table now."""
    from psycopg import sql

    if not keys:
        return set()
    stmt = sql.SQL("select k.i from {keys} where exists (select 1 from {table} x where {match})").format(
        keys=_keys_sql(len(fk.referenced_columns)), table=sql.Identifier(fk.referenced_schema, fk.referenced_table),
        match=_match(fk.referenced_columns, types))
    return {r["i"] for r in reader.all(stmt.as_string(None), _key_params(keys))}


def _audit_table(reader, m) -> bool:
    if m is None or getattr(m, "deletion_source", "audit") != "audit":
        return False
    return bool(reader.scalar("select to_regclass(%(t)s) is not null as ok", {"t": m.audit.sql}))


def relations(reader, schema: str, table: str) -> list[tuple[str, str]]:
    """``schema.table`` and, for a partitioned table, its partitions (an audit trigger records a
    row under the partition it is stored in)."""
    rows = reader.all(
        """
        select n.nspname::text as schema, c.relname::text as name
        from pg_partition_tree(format('%%I.%%I', %(schema)s::text, %(table)s::text)::regclass) t
        join pg_class c on c.oid = t.relid
        join pg_namespace n on n.oid = c.relnamespace
        order by t.level, 2
        """, {"schema": schema, "table": table})
    return [(r["schema"], r["name"]) for r in rows] or [(schema, table)]


def audit_key_rows(reader, m, schema: str, table: str, columns: Sequence[str], keys: list[tuple[str, ...]],
                   extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The audit rows of ``schema.table`` (or its partitions) whose ``row_data ->> column`` equal
    each key's values (``k.i`` names the key), with ``extra`` columns of the row (its primary key)
    as ``row``."""
    from psycopg import sql

    if not keys:
        return []
    a = m.audit
    data = sql.SQL(a.col("row_data"))
    match = sql.SQL(" and ").join(sql.SQL("a.{} ->> {} = {}").format(data, sql.Literal(c), sql.Identifier("k", f"v{j}"))
                                  for j, c in enumerate(columns))
    row = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
        sql.SQL("{}, a.{} -> {}").format(sql.Literal(c), data, sql.Literal(c)) for c in extra)) if extra else \
        sql.SQL("null::jsonb")
    stmt = sql.SQL("""
        select k.i, a.{action}::text as action, a.{at} as at, a.{tx} as transaction_id, {row} as row
        from {keys} join {audit} a
          on (a.{schema_name}, a.{table_name}) in (select * from unnest(%(schemas)s::text[], %(tables)s::text[]))
         and {match}
        order by k.i, 3, 4
        """).format(action=sql.SQL(a.col("action")), at=sql.SQL(a.col("at")), tx=sql.SQL(a.col("transaction_id")),
                    row=row, keys=_keys_sql(len(columns)), audit=sql.SQL(a.sql),
                    table_name=sql.SQL(a.col("table_name")), schema_name=sql.SQL(a.col("schema_name")), match=match)
    rels = relations(reader, schema, table)
    return reader.all(stmt.as_string(None), {**_key_params(keys), "schemas": [x for x, _ in rels],
                                             "tables": [y for _, y in rels]})


def _audit_since(reader, m, schema: str, table: str) -> datetime | None:
    a = m.audit
    rels = relations(reader, schema, table)
    return reader.scalar(
        f"select min({a.col('at')}) as since from {a.sql} where ({a.col('schema_name')}, {a.col('table_name')}) in "
        f"(select * from unnest(%(s)s::text[], %(t)s::text[])) and {a.col('action')}::text = 'I'",
        {"s": [x for x, _ in rels], "t": [y for _, y in rels]})


def rows_holding(reader, p: ForeignKeyDef, columns: Sequence[str], keys: list[tuple[str, ...]],
                 types: dict[str, str]) -> list[dict[str, Any]]:
    """The rows of ``p``'s referencing table whose ``columns`` hold each key now (``k.i``), with
    their primary key as ``row`` and the commit time of their last write when the server keeps them."""
    from psycopg import sql

    if not keys:
        return []
    from ..db import queries

    row = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
        sql.SQL("{}, x.{}").format(sql.Literal(c), sql.Identifier(c)) for c in p.primary_key)) if p.primary_key \
        else sql.SQL("jsonb_build_object('ctid', x.ctid::text)")
    written = sql.SQL("pg_xact_commit_timestamp(x.xmin)") if queries.commit_timestamps_on(reader) \
        else sql.SQL("null::timestamptz")
    stmt = sql.SQL("select k.i, {row} as row, {written} as written_at from {keys} join {table} x on {match} "
                   "order by k.i limit {cap}").format(
        row=row, written=written, keys=_keys_sql(len(columns)), table=sql.Identifier(p.schema, p.table),
        match=_match(columns, types), cap=sql.Literal(ROW_CAP))
    return reader.all(stmt.as_string(None), _key_params(keys))


@dataclass
class _Target:
    """One failure's key, mapped onto the referenced table's columns."""

    failure: AnyFailure
    referenced_key: dict[str, str] | None
    problem: str = ""


def _target(f: AnyFailure, fk: ForeignKeyDef, ref_types: dict[str, str]) -> _Target:
    if not f.key:
        return _Target(f, None, "The log record has no Detail line, so the key is unknown")
    if f.key_exact:
        cols = list(f.key)
        if cols == list(fk.columns) and f.direction == "insert":
            values = [f.key[c] for c in fk.columns]
        elif cols == list(fk.referenced_columns):
            values = [f.key[c] for c in fk.referenced_columns]
        elif cols == list(fk.columns):
            values = [f.key[c] for c in fk.columns]
        else:
            return _Target(f, None, f"The Detail's columns ({', '.join(cols)}) are not those of {fk.name} "
                                    f"({', '.join(fk.columns)} -> {', '.join(fk.referenced_columns)})")
    else:
        raw = next(iter(f.key.values()))
        values = raw.split(", ") if raw else [raw]
        if len(values) != len(fk.referenced_columns):
            return _Target(f, None, f"The Detail's values ({one_line(raw, 80)}) cannot be split into the "
                                    f"{len(fk.referenced_columns)} columns of the key (a value holds ', ')")
    ref = dict(zip(fk.referenced_columns, values))
    bad = [c for c, v in ref.items() if not _typed_ok(v, ref_types.get(c, "text"))]
    if bad:
        return _Target(f, None, f"The value {ref[bad[0]]!r} is not a valid {ref_types.get(bad[0])} for "
                                f"{fk.qualified_referenced_table}.{bad[0]}")
    return _Target(f, ref)


@dataclass
class KeyFacts:
    """What one snapshot (and the server log) say about one key of the referenced table."""

    key: tuple[str, ...]
    exists_now: bool = False
    creations: list[Stamp] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    #: Rows on the paths (other foreign keys into the referenced table) holding the key now.
    path_rows: list[PathRow] = field(default_factory=list)
    #: Rows of the constraint's own referencing table holding the key now (read when asked).
    referencing_rows: list[PathRow] = field(default_factory=list)


@dataclass
class Facts:
    """:class:`KeyFacts` for every key of one constraint, from one read-only snapshot."""

    fk: ForeignKeyDef
    keys: dict[tuple[str, ...], KeyFacts]
    referenced_types: dict[str, str]
    snapshot_at: datetime
    audit: bool = False
    audit_since: datetime | None = None
    #: Sources read besides the database's tables (``server_log``).
    outside: list[str] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return (["audit"] if self.audit else []) + self.outside


def read_facts(db, fk: ForeignKeyDef | str, keys: Iterable[tuple[str, ...]], *, referencing: bool = False,
               server_files: Sequence[str] = (), reader=None) -> Facts:
    """The history of each key (values of ``fk``'s referenced columns, in their order) in one
    read-only snapshot, each query batched over the keys: the referenced row now, the audit
    table's rows of the referenced table, the path rows holding the key now (and, with
    ``referencing``, the constraint's own referencing rows) with the audit rows that wrote them;
    then the server log's DELETEs and INSERTs of the referenced rows in ``server_files``."""
    if reader is None:
        with db.read() as r:
            return read_facts(db, fk, keys, referencing=referencing, server_files=server_files, reader=r)
    r, m = reader, db.schema
    if isinstance(fk, str):
        fk = discover(r, fk)
    ref_types = _column_types(r, fk.referenced_schema, fk.referenced_table)
    distinct = sorted(set(keys))
    facts = Facts(fk, {k: KeyFacts(k) for k in distinct}, ref_types, r.snapshot_at)
    if not distinct:
        return facts
    present = present_keys(r, fk, distinct, ref_types)
    for i in present:
        facts.keys[distinct[i]].exists_now = True
    facts.audit = _audit_table(r, m)
    if facts.audit:
        facts.audit_since = _audit_since(r, m, fk.referenced_schema, fk.referenced_table)
        for row in audit_key_rows(r, m, fk.referenced_schema, fk.referenced_table, fk.referenced_columns, distinct):
            kf = facts.keys[distinct[row["i"]]]
            if row["action"] == "I":
                kf.creations.append(Stamp(row["at"], row["transaction_id"], "audit"))
            elif row["action"] == "D":
                kf.deletions.append(Deletion(row["at"], row["transaction_id"], "audit"))
    for p in ([fk] if referencing else []) + list(fk.paths):
        if not set(p.referenced_columns) <= set(fk.referenced_columns):
            continue  # a path to another unique key of the table: the key's values do not give its values
        pos = [fk.referenced_columns.index(c) for c in p.referenced_columns]
        pkeys = sorted({tuple(k[j] for j in pos) for k in distinct})
        ptypes = _column_types(r, p.schema, p.table)
        written: dict[tuple[int, str], tuple[datetime, str]] = {}
        if facts.audit and p.primary_key:
            for row in audit_key_rows(r, m, p.schema, p.table, p.columns, pkeys, extra=p.primary_key):
                if row["action"] == "I" and row["row"]:
                    written.setdefault((row["i"], _row_id(row["row"])),
                                       (row["at"], f"audit transaction {row['transaction_id']}"))
        by_pkey: dict[int, list[PathRow]] = defaultdict(list)
        for row in rows_holding(r, p, p.columns, pkeys, ptypes):
            at, how = written.get((row["i"], _row_id(row["row"])),
                                  (row["written_at"], "commit timestamp of its last write" if row["written_at"] else ""))
            by_pkey[row["i"]].append(PathRow(p.name, p.qualified_table, dict(row["row"]), at, how))
        pindex = {k: i for i, k in enumerate(pkeys)}
        for k in distinct:
            rows = by_pkey.get(pindex[tuple(k[j] for j in pos)], [])
            (facts.keys[k].referencing_rows if p is fk else facts.keys[k].path_rows).extend(rows)
    if server_files:
        _server_log(fk, distinct, list(server_files), db, facts.keys)
        facts.outside.append("server_log")
    for kf in facts.keys.values():
        kf.creations.sort(key=lambda c: c.at)
        kf.deletions.sort(key=lambda d: d.at)
    return facts


@dataclass
class History:
    """Each failure's :class:`KeyEvidence` for one constraint, and where it was read."""

    fk: ForeignKeyDef
    evidence: list[KeyEvidence]
    snapshot_at: datetime
    sources: list[str]


def gather_histories(db, fk: ForeignKeyDef | str, failures: Sequence[AnyFailure], *, server_files: Sequence[str] = (),
                     as_of: Any = None, as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
                     as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS,
                     window: float = config.DEFAULT_WINDOW_SECONDS) -> History:
    """Each failure's :class:`KeyEvidence` for foreign key ``fk`` (a definition or a name): its
    key's :func:`read_facts`, and point-in-time probes (``as_of``: an as-of command) for a missing
    referenced row of which no source records a deletion (as the seed's rule probes)."""
    with db.read() as r:
        if isinstance(fk, str):
            fk = discover(r, fk)
        ref_types = _column_types(r, fk.referenced_schema, fk.referenced_table)
        targets = [_target(f, fk, ref_types) for f in failures]
        usable = [t for t in targets if t.referenced_key is not None]
        facts = read_facts(db, fk, [tuple(t.referenced_key.values()) for t in usable],  # type: ignore[union-attr]
                           referencing=any(t.failure.direction == "delete" for t in usable),
                           server_files=server_files, reader=r)
    used = list(facts.outside)
    prober = None
    if as_of is not None:
        prober = _KeyProber(as_of, fk, ref_types, since=as_of_since, precision=as_of_precision)
        used.append("as_of")
    evidence = []
    for t in targets:
        f = t.failure
        base = dict(failure_at=f.at, constraint=fk.name, direction=f.direction, key=dict(f.key),
                    table=fk.qualified_table, referenced_table=fk.qualified_referenced_table, source=f.source,
                    line=f.line, audit=facts.audit, audit_since=facts.audit_since, outside_sources=tuple(used))
        if t.referenced_key is None:
            evidence.append(KeyEvidence(**base, key_problem=t.problem))
            continue
        kf = facts.keys[tuple(t.referenced_key.values())]
        dels = list(kf.deletions)
        absent_since, probes = None, 0
        if prober is not None and f.direction == "insert" and not kf.exists_now and not dels:  # as the seed's rule
            d, absent_since, probes = prober.bracket(kf.key, f.at)
            if d is not None:
                dels.append(d)
        evidence.append(KeyEvidence(
            **base, referenced_key=dict(t.referenced_key), exists_now=kf.exists_now, creations=tuple(kf.creations),
            deletions=tuple(sorted(dels, key=lambda d: d.at)), path_rows=tuple(kf.path_rows),
            referencing_rows=tuple(kf.referencing_rows) if f.direction == "delete" else (),
            absent_since=absent_since, as_of_probes=probes))
    return History(fk, evidence, facts.snapshot_at, facts.sources + (["as_of"] if prober is not None else []))


def _row_id(row: dict[str, Any]) -> str:
    return "|".join(f"{k}={row[k]}" for k in sorted(row))


def _server_log(fk: ForeignKeyDef, distinct: list[tuple[str, ...]], files: list[str], db,
                keys: dict[tuple[str, ...], KeyFacts]) -> None:
    """DELETEs and INSERTs of the referenced rows in PostgreSQL's own logs (``log_statement``, pgaudit)."""
    from .server_log import WatchedTable, iter_server_log_events

    watched = WatchedTable("referenced", fk.referenced_schema, fk.referenced_table, fk.referenced_columns[0])
    # One statement copied in several logs (stderr, csvlog, jsonlog) is one event. Merged here on
    # every key column: scan_server_logs merges on the id column alone, which for a composite key
    # makes one event of two deletions sharing their first column within a second.
    merged: dict[tuple[Any, ...], Any] = {}
    for e in iter_server_log_events(list(files), [watched], database=db.dbname):
        k = (e.kind, e.keys, e.logged_at.replace(microsecond=0), e.failed)
        first = merged.get(k)
        if first is None:
            merged[k] = (e, [(e.file, e.line)])
        elif (e.file, e.line) not in first[1] and all(f != e.file for f, _ in first[1]):
            first[1].append((e.file, e.line))
    wanted = set(distinct)
    for e, seen in sorted(merged.values(), key=lambda x: x[0].logged_at):
        columns = [e.key(c) for c in fk.referenced_columns]
        if not all(columns):
            continue
        if len({len(v) for v in columns}) == 1:  # row by row (a multi-row INSERT, or one row)
            found = {tuple(v[j] for v in columns) for j in range(len(columns[0]))}
        else:  # WHERE a = any(...) and b = ...: every combination named
            found = {k for k in wanted if all(k[j] in columns[j] for j in range(len(k)))}
        where = tuple(f"{f}:{n}" for f, n in seen)
        for k in found & wanted:
            if e.kind == "delete":
                keys[k].deletions.append(Deletion(e.logged_at, None, "server_log", None, where=where, who=e.who,
                                                  status=e.status))
            else:
                keys[k].creations.append(Stamp(e.logged_at, None, "server_log", where))


class _KeyProber:
    """Point-in-time probes of one key: an as-of command (``... {at} ...``) gives a URL per instant,
    a read-only ``exists`` query asks whether the referenced row was there (cached per instant and key)."""

    def __init__(self, command: Any, fk: ForeignKeyDef, types: dict[str, str], *, since: float, precision: float,
                 statement_timeout_ms: int = 30_000):
        from .asof import AsOfCommand

        self.command = command if isinstance(command, AsOfCommand) else AsOfCommand(command)
        self.fk, self.types = fk, types
        self.since, self.precision = timedelta(seconds=since), timedelta(seconds=precision)
        self.statement_timeout_ms = statement_timeout_ms
        self._urls: dict[datetime, str] = {}
        self._answers: dict[tuple[datetime, tuple[str, ...]], bool] = {}

    def present(self, key: tuple[str, ...], at: datetime) -> bool:
        from .asof import at_text

        if (at, key) not in self._answers:
            if at not in self._urls:
                self._urls[at] = self.command.url_at(at)
            self._answers[(at, key)] = exists_at(self._urls[at], self.fk, self.types, key, where=at_text(at),
                                                  statement_timeout_ms=self.statement_timeout_ms)
        return self._answers[(at, key)]

    def bracket(self, key: tuple[str, ...], failure_at: datetime) -> tuple[Deletion | None, datetime | None, int]:
        from .asof import probe

        b = probe(lambda at: self.present(key, at), failure_at, since=self.since, precision=self.precision)
        if b.existed_at is not None:
            n = b.probe_count
            d = Deletion(b.gone_at or b.failure_at, None, "as_of", after=b.existed_at, probes=n,
                         bounded_by_failure=b.gone_at is None,
                         where=(f"{n} point-in-time probe{'s' if n != 1 else ''}",))
            return d, None, b.probe_count
        return None, b.absent_since, b.probe_count


def exists_at(url: str, fk: ForeignKeyDef, types: dict[str, str], key: tuple[str, ...], *, where: str = "",
              statement_timeout_ms: int = 30_000, connect_timeout: int = 10) -> bool:
    """Whether the referenced row with ``key`` exists in the database at ``url`` (one read-only
    transaction). A failure is an :class:`AsOfError` of one line that never quotes the URL."""
    import psycopg
    from psycopg import sql

    secrets = [url]
    try:
        parts = conninfo_parts(url)
        secrets += [parts[k] for k in ("password", "host", "user", "dbname") if len(parts.get(k) or "") >= 3]
    except ValueError:
        raise AsOfError("the as-of command returned a URL libpq cannot use") from None
    stmt = sql.SQL("select exists (select 1 from {table} x where {match}) as present").format(
        table=sql.Identifier(fk.referenced_schema, fk.referenced_table),
        match=sql.SQL(" and ").join(sql.SQL("x.{} = {}::{}").format(sql.Identifier(c), sql.Literal(key[j]),
                                                                      sql.SQL(types[c]))
                                    for j, c in enumerate(fk.referenced_columns)))
    try:
        with psycopg.connect(url, connect_timeout=connect_timeout, application_name=config.APPLICATION_NAME,
                             autocommit=False) as conn:
            conn.read_only = True
            with conn.cursor() as cur:
                cur.execute("select set_config('statement_timeout', %s, true)", (f"{int(statement_timeout_ms)}ms",))
                cur.execute(stmt)
                row = cur.fetchone()
            conn.rollback()
            return bool(row and row[0])
    except psycopg.Error as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise AsOfError(f"the probe of {fk.qualified_referenced_table} in the database the as-of command returned"
                        f"{' for ' + where if where else ''} failed: {one_line(scrub_secrets(first, secrets), 160)}"
                        ) from None


# -- 3. every failure with its verdict --------------------------------------------------------------
@dataclass
class JudgedAny:
    """One failure of any foreign key with its verdict."""

    failure: AnyFailure
    verdict: str
    evidence: list[str]
    deletion: Deletion | None
    evidence_strength: str
    as_of_probes: int = 0
    path_rows: tuple[PathRow, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        f, d = self.failure, self.deletion
        return {**f.to_dict(), "verdict": self.verdict, "evidence": list(self.evidence),
                "deletion": d.to_dict() if d else None, "evidence_strength": self.evidence_strength,
                "as_of_probes": self.as_of_probes, "path_rows": [p.to_dict() for p in self.path_rows],
                # the keys a failure of the mapped relationship has too
                "kind": f.direction, "user_id": f.user_id, "deleted_at": iso_utc(d.at) if d else None,
                "deletion_transaction_id": d.transaction_id if d else None,
                "seconds_after_deletion": (f.at - d.at).total_seconds() if d else None}


@dataclass
class ConstraintFailures:
    """One constraint's failures, judged (``definition`` is None when the database has no such key)."""

    constraint: str
    definition: ForeignKeyDef | None
    failures: list[JudgedAny]
    sources: list[str] = field(default_factory=list)

    def by_verdict(self) -> dict[str, int]:
        counts = Counter(j.verdict for j in self.failures)
        return {v: counts.get(v, 0) for v in registry.names("generic")}


@dataclass
class AnyAffected:
    """Every failure of one constraint (or, grouped, of every constraint the logs name) with its verdict."""

    constraint: str | None
    groups: list[ConstraintFailures]
    window: float
    database: str
    snapshot_at: datetime | None
    files: list[str]
    skipped_lines: int = 0

    @property
    def failures(self) -> list[JudgedAny]:
        return [j for g in self.groups for j in g.failures]

    def by_verdict(self) -> dict[str, int]:
        counts = Counter(j.verdict for j in self.failures)
        return {v: counts.get(v, 0) for v in registry.names("generic")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "constraint": self.constraint,
            "failures": [j.to_dict() for j in self.failures],
            "by_verdict": self.by_verdict(),
            "by_constraint": {g.constraint: {
                "definition": g.definition.to_dict(paths=False) if g.definition else None,
                "paths": [p.name for p in g.definition.paths] if g.definition else [],
                "failures": len(g.failures), "by_verdict": g.by_verdict(), "deletion_sources": list(g.sources)}
                for g in self.groups},
            "deletion_sources": list(dict.fromkeys(x for g in self.groups for x in g.sources)),
            "window_seconds": self.window,
            "database": self.database,
            "snapshot_at": iso_utc(self.snapshot_at) if self.snapshot_at else None,
            "files": list(self.files),
            "skipped_lines": self.skipped_lines,
        }

    def text(self) -> str:
        lines = [f"database: {self.database}   window: {self.window:g} s   logs: {len(self.files)} file"
                 f"{'s' if len(self.files) != 1 else ''}"]
        if not self.groups:
            lines.append("no foreign-key violation found in the logs"
                         + (f" for {self.constraint}" if self.constraint else ""))
        names = registry.names("generic")
        width = max(len(v) for v in names)
        for g in self.groups:
            fk = g.definition
            lines += ["", f"{g.constraint}: " + (fk.describe() if fk else "not a foreign key of this database")
                      + f"   {len(g.failures)} failure{'s' if len(g.failures) != 1 else ''}"]
            counts = g.by_verdict()
            lines += [f"  {v:<{width}}  {counts[v]:>6}" for v in names if counts[v]]
            for j in g.failures:
                f = j.failure
                key = ", ".join(f"{k}={v}" for k, v in f.key.items()) or "unknown key"
                lines.append(f"  {fmt_time(f.at)}  {f.direction:<6}  ({key})  {j.verdict} [{j.evidence_strength}]")
        return "\n".join(lines)


def affected_any(db, logs_paths: logs.Paths, *, constraint: str | None = None, error: str | ParsedError | None = None,
                 window: float = config.DEFAULT_WINDOW_SECONDS, as_of: Any = None,
                 as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
                 as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS,
                 table: str | None = None, schema: str | None = None,
                 user_pattern: str | re.Pattern[str] = logs.DEFAULT_USER_PATTERN) -> AnyAffected:
    """Every failure of foreign key ``constraint`` (or the one ``error`` names) in the logs, with
    its verdict; with neither, every foreign-key violation the logs hold, grouped by constraint.

    ``db`` is an :class:`incidentkit.Database`; the mapping's audit table (when it exists) is the
    database's own deletion source for any table. Unknown constraint, or an error text that is no
    foreign-key violation: :class:`ConfigError`.
    """
    window = check_window(window)
    if not logs_paths:
        raise ConfigError("the failures are read from logs: give --logs PATH (files, globs or directories)")
    if error is not None:
        parsed = parse_error(error)
        if constraint and constraint != parsed.constraint:
            raise ConfigError(f"the constraint {constraint!r} is not the one the error names ({parsed.constraint!r})")
        constraint = parsed.constraint
        table, schema = table or parsed.table, schema or parsed.schema
    definitions: dict[str, ForeignKeyDef | None] = {}
    if constraint is not None:
        with db.read() as r:  # an unknown name fails before any log is read
            definitions[constraint] = discover(r, constraint, table=table, schema=schema)
    scan = scan_any(logs_paths, constraint, user_pattern=user_pattern,
                    definition=definitions.get(constraint) if constraint is not None else None)
    if constraint is not None and constraint not in scan.by_constraint:
        scan.by_constraint[constraint] = []
    server_files = scan.server_files()
    groups = []
    snapshot_at = None
    for name, failures in scan.by_constraint.items():
        fk = definitions.get(name)
        if fk is None and name not in definitions:
            try:
                fk = _discover_for(db, name, failures)
            except ConfigError as e:
                groups.append(ConstraintFailures(name, None, [_undecided(f, f"{e}.") for f in failures]))
                continue
        if not failures:
            groups.append(ConstraintFailures(name, fk, []))
            continue
        h = gather_histories(db, fk, failures, server_files=server_files, as_of=as_of, as_of_since=as_of_since,
                             as_of_precision=as_of_precision, window=window)
        snapshot_at = snapshot_at or h.snapshot_at
        judged = []
        for f, ev in zip(failures, h.evidence):
            d = decide_generic(ev, window)
            judged.append(JudgedAny(f, d.verdict, d.sentences, d.deletion, d.strength, ev.as_of_probes,
                                    ev.path_rows or ev.referencing_rows))
        groups.append(ConstraintFailures(name, h.fk, judged, h.sources))
    return AnyAffected(constraint, groups, window, db.describe(), snapshot_at, scan.files, scan.skipped_lines)


# -- 4. one key's timeline ---------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyEvent:
    """One thing that happened to the key: the referenced row created or deleted, a path row
    written, a failure in the logs."""

    at: datetime
    kind: str  # "created" | "deleted" | "path_row_written" | "write_failed" | "delete_refused"
    detail: str
    source: str  # "audit" | "server_log" | "as_of" | "commit_ts" | "log"

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso_utc(self.at), "kind": self.kind, "detail": self.detail, "source": self.source}


@dataclass
class KeyTimeline:
    """One key of one foreign key: its history, the rows holding it now, its failures with verdicts."""

    constraint: ForeignKeyDef
    key: dict[str, str]
    exists_now: bool
    events: list[KeyEvent]
    failures: list[JudgedAny]
    path_rows: list[PathRow]
    referencing_rows: list[PathRow]
    sources: list[str]
    snapshot_at: datetime
    database: str = ""

    def to_dict(self) -> dict[str, Any]:
        counts = Counter(j.verdict for j in self.failures)
        return {"constraint": self.constraint.name, "definition": self.constraint.to_dict(paths=False),
                "key": dict(self.key), "exists_now": self.exists_now, "events": [e.to_dict() for e in self.events],
                "failures": [j.to_dict() for j in self.failures],
                "by_verdict": {v: counts.get(v, 0) for v in registry.names("generic")},
                "path_rows": [p.to_dict() for p in self.path_rows],
                "referencing_rows": [p.to_dict() for p in self.referencing_rows],
                "deletion_sources": list(self.sources), "snapshot_at": iso_utc(self.snapshot_at),
                "database": self.database}

    def text(self) -> str:
        fk = self.constraint
        key = ", ".join(f"{k}={v}" for k, v in self.key.items())
        lines = [f"{fk.name}: {fk.describe()}", f"key ({key}) in {fk.qualified_referenced_table}: "
                 + ("exists now" if self.exists_now else "no row now"),
                 f"database: {self.database}   snapshot: {iso_utc(self.snapshot_at)}   sources: "
                 + (", ".join(self.sources) or "none")]
        for e in self.events:
            lines.append(f"  {fmt_time(e.at)}  {e.kind:<16}  {e.detail}")
        undated = [p for p in self.path_rows + self.referencing_rows if p.written_at is None]
        for p in undated:
            lines.append(f"  (undated)                {'row holds the key':<16}  {p.constraint}: {p.describe()}")
        for j in self.failures:
            lines += ["", f"Failure at {fmt_time(j.failure.at)}: {j.verdict} "
                      f"({registry.label(j.verdict, 'generic')}) [{j.evidence_strength}]"]
            lines += [f"  {s}" for s in j.evidence]
        return "\n".join(lines)


def key_timeline(db, constraint: str, key: Sequence[str], *, logs_paths: logs.Paths | None = None,
                 window: float = config.DEFAULT_WINDOW_SECONDS, as_of: Any = None,
                 as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
                 as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS,
                 table: str | None = None, schema: str | None = None) -> KeyTimeline:
    """The timeline of one key of foreign key ``constraint``: ``key`` is its values in the key's
    column order (as the error's Detail prints them). With logs, the key's failures in them, each
    with its verdict."""
    window = check_window(window)
    with db.read() as r:
        fk = discover(r, constraint, table=table, schema=schema)
        types = _column_types(r, fk.referenced_schema, fk.referenced_table)
    values = tuple(str(v) for v in key)
    if len(values) != len(fk.referenced_columns):
        raise ConfigError(f"{fk.name} has a key of {len(fk.referenced_columns)} column"
                          f"{'s' if len(fk.referenced_columns) != 1 else ''} ({', '.join(fk.referenced_columns)}): "
                          f"give {len(fk.referenced_columns)} value{'s' if len(fk.referenced_columns) != 1 else ''}, "
                          f"not {len(values)}")
    wanted = dict(zip(fk.referenced_columns, values))
    bad = [c for c, v in wanted.items() if not _typed_ok(v, types.get(c, "text"))]
    if bad:
        raise ConfigError(f"{one_line(wanted[bad[0]], 80)!r} is not a valid {types[bad[0]]} for "
                          f"{fk.qualified_referenced_table}.{bad[0]}")
    judged: list[JudgedAny] = []
    server_files: list[str] = []
    used: list[str] = []
    if logs_paths:
        scan = scan_any(logs_paths, fk.name, definition=fk)
        server_files = scan.server_files()
        mine = [f for f in scan.failures if _target(f, fk, types).referenced_key == wanted]
        if mine:
            h = gather_histories(db, fk, mine, server_files=server_files, as_of=as_of, as_of_since=as_of_since,
                                 as_of_precision=as_of_precision, window=window)
            used = h.sources
            for f, ev in zip(mine, h.evidence):
                d = decide_generic(ev, window)
                judged.append(JudgedAny(f, d.verdict, d.sentences, d.deletion, d.strength, ev.as_of_probes,
                                        ev.path_rows or ev.referencing_rows))
    facts = read_facts(db, fk, [values], referencing=True, server_files=server_files)
    kf = facts.keys[values]
    events = [KeyEvent(c.at, "created", c.how(), c.origin) for c in kf.creations]
    deletions = list(kf.deletions)
    for j in judged:  # the probes' brackets, found for the failures
        if j.deletion is not None and j.deletion.origin == "as_of" and j.deletion not in deletions:
            deletions.append(j.deletion)
    events += [KeyEvent(d.at, "deleted", d.how(), d.origin) for d in deletions]
    events += [KeyEvent(p.written_at, "path_row_written", f"{p.constraint}: {p.describe()} ({p.written_how})",
                        "commit_ts" if p.written_how.startswith("commit") else "audit")
               for p in kf.path_rows + kf.referencing_rows if p.written_at is not None]
    events += [KeyEvent(j.failure.at, "write_failed" if j.failure.direction == "insert" else "delete_refused",
                        f"{j.verdict} [{j.evidence_strength}] ({Path(j.failure.source).name} line {j.failure.line})",
                        "log") for j in judged]
    events.sort(key=lambda e: e.at)
    sources = list(dict.fromkeys(facts.sources + used))
    return KeyTimeline(fk, wanted, kf.exists_now, events, judged, kf.path_rows, kf.referencing_rows, sources,
                       facts.snapshot_at, db.describe())


def _discover_for(db, name: str, failures: Sequence[AnyFailure]) -> ForeignKeyDef:
    """The constraint a group of failures names; a name used on several tables is settled by the
    table their errors name (one table for all of them)."""
    with db.read() as r:
        try:
            return discover(r, name)
        except ConfigError:
            tables = {f.table for f in failures if f.table}
            if len(tables) != 1:
                raise
            return discover(r, name, table=tables.pop())


def _undecided(f: AnyFailure, why: str) -> JudgedAny:
    return JudgedAny(f, "insufficient_evidence",
                     [f"{fmt_time(f.at)}: a violation of {f.constraint} ({f.direction}).", why], None, "none")


__all__ = ["AnyAffected", "AnyFailure", "AnyScan", "ConstraintFailures", "Facts", "JudgedAny", "KeyEvent", "KeyEvidence",
           "KeyFacts", "KeyTimeline", "PathRow", "affected_any", "constraint_names", "decide_generic", "exists_at",
           "gather_histories", "key_timeline", "read_facts", "scan_any"]
