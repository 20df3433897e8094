"""Deletion evidence from outside the database's own tables: the logs and the database's history.

Most production databases keep no audit table. What they do have, and what :func:`gather` reads:

``server_log``
    The PostgreSQL server log, with ``log_statement = 'mod'`` (or pgaudit): every DELETE and
    INSERT on the mapped workspaces table (:mod:`incidentkit.evidence.server_log`). Read from the
    log files the failure scan recognised as PostgreSQL's own (stderr, csvlog, jsonlog), for the
    database being investigated. A statement followed by an error in its session does not count.
``app_log``
    The application's logs, through the schema map's ``[[deletions.log_events]]`` rules
    (:mod:`incidentkit.evidence.app_events`), in the files that are not server logs.
``as_of``
    Point-in-time probes (:mod:`incidentkit.evidence.asof`): for a failure whose workspace is
    missing now and whose deletion no source records, a command gives the database as it was at
    chosen instants, and the deletion is bracketed between "existed" and "gone".

:class:`Outside` holds what was found, indexed by workspace id, and says which sources were used.
The verdict rules (:mod:`incidentkit.evidence.rules`) read it through
:class:`~incidentkit.evidence.model.Evidence` like the audit table's rows.
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator

from ..exceptions import IncidentKitError

from .inputs import normalize_workspace_id
from .model import Deletion, Stamp

#: The source names, in the order they are listed.
OUTSIDE_SOURCES = ("server_log", "app_log", "as_of")
#: The log formats that are the server's own (read for statements, not for application events).
SERVER_FORMATS = ("pg_stderr", "pg_csv", "pg_json")


@dataclass
class Outside:
    """What the logs and the probes say about deletions and creations of workspaces."""

    used: list[str] = field(default_factory=list)
    deletions: dict[str, list[Deletion]] = field(default_factory=dict)
    creations: dict[str, list[Stamp]] = field(default_factory=dict)
    #: Every event read, as the JSON of the sources gives it (for ``evidence/`` and timelines).
    server_events: list[Any] = field(default_factory=list)
    app_events: list[Any] = field(default_factory=list)
    prober: Any = None
    notes: list[str] = field(default_factory=list)
    #: The probes asked, per (workspace id, failure time): ``(instant, present)`` in order.
    probed: dict[tuple[str, datetime], tuple[tuple[datetime, bool], ...]] = field(default_factory=dict)

    def workspace_deletions(self, wid: str) -> list[Deletion]:
        return list(self.deletions.get(wid, ()))

    def workspace_creations(self, wid: str) -> list[Stamp]:
        return list(self.creations.get(wid, ()))

    def probe(self, wid: str, failure_at: datetime) -> tuple[Deletion | None, datetime | None, int]:
        """Bracket the deletion of ``wid`` before ``failure_at`` with the probes: a bracketed
        :class:`Deletion`, or the instant it was absent back to, and the number of probes used."""
        if self.prober is None:
            return None, None, 0
        b = self.prober.bracket(wid, failure_at)
        self.probed[(wid, failure_at)] = tuple(b.probes)
        n = b.probe_count
        if b.existed_at is not None:
            gone = b.gone_at or failure_at
            return Deletion(gone, None, "as_of", None, after=b.existed_at, probes=n,
                            bounded_by_failure=b.gone_at is None,
                            where=(f"{n} point-in-time probe{'s' if n != 1 else ''}",)), None, n
        return None, b.absent_since, n

    def probes_for(self, wid: str | None, failure_at: datetime) -> list[tuple[str, datetime, bool]]:
        """The probes asked about ``wid`` for the failure at ``failure_at``: (id, instant, present)."""
        return [(wid, at, present) for at, present in self.probed.get((wid, failure_at), ())] if wid else []

    def describe(self) -> dict[str, Any]:
        """Counts for reports and ``run.json``."""
        return {"used": list(self.used), "server_log_events": len(self.server_events),
                "app_log_events": len(self.app_events),
                "as_of_probes": getattr(self.prober, "probes_used", 0) if self.prober is not None else 0}


def gather(m, scan=None, *, database: str | None = None, as_of: Any = None,
           as_of_since: float = 7 * 86400.0, as_of_precision: float = 0.010,
           log_line_prefix: Any = None, ahead: "ServerLogAhead | None" = None) -> Outside:
    """The deletion evidence outside the database for mapping ``m``.

    ``scan`` is the failure scan (:class:`~incidentkit.evidence.logs.LogScan`) whose files are
    read again for statements and events (its ``file_reads`` tell each file's format);
    ``database`` the database's name (server-log lines of other databases are ignored where the
    format names the database); ``as_of`` an as-of command template (``... {at} ...``) or a ready
    prober. Nothing is read for a source that cannot apply (no server log, no rules, no command).
    ``ahead``: the server logs' read, started before the failure scan (:func:`server_log_ahead`);
    used when it read the files the scan found to be server logs.
    """
    out = Outside()
    server_files, app_files = _split_files(scan)
    if server_files:
        from .server_log import scan_server_logs

        early = ahead.result(server_files, database, log_line_prefix) if ahead is not None else None
        events = (early if early is not None else
                  scan_server_logs(server_files, _watched(m), database=database, log_line_prefix=log_line_prefix)).events
        out.server_events = events
        out.used.append("server_log")
        for e in events:
            if e.table != "workspaces":
                continue
            where = tuple(f"{f}:{n}" for f, n in (e.seen_in or ((e.file, e.line),)))
            for raw in e.ids:
                wid = normalize_workspace_id(raw)
                if not wid:
                    continue
                if e.kind == "delete":
                    out.deletions.setdefault(wid, []).append(
                        Deletion(e.logged_at, None, "server_log", None, where=where, who=e.who, status=e.status))
                else:
                    out.creations.setdefault(wid, []).append(Stamp(e.logged_at, None, "server_log", where))
    if app_files and m.log_events:
        from .app_events import scan_app_events

        events = scan_app_events(app_files, m.log_events).events
        out.app_events = events
        out.used.append("app_log")
        for e in events:
            if e.table != "workspaces":
                continue
            wid = normalize_workspace_id(e.id)
            if wid:
                places = getattr(e, "seen_in", ()) or ((e.file, e.line),)
                out.deletions.setdefault(wid, []).append(
                    Deletion(e.at, None, "app_log", None, where=tuple(f"{f}:{n}" for f, n in places), who=e.actor,
                             status="application log event"))
    if as_of is not None:
        out.prober = as_of if hasattr(as_of, "bracket") else _prober(as_of, m, as_of_since, as_of_precision)
        out.used.append("as_of")
    for v in out.deletions.values():
        v.sort(key=lambda d: d.at)
    for v in out.creations.values():
        v.sort(key=lambda s: s.at)
    return out


def _prober(command: str, m, since: float, precision: float):
    from .asof import AsOfCommand, AsOfProber

    return AsOfProber(AsOfCommand(command), m, since=timedelta(seconds=since),
                      precision=timedelta(seconds=precision), progress=_probe_progress())


def _probe_progress():
    """A line per probe on a terminal (each is a branch or a restore: slow, and billed); silent
    when stderr is not a terminal."""
    import sys

    if not sys.stderr.isatty():
        return None
    count = [0]

    def show(workspace_id: str, at: datetime, present: bool) -> None:
        from ..text import fmt_time

        count[0] += 1
        sys.stderr.write(f"incidentkit: probe {count[0]}: workspace {workspace_id} "
                         f"{'existed' if present else 'absent'} at {fmt_time(at)}\n")
        sys.stderr.flush()

    return show


class ServerLogAhead:
    """The server logs among some log files, read for statements in another process while this
    one scans them for failures (two reads of the same files on two cores: with gzip, each
    decompresses them). :meth:`result` is that read's, or ``None`` when it read other files."""

    def __init__(self, files: list[str], m: Any, database: str | None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from .server_log import scan_server_logs

        self.files, self.database = files, database
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        self._future = self._pool.submit(scan_server_logs, files, _watched(m), database=database)

    def result(self, files: list[str], database: str | None, log_line_prefix: Any = None) -> Any:
        if files != self.files or database != self.database or log_line_prefix is not None:
            return None
        return self._future.result()

    def close(self) -> None:
        self._future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def server_log_ahead(logs: Any, m: Any, database: str | None) -> Iterator[ServerLogAhead | None]:
    """A :class:`ServerLogAhead` of the regular files among ``logs`` that are PostgreSQL's own
    logs (their format decided as the scan decides it), when there are cores for it; else None."""
    ahead = None
    try:
        files = _server_logs_among(logs)
        if files and _cores() > 1 and hasattr(os, "fork"):
            ahead = ServerLogAhead(files, m, database)
    except (OSError, IncidentKitError):
        ahead = None  # the scan reports what is wrong with the files
    try:
        yield ahead
    finally:
        if ahead is not None:
            ahead.close()


def _watched(m: Any) -> Any:
    """The tables whose statements the server log is read for: the workspaces (their deletions
    and creations are the evidence; memberships' are not used, and in a busy log they are many)."""
    from .server_log import watched_tables

    return tuple(t for t in watched_tables(m) if t.entity == "workspaces")


def _server_logs_among(logs: Any) -> list[str]:
    from .logs import LogScan, iter_log_files, read_log_lines

    if logs is None or isinstance(logs, LogScan):
        return []
    out = []
    for path in iter_log_files(logs):
        if not stat.S_ISREG(os.stat(path).st_mode):
            return []  # a pipe is read once, by the scan: the server log is read after it, as it was
        fmt, lines = read_log_lines(path)
        lines.close()
        if fmt in SERVER_FORMATS:
            out.append(str(path))
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _split_files(scan) -> tuple[list[str], list[str]]:
    """The scan's files: (the server's own logs, the others)."""
    if scan is None:
        return [], []
    reads: Iterable[Any] = getattr(scan, "file_reads", None) or ()
    server, app = [], []
    for r in reads:
        path, fmt = (r.path, r.format) if not isinstance(r, dict) else (r["path"], r.get("format"))
        if fmt is None:
            continue
        (server if fmt in SERVER_FORMATS else app).append(path)
    return server, app
