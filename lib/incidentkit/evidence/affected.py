"""Every failed login in the logs, judged: :func:`affected` and its result, :class:`Affected`.

:func:`affected` scans the logs once (:mod:`incidentkit.evidence.logs`), reads the history of
every failure's user and workspace in one snapshot (:mod:`incidentkit.evidence.history`) and
judges each failure (:mod:`incidentkit.evidence.rules`). :class:`Affected` shows the result:
counts per verdict, text for the terminal, DataFrames and a plot for the notebooks, Markdown for
reports, and the JSON of ``incidentkit affected --json``.

The foreign key looked for comes from the database's catalog (:func:`scan_for`): the one from
the mapped users' primary-workspace column to the mapped workspaces' id. The same failure seen in
several logs is one failure listing every place it was seen
(:func:`~incidentkit.evidence.logs.merge_failures`), so every count counts distinct failures.
The delete side of the key (a workspace deleted while a user still references it) is listed
apart, in :attr:`Affected.delete_failures` (``"delete_failures"`` in the JSON): it is not a failed
login, so no login verdict is given to it and no verdict count includes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import config
from ..exceptions import ConfigError
from ..text import fmt_time, iso_utc
from . import registry
from .history import foreign_key, judge_failures
from .inputs import check_window
from .logs import DEFAULT_CONSTRAINT, ForeignKey, LogFailure, LogScan, merge_failures, scan_logs
from .model import STRENGTHS, Judged
from .sources import gather, server_log_ahead


def affected(db, logs=None, *, window: float = config.DEFAULT_WINDOW_SECONDS,
             user_pattern: str | None = None, as_of: Any = None,
             as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
             as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS, digest: bool = True) -> Affected:
    """Every failure in ``logs`` (paths, or a :class:`LogScan`) judged against ``db``, in one snapshot.

    ``logs`` None means the demo log when ``db`` is the demo database (:func:`default_logs`),
    and is an error otherwise. Deletions come from the database (audit table, soft-delete
    column) and from outside it (:func:`incidentkit.evidence.sources.gather`): the server logs
    among ``logs``, the schema map's application log events, and point-in-time probes when
    ``as_of`` (an as-of command, ``... {at} ...``) is given. ``digest=False`` leaves the logs'
    SHA-256 out of ``file_reads`` (a report's manifest records it; a look at the failures need not).
    """
    w = check_window(window)
    if logs is None:
        logs = default_logs(db)
    if as_of is None:
        as_of = default_as_of(db)
    if logs is None:
        raise ConfigError("no logs given: pass the application or PostgreSQL log files (--logs PATH)")
    m = db.schema
    with server_log_ahead(logs, m, db.dbname) as ahead:  # the server logs read on another core meanwhile
        scan = scan_for(db, logs, user_pattern, digest)
        outside = gather(m, scan, database=db.dbname, as_of=as_of, as_of_since=as_of_since,
                         as_of_precision=as_of_precision, ahead=ahead)
    failures = merge_failures(scan.failures)
    logins = [f for f in failures if f.kind == "insert"]
    with db.read() as r:
        m = m.check(r)
        h, judged = judge_failures(r, m, logins, w, outside=outside)
        snapshot_at = r.snapshot_at
    judged.sort(key=lambda j: (j.at, j.source, j.line))
    return Affected(judged, scan.skipped_lines, list(scan.files), w, db.describe(), m.deletion_source, snapshot_at,
                    [r.to_dict() for r in scan.file_reads], scan.constraint.name,
                    [f for f in failures if f.kind != "insert"], deletion_sources(m, outside), outside.describe(),
                    other_constraints(db, scan, w))


def other_constraints(db, scan: LogScan, window: float) -> list[dict[str, Any]]:
    """The other foreign keys whose violations the logs hold, each judged as any constraint is
    (:func:`incidentkit.evidence.generic.affected_any`), from the logs and the database only: no
    point-in-time probes are spent on them (``incidentkit affected --constraint NAME --as-of-command
    ...`` does that for one). The logs are read again only for the names the scan passed by; a name
    this database cannot judge (another database's constraint in a shared server log) is listed with
    a note, and never stops the run."""
    from ..exceptions import IncidentKitError

    out: list[dict[str, Any]] = []
    for name in sorted(getattr(scan, "other_constraints", ()) or ()):
        from .generic import affected_any

        try:
            result = affected_any(db, list(scan.files), constraint=name, window=window)
        except IncidentKitError as e:
            out.append({"constraint": name, "failures": [], "by_verdict": {}, "note": str(e)})
            continue
        data = result.to_dict()
        out.append({"constraint": name, "failures": data["failures"], "by_verdict": data["by_verdict"]})
    return out


def deletion_sources(m, outside) -> list[str]:
    """Every deletion source used: the database's own (``audit``, ``soft_delete``), then the
    outside ones (``server_log``, ``app_log``, ``as_of``); ``["none"]`` when there is none."""
    used = ([m.deletion_source] if m.deletion_source != "none" else []) + list(outside.used if outside else [])
    return used or ["none"]


# -- which failures ---------------------------------------------------------------------------
def load_failures(logs, user_pattern: str | None = None,
                  constraint: str | ForeignKey = DEFAULT_CONSTRAINT, digest: bool = True) -> LogScan:
    """``logs`` as a :class:`LogScan`: one already made, or the paths to scan for ``constraint``."""
    if isinstance(logs, LogScan):
        return logs
    if user_pattern:
        return scan_logs(logs, user_pattern=user_pattern, constraint=constraint, digest=digest)
    return scan_logs(logs, constraint=constraint, digest=digest)


def scan_for(db, logs, user_pattern: str | None = None, digest: bool = True) -> LogScan:
    """``logs`` scanned for ``db``'s own foreign key (:func:`~incidentkit.evidence.history.foreign_key`,
    read from the catalog in a short snapshot of its own); a :class:`LogScan` given is kept as it is."""
    if isinstance(logs, LogScan):
        return logs
    m = db.schema
    with db.read() as r:
        m = m.check(r)
        fk = foreign_key(r, m)
    return load_failures(logs, user_pattern, fk, digest)


def default_logs(db) -> Path | list[Path] | None:
    """The logs to read when none are given: the demo's log for the demo database; for the demo
    as production is, its application, server and access logs; else None."""
    name = getattr(db, "dbname", None)
    if name == config.DEMO_DATABASE:
        return config.demo_log_path()
    if name == config.DEMO_PRODUCTION_DATABASE:
        return [config.demo_log_path(), config.demo_server_log_path(), config.demo_access_log_path()]
    return None


def default_as_of(db) -> str | None:
    """The as-of command to use when none is given: the demo's snapshots for the demo as
    production is, else None (no probes)."""
    if getattr(db, "dbname", None) == config.DEMO_PRODUCTION_DATABASE:
        from ..db.demo_asof import demo_as_of_command

        return demo_as_of_command()
    return None


# -- the result -------------------------------------------------------------------------------
@dataclass
class Affected:
    """Every failed login in the logs, each with its verdict."""

    failures: list[Judged]
    skipped_lines: int
    files: list[str]
    window: float
    database: str = ""
    deletion_source: str = "audit"
    snapshot_at: datetime | None = None
    #: What reading each log file amounted to (path, size, lines read and skipped, sha256).
    file_reads: list[dict[str, Any]] = field(default_factory=list)
    #: The foreign key's name the logs were scanned for (from the catalog).
    constraint: str = DEFAULT_CONSTRAINT
    #: The key's delete-side violations (a workspace deleted while still referenced): listed, not judged.
    delete_failures: list[LogFailure] = field(default_factory=list)
    #: Every deletion source used (:func:`deletion_sources`).
    deletion_sources: list[str] = field(default_factory=list)
    #: What the outside sources read (events found, probes used).
    outside: dict[str, Any] = field(default_factory=dict)
    #: The other foreign keys violated in the same logs, each judged (:func:`other_constraints`).
    others: list[dict[str, Any]] = field(default_factory=list)

    def by_verdict(self) -> dict[str, int]:
        counts = {v: 0 for v in registry.NAMES}
        for j in self.failures:
            counts[j.verdict] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``incidentkit affected --json``."""
        return {
            "failures": [j.to_dict() for j in self.failures],
            "by_verdict": self.by_verdict(),
            "skipped_lines": self.skipped_lines,
            "files": list(self.files),
            "window": self.window,
            "deletion_source": self.deletion_source,
            "deletion_sources": list(self.deletion_sources or [self.deletion_source]),
            "snapshot_at": iso_utc(self.snapshot_at) if self.snapshot_at else None,
            "constraint": self.constraint,
            "delete_failures": [f.to_dict() for f in self.delete_failures],
            "other_constraints": list(self.others),
        }

    def headline(self) -> dict[str, Any]:
        """The figures a report's index keeps: failure count, affected users, counts per verdict."""
        strengths = {s: 0 for s in STRENGTHS}
        for j in self.failures:
            strengths[j.evidence_strength] = strengths.get(j.evidence_strength, 0) + 1
        return {"failures": len(self.failures),
                "users": sorted({j.user_id for j in self.failures if j.user_id}),
                "by_verdict": self.by_verdict(), "by_strength": strengths,
                "deletion_sources": list(self.deletion_sources or [self.deletion_source])}

    def text(self) -> str:
        """Plain text for the terminal: counts per verdict, then each failure with its evidence."""
        counts = self.by_verdict()
        width = max(len(v) for v in registry.NAMES)
        lines = [f"{len(self.failures)} failed login{'s' if len(self.failures) != 1 else ''} in "
                 f"{len(self.files)} file{'s' if len(self.files) != 1 else ''} ({self.skipped_lines} lines skipped); "
                 f"window ±{self.window:g} s; deletions from: {', '.join(self.deletion_sources or [self.deletion_source])}; "
                 f"constraint {self.constraint}", ""]
        lines += [f"{v:<{width}}  {counts[v]:>6}" for v in registry.NAMES]
        for j in self.failures:
            delay = "" if j.seconds_after_deletion is None else f"  ({j.seconds_after_deletion:+.3f} s after deletion)"
            lines += ["", f"{fmt_time(j.at)}  {j.user_id or '-'}  {j.workspace_id or '-'}  {j.verdict}{delay}  "
                          f"[{j.evidence_strength}{', ' + j.deletion.origin if j.deletion else ''}"
                          f"{f', {j.as_of_probes} probes' if j.as_of_probes else ''}]"]
            if len(j.places) > 1:
                lines.append(f"    seen in {len(j.places)} places: " + ", ".join(f"{f}:{n}" for f, n in j.places))
            lines += [f"    - {s}" for s in j.evidence]
        for o in self.others:
            n = len(o["failures"])
            counts = ", ".join(f"{v} {k}" for k, v in o["by_verdict"].items() if v)
            lines += ["", f"Also in these logs: {n} violation{'s' if n != 1 else ''} of {o['constraint']}"
                          + (f" ({counts})" if counts else "") + (f"; {o['note']}" if o.get("note") else "")
                          + f" (incidentkit affected --constraint {o['constraint']})"]
        if self.delete_failures:
            n = len(self.delete_failures)
            lines += ["", f"{n} deletion{'s' if n != 1 else ''} refused by the same foreign key "
                          "(a workspace still referenced by a user; not failed logins, not judged):"]
            lines += [f"{fmt_time(f.at)}  workspace {f.workspace_id or '-'}  "
                      + ", ".join(f"{src}:{line}" for src, line in f.places) for f in self.delete_failures]
        return "\n".join(lines)

    def frame(self):
        """One row per failure: time, user, workspace, verdict, seconds after the deletion, where logged."""
        import pandas as pd

        cols = ["at", "user_id", "workspace_id", "verdict", "seconds_after_deletion", "deletion_source",
                "evidence_strength", "source", "line"]
        return pd.DataFrame([{"at": fmt_time(j.at), "user_id": j.user_id, "workspace_id": j.workspace_id,
                              "verdict": j.verdict, "seconds_after_deletion": j.seconds_after_deletion,
                              "deletion_source": j.deletion.origin if j.deletion else "",
                              "evidence_strength": j.evidence_strength,
                              "source": Path(j.source).name if j.source else "", "line": j.line}
                             for j in self.failures], columns=cols)

    def by_verdict_frame(self):
        """Every verdict with its count (zeros included) and what it means."""
        import pandas as pd

        counts = self.by_verdict()
        return pd.DataFrame({"verdict": list(registry.NAMES), "failures": [counts[v] for v in registry.NAMES],
                             "meaning": [v.label for v in registry.VERDICTS]})

    def delay_frame(self):
        """Per failure with a known deletion: seconds from the workspace's deletion to the failure."""
        import pandas as pd

        rows = [{"at": fmt_time(j.at), "user_id": j.user_id, "workspace_id": j.workspace_id, "verdict": j.verdict,
                 "deleted_at": fmt_time(j.deleted_at), "deletion_transaction_id": j.transaction_id,
                 "seconds_after_deletion": j.seconds_after_deletion}
                for j in self.failures if j.deleted_at is not None]
        return pd.DataFrame(rows, columns=["at", "user_id", "workspace_id", "verdict", "deleted_at",
                                           "deletion_transaction_id", "seconds_after_deletion"])

    def summary_markdown(self, limit: int | None = 30) -> str:
        """Each failure's verdict and evidence, as Markdown (the first ``limit`` failures)."""
        if not self.failures:
            return "_No failed login in the logs._"
        parts = []
        shown = self.failures if limit is None else self.failures[:limit]
        for j in shown:
            parts.append(f"**`{j.verdict}`**: {md_escape(j.user_id or 'unidentified user')}, workspace "
                         f"`{j.workspace_id}`, {fmt_time(j.at)}\n\n" + "\n".join(f"- {md_escape(s)}" for s in j.evidence))
        if len(shown) < len(self.failures):
            parts.append(f"_... and {len(self.failures) - len(shown)} more failures (see the table above, or "
                         "`incidentkit affected --json`)._")
        return "\n\n".join(parts)

    def plot_delays(self, ax=None):
        """Where each failure falls relative to its workspace's deletion (symmetric-log seconds), by verdict."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 3.2))
        rows = [(j.verdict, j.seconds_after_deletion) for j in self.failures if j.deleted_at is not None]
        ax.axvspan(-self.window, self.window, color="#f2c14e", alpha=0.25,
                   label=f"±{self.window:g} s window (concurrent deletion)")
        ax.axvline(0, color="#444444", lw=0.8)
        verdicts = [v for v in registry.NAMES if any(r[0] == v for r in rows)] or ["concurrent_deletion"]
        for i, v in enumerate(verdicts):
            xs = [s for verdict, s in rows if verdict == v]
            if xs:
                ys = [i + ((k * 0.618) % 1 - 0.5) * 0.35 for k in range(len(xs))] if len(xs) > 1 else [i]
                ax.scatter(xs, ys, color=registry.get(v).color, s=36, zorder=3, alpha=0.85, label=f"{v} ({len(xs)})")
        ax.set_yticks(range(len(verdicts)), verdicts)
        ax.set_ylim(-0.8, len(verdicts) - 0.2)
        ax.set_xscale("symlog", linthresh=0.1, linscale=0.6)
        reach = max([abs(x) for _, x in rows] + [self.window * 3])
        ax.set_xlim(-reach * 1.4, reach * 1.4)
        ticks = [0.0] + [s * k for k in (1, 60, 3600, 86400, 7 * 86400, 30 * 86400) for s in (-1, 1)
                         if k <= reach * 1.4] + [-self.window, self.window]
        ticks = sorted(set(ticks))
        ax.set_xticks(sorted(ticks), [_tick(x) for x in sorted(ticks)])
        ax.set_xlabel("seconds from the workspace's deletion to the failure (symmetric log; < 0: failure first)")
        ax.set_title(f"Failures by time since their workspace's deletion ({len(rows)} of {len(self.failures)} "
                     "with a known deletion)")
        if not rows:
            ax.text(0.5, 0.5, "no failure has a recorded deletion", transform=ax.transAxes, ha="center",
                    va="center", color="#666666")
        ax.legend(loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(1.01, 1.0))
        ax.figure.tight_layout()
        return ax


# -- helpers ---------------------------------------------------------------------------------
def md_escape(text: str) -> str:
    """Markdown-safe text: backslashes, asterisks and underscores shown literally."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def _tick(seconds: float) -> str:
    if seconds == 0:
        return "0"
    sign = "−" if seconds < 0 else "+"
    s = abs(seconds)
    for size, unit in ((30 * 86400, "30 d"), (7 * 86400, "7 d"), (86400, "1 d"), (3600, "1 h"), (60, "1 min")):
        if s >= size:
            return sign + unit
    return f"{sign}{s:g} s"
