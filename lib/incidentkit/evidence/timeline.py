"""Per-user and per-workspace timelines: every recorded event in time order, with its source.

For one user (:func:`user_timeline`): the memberships joined and removed, each referenced
workspace created and deleted, the user row created (or its absence), primary-workspace
changes (audit ``U`` rows on users), and every failed login from the logs, each judged
(:mod:`incidentkit.evidence.rules`). For one workspace (:func:`workspace_timeline`): the same
from the workspace's side. Everything is read in one read-only snapshot (``with db.read()``),
touching only the user's or workspace's rows (see :mod:`incidentkit.db.queries`, section
"timelines and verdicts", for the indexes each read uses and the two that want an index the
reference schema lacks).

Sources of events: ``memberships``, ``workspaces``, ``users`` (the audit log, or the rows'
timestamp columns when the audit log has nothing) and ``logs``.

The logs are scanned for the database's own foreign key (from the catalog, as by
:func:`~incidentkit.evidence.affected.affected`), and a failure seen in several logs is one
failure listing every place it was seen. Failed logins are the key's insert side; a workspace's
timeline also shows the delete side (``deletion_refused``: the workspace's deletion refused
because a user still referenced it) as events, never judged.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .. import config
from ..text import as_utc, fmt_duration, fmt_time, iso_utc
from . import registry
from .affected import default_as_of, default_logs, deletion_sources, md_escape, scan_for
from .history import History, judge_failures
from .inputs import (check_user_id, check_window, check_workspace_id, id_variants, nearest_ids,
                     normalize_workspace_id)
from .logs import LogFailure, LogScan, merge_failures
from .model import Judged
from .records import records_naming
from .sources import gather, server_log_ahead

SOURCES = ("memberships", "workspaces", "users", "logs")


@dataclass
class Event:
    """One thing that happened, from one source."""

    at: datetime
    source: str  # "memberships" | "workspaces" | "users" | "logs"
    kind: str  # joined, removed, created, deleted, primary_workspace_changed, updated, login_failed, deletion_refused
    workspace_id: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso_utc(self.at), "source": self.source, "kind": self.kind,
                "workspace_id": self.workspace_id, "detail": self.detail}


@dataclass
class Timeline:
    """A user's history in time order, with a verdict for each of their failed logins."""

    user_id: str | None
    events: list[Event]
    failures: list[Judged]
    exists: bool
    notes: list[str]
    window: float = config.DEFAULT_WINDOW_SECONDS
    deletion_source: str = "audit"
    database: str = ""
    snapshot_at: datetime | None = None
    #: The foreign key's name the logs were scanned for (None when no logs were read).
    constraint: str | None = None
    #: Every deletion source used (``affected.deletion_sources``).
    deletion_sources: list[str] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"user {self.user_id}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``incidentkit timeline USER_ID --json``."""
        return {
            "user_id": self.user_id,
            "exists": self.exists,
            "events": [e.to_dict() for e in self.events],
            "failures": [j.to_dict() for j in self.failures],
            "notes": list(self.notes),
            "window": self.window,
            "deletion_source": self.deletion_source,
            "deletion_sources": list(self.deletion_sources or [self.deletion_source]),
            "database": self.database,
            "snapshot_at": iso_utc(self.snapshot_at) if self.snapshot_at else None,
            "constraint": self.constraint,
        }

    def frame(self):
        """The events as a DataFrame: at (UTC), source, kind, workspace_id, detail."""
        import pandas as pd

        return pd.DataFrame([{"at": fmt_time(e.at), "source": e.source, "kind": e.kind,
                              "workspace_id": e.workspace_id, "detail": e.detail} for e in self.events],
                            columns=["at", "source", "kind", "workspace_id", "detail"])

    def failures_frame(self):
        """The failed logins with their verdicts."""
        import pandas as pd

        return pd.DataFrame([{"at": fmt_time(j.at), "user_id": j.user_id, "workspace_id": j.workspace_id,
                              "verdict": j.verdict, "seconds_after_deletion": j.seconds_after_deletion}
                             for j in self.failures],
                            columns=["at", "user_id", "workspace_id", "verdict", "seconds_after_deletion"])

    def text(self) -> str:
        """Plain text for the terminal: the events, then each failure's verdict and evidence, then the notes."""
        lines = [f"Timeline of {self.subject} ({self.database}; window ±{self.window:g} s; deletions from: "
                 f"{', '.join(self.deletion_sources or [self.deletion_source])})", ""]
        if not self.events:
            lines.append("(no event recorded)")
        width = max((len(s) for s in SOURCES), default=0)
        for e in self.events:
            lines.append(f"{fmt_time(e.at):<31} {e.source:<{width}}  {e.kind:<25} {e.detail}")
        for j in self.failures:
            lines += ["", f"Failure at {fmt_time(j.at)}: {j.verdict} ({registry.label(j.verdict)})"]
            lines += [f"    - {s}" for s in j.evidence]
        if self.notes:
            lines += [""] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def summary_markdown(self) -> str:
        """The verdict of each failed login and its evidence, then the notes, as Markdown."""
        lines = [f"### Timeline of {self.subject}", ""]
        if not self.failures:
            lines.append(f"No failed login of {self.subject} in the logs.")
        for j in self.failures:
            lines.append(f"**Failure at {fmt_time(j.at)}** (workspace `{j.workspace_id}`): "
                         f"**`{j.verdict}`**: {registry.label(j.verdict)}.")
            lines.append("")
            lines += [f"- {md_escape(s)}" for s in j.evidence]
            lines.append("")
        if self.notes:
            lines += ["", "**Notes**", ""] + [f"- {md_escape(n)}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    # -- the picture -------------------------------------------------------------------
    def plot(self, ax=None):
        """One lane per source, the failure marked; below, a zoom on the milliseconds around it.

        The top panel is the whole history (weeks); the bottom panel shows the events around the
        (first) failure in milliseconds relative to it, the ±window shaded, and the verdict beneath.
        Returns the top Axes; the zoom is ``ax.figure.axes[1]`` (or the inset of a given ``ax``).
        """
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt

        from .redact import label

        focus = self.failures[0] if self.failures else None
        if ax is None:
            if focus is not None:
                fig, (ax, zoom) = plt.subplots(2, 1, figsize=(11, 7.2), gridspec_kw={"hspace": 0.55})
            else:
                fig, ax = plt.subplots(figsize=(11, 3.4))
                zoom = None
        else:
            zoom = ax.inset_axes([0.0, -1.55, 1.0, 1.0]) if focus is not None else None
        lanes = {s: len(SOURCES) - 1 - i for i, s in enumerate(SOURCES)}

        # Overview: the whole history.
        for e in self.events:
            style = _STYLE.get(e.kind, _STYLE["updated"])
            ax.scatter([e.at], [lanes[e.source]], marker=style[0], color=style[1], s=style[2], zorder=3,
                       edgecolors="none")
        for j in self.failures:
            ax.axvline(j.at, color="#c44e52", lw=1, ls="--", zorder=2)
        _lanes(ax, lanes)
        if self.events:
            lo, hi = min(e.at for e in self.events), max(e.at for e in self.events)
            pad = max((hi - lo) * 0.04, timedelta(hours=1))
            ax.set_xlim(lo - pad, hi + pad)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_title(label(f"Timeline of {self.subject} (UTC)" + ("" if self.exists else " (no row now)")), loc="left")
        handles = [plt.Line2D([], [], marker=_STYLE[k][0], color=_STYLE[k][1], ls="", label=name)
                   for k, name in (("created", "created / joined"), ("deleted", "deleted / removed"),
                                    ("primary_workspace_changed", "changed"), ("login_failed", "failed login"),
                                    ("present", "probe: existed"), ("absent", "probe: absent"),
                                    ("record", "log record"))
                   if k not in ("present", "absent", "record") or any(e.kind == k for e in self.events)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        if not self.events:
            ax.set_xticks([])  # no time axis to show (matplotlib would draw 1970)
            ax.text(0.5, 0.5, label(textwrap.fill(self.notes[0] if self.notes else "no event recorded", 90)),
                    transform=ax.transAxes, ha="center", va="center", color="#666", fontsize=9)
        absent = self._absent_lane()
        if absent:
            ax.text(0.005, lanes[absent[0]] + 0.12, absent[1], transform=ax.get_yaxis_transform(), fontsize=8,
                    color="#888", ha="left", va="bottom", style="italic")

        if zoom is not None and focus is not None:
            self._plot_zoom(zoom, focus, lanes)
        if ax.figure is not None and zoom is not None and ax.get_subplotspec() is not None:
            ax.figure.subplots_adjust(bottom=0.2, right=0.82)
        return ax

    def _absent_lane(self) -> tuple[str, str] | None:
        return None if self.exists else ("users", "no row in users now")

    def _plot_zoom(self, zoom, focus: Judged, lanes: dict[str, int]) -> None:
        from .redact import label

        t = focus.at
        others = [abs((e.at - t).total_seconds()) for e in self.events if e.source != "logs"]
        near = min((d for d in others if d <= max(60.0, 10 * self.window)), default=None)
        half = self.window if near is None else min(self.window, max(near * 1.6, 0.02))
        half_ms = half * 1000
        zoom.axvspan(-self.window * 1000, self.window * 1000, color="#f2c14e", alpha=0.18, zorder=0)
        zoom.axvline(0, color="#c44e52", lw=1, ls="--", zorder=2)
        shown = [e for e in self.events if abs((e.at - t).total_seconds()) <= half]
        for i, e in enumerate(shown):
            x = (e.at - t).total_seconds() * 1000
            style = _STYLE.get(e.kind, _STYLE["updated"])
            zoom.scatter([x], [lanes[e.source]], marker=style[0], color=style[1], s=style[2] * 1.3, zorder=3,
                         edgecolors="none")
            if e.kind == "record":
                continue  # a mark only: the table lists what each record says
            tag = f"{e.kind} {x:+.0f} ms" if e.source != "logs" else f"{e.kind} {fmt_time(e.at)[11:23]}"
            zoom.annotate(tag, (x, lanes[e.source]), xytext=(4, 7 if i % 2 == 0 else -12),
                          textcoords="offset points", fontsize=7.5, color="#333")
        zoom.set_xlim(-half_ms, half_ms)
        _lanes(zoom, lanes)
        zoom.set_xlabel(f"milliseconds relative to the failure at {fmt_time(t)} "
                        f"(shaded: the ±{self.window:g} s window)")
        zoom.set_title(f"Zoom: ±{fmt_duration(half)} around the failure", loc="left", fontsize=10)
        text = f"Verdict: {focus.verdict} ({registry.label(focus.verdict)})"
        detail = next((s for s in focus.evidence if "deleted" in s), "")
        if detail:
            text += "\n" + "\n".join(textwrap.wrap(detail, 120))
        zoom.text(0.0, -0.42, label(text), transform=zoom.transAxes, ha="left", va="top", fontsize=9,
                  color="#c44e52" if focus.verdict == "concurrent_deletion" else "#333")


_STYLE = {  # kind -> (marker, color, size)
    "created": ("^", "#55a868", 46),
    "joined": ("^", "#55a868", 46),
    "deleted": ("v", "#c44e52", 52),
    "removed": ("v", "#dd8452", 52),
    "primary_workspace_changed": ("o", "#4c72b0", 40),
    "updated": ("o", "#8c8c8c", 30),
    "login_failed": ("X", "#c44e52", 110),
    "record": ("d", "#6c6c6c", 26),  # a log record naming the user or the workspace
    "present": ("o", "#55a868", 22),  # a point-in-time probe found the workspace
    "absent": ("s", "#8c8c8c", 18),  # a point-in-time probe did not
}


def _lanes(ax, lanes: dict[str, int]) -> None:
    ax.set_yticks(list(lanes.values()), list(lanes.keys()))
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    for y in lanes.values():
        ax.axhline(y, color="#dddddd", lw=0.6, zorder=1)
    ax.grid(axis="x", color="#eeeeee", lw=0.6)


@dataclass
class WorkspaceTimeline(Timeline):
    """A workspace's history: its creation and deletion, its memberships, its members' rows, the failures."""

    workspace_id: str = ""

    @property
    def subject(self) -> str:
        return f"workspace {self.workspace_id}"

    def _absent_lane(self) -> tuple[str, str] | None:
        return None if self.exists else ("workspaces", "no row in workspaces now")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["workspace_id"] = self.workspace_id
        return out


# -- building ---------------------------------------------------------------------------------
def _scan(db, logs, user_pattern: str | None = None) -> tuple[LogScan | None, list[LogFailure], list[str]]:
    """The scan (for ``db``'s foreign key), its distinct failures (merged across logs), and notes."""
    if logs is None:
        return None, [], ["No logs given: failed logins are not shown (pass logs=PATHS, or --logs)."]
    scan = scan_for(db, logs, user_pattern, digest=False)  # a timeline records no manifest
    return scan, merge_failures(scan.failures), []


def _membership_events(h: History, lives) -> list[Event]:
    out = []
    for lf in lives:
        role = "primary" if lf.is_primary else "not primary"
        if lf.joined_at is not None:
            how = f"audit transaction {lf.joined_tx}" if lf.joined_tx is not None else "joined_at column"
            out.append(Event(lf.joined_at, "memberships", "joined", lf.workspace_id,
                             f"{lf.user_id} joined workspace {lf.workspace_id} (membership {lf.id}, {role}; {how})"))
        for c in h.changes_of("memberships", lf.id):
            if c.action == "U":
                out.append(Event(c.at, "memberships", "updated", lf.workspace_id,
                                 f"membership {lf.id} of {lf.user_id} changed (audit transaction {c.transaction_id})"))
        if lf.removed_at is not None:
            cascade = any(c.action == "D" and c.transaction_id == lf.removed_tx
                          for c in h.changes_of("workspaces", lf.workspace_id or ""))
            why = ", by cascade with the workspace's deletion" if cascade else ""
            out.append(Event(lf.removed_at, "memberships", "removed", lf.workspace_id,
                             f"membership {lf.id} of {lf.user_id} in workspace {lf.workspace_id} removed "
                             f"(audit transaction {lf.removed_tx}{why})"))
    return out


def _workspace_events(h: History, wids) -> list[Event]:
    out = []
    for wid in sorted(w for w in wids if w):
        for c in h.workspace_creations(wid):
            out.append(Event(c.at, "workspaces", "created", wid, f"workspace {wid} created ({c.how()})"))
        for c in h.changes_of("workspaces", wid):
            if c.action == "U":
                out.append(Event(c.at, "workspaces", "updated", wid,
                                 f"workspace {wid} changed (audit transaction {c.transaction_id})"))
        for d in h.workspace_deletions(wid):
            extra = ""
            if d.cascaded:
                extra = f", cascading {len(d.cascaded)} membership{'s' if len(d.cascaded) != 1 else ''}"
            out.append(Event(d.at, "workspaces", "deleted", wid, f"workspace {wid} deleted ({d.how()}{extra})"))
    return out


def _user_events(h: History, uid: str) -> list[Event]:
    out = []
    changes = h.changes_of("users", uid)
    row = h.users.get(uid)
    ins = [c for c in changes if c.action == "I"]
    if ins:
        c = ins[0]
        out.append(Event(c.at, "users", "created", normalize_workspace_id(c.values.get("primary_workspace_id")),
                         f"user {uid} created with primary workspace {c.values.get('primary_workspace_id')} "
                         f"(audit transaction {c.transaction_id})"))
    elif row and as_utc(row.get("created_at")):
        out.append(Event(as_utc(row["created_at"]), "users", "created", normalize_workspace_id(row.get("primary_workspace_id")),
                         f"user {uid} created with primary workspace {row.get('primary_workspace_id')} "
                         "(created_at column)"))
    later = [c for c in changes if c.action in ("U", "D")]
    for i, c in enumerate(later):
        if c.action == "D":
            out.append(Event(c.at, "users", "deleted", None, f"user {uid} deleted (audit transaction {c.transaction_id})"))
            continue
        old = c.values.get("primary_workspace_id")
        nxt = later[i + 1].values if i + 1 < len(later) else (row or {})
        new = nxt.get("primary_workspace_id", old)
        if old != new:
            out.append(Event(c.at, "users", "primary_workspace_changed", normalize_workspace_id(new),
                             f"primary workspace of {uid} changed from {old} to {new} "
                             f"(audit transaction {c.transaction_id})"))
        else:
            out.append(Event(c.at, "users", "updated", None,
                             f"user {uid} changed (audit transaction {c.transaction_id})"))
    return out


def _where(places) -> str:
    first = f"{Path(places[0][0]).name} line {places[0][1]}"
    more = len(places) - 1
    return first if not more else f"{first}, and {more} other place{'s' if more != 1 else ''}"


def _failure_events(judged: list[Judged]) -> list[Event]:
    return [Event(j.at, "logs", "login_failed", j.workspace_id,
                  f"login of {j.user_id or 'an unidentified user'} failed on the primary-workspace foreign key "
                  f"for workspace {j.workspace_id} ({_where(j.places)}); verdict {j.verdict}")
            for j in judged]


def _record_events(scan, ids, judged: list[Judged]) -> list[Event]:
    """The log records that name ``ids`` (requests, other members' actions), beside the failures."""
    if scan is None:
        return []
    skip = {(str(f), n) for j in judged for f, n in j.places}
    return [Event(r.at, "logs", "record", None, f"{r.where}: {r.text}")
            for r in records_naming(scan.files, ids, skip=skip)]


def _who_deleted(events: list[Event], window: float) -> list[Event]:
    """Each workspace deletion with the request that asked for it, when a log record names the
    workspace, says "delete" and comes within the window before it: who, where, how long before."""
    import re

    from .logs import DEFAULT_USER_PATTERN

    users = re.compile(DEFAULT_USER_PATTERN)
    records = [e for e in events if e.kind == "record" and "delete" in e.detail.lower()]
    out = []
    for e in events:
        if e.kind == "deleted" and e.source == "workspaces" and e.workspace_id:
            asked = [r for r in records if e.workspace_id in r.detail
                     and 0 <= (e.at - r.at).total_seconds() <= window]
            if asked:
                r = asked[0]
                who = users.search(r.detail.split(": ", 1)[-1])
                where = r.detail.split(": ", 1)[0]
                e = Event(e.at, e.source, e.kind, e.workspace_id,
                          f"{e.detail}; requested by {who.group(0) if who else 'a request'} ({where}, "
                          f"{fmt_duration((e.at - r.at).total_seconds())} before)")
        out.append(e)
    return out


def _near_users(db, m, uid: str, failures: list[LogFailure]) -> list[str]:
    """Users in the database or the logs whose id is close to ``uid`` (a missing prefix, another
    case, one character apart): suggestions for an id that matches nothing."""
    from ..db import queries

    with db.read() as r:
        found = queries.users_near(r, m, id_variants(uid))
    return nearest_ids(uid, found + [f.user_id for f in failures if f.user_id])


def _probe_events(h: History, judged: list[Judged]) -> list[Event]:
    """The point-in-time probes asked for these failures' workspaces: present and absent marks,
    and the bracketed deletion they found (when the database's own history recorded none)."""
    out: list[Event] = []
    outside = h.outside
    if outside is None or outside.prober is None:
        return out
    seen: set[tuple[str, datetime, bool]] = set()
    for j in judged:
        d = j.deletion
        if d is not None and d.origin == "as_of" and j.workspace_id:
            out.append(Event(d.at, "workspaces", "deleted", j.workspace_id,
                             f"workspace {j.workspace_id} deleted between {fmt_time(d.after)} and "
                             + ("the failure" if d.bounded_by_failure else fmt_time(d.at)) + f" ({d.how()})"))
        if j.workspace_id and not outside.probes_for(j.workspace_id, j.at) and not h.workspace_exists(j.workspace_id):
            outside.probe(j.workspace_id, j.at)  # for the marks: the verdict rests on the recorded deletion
        for wid, at, present in outside.probes_for(j.workspace_id, j.at):
            if (wid, at, present) in seen:
                continue
            seen.add((wid, at, present))
            out.append(Event(at, "workspaces", "present" if present else "absent", wid,
                             f"point-in-time probe: workspace {wid} {'existed' if present else 'did not exist'} "
                             f"at {fmt_time(at)}"))
    return out


def _deletion_refused_events(failures: list[LogFailure]) -> list[Event]:
    return [Event(f.at, "logs", "deletion_refused", normalize_workspace_id(f.workspace_id),
                  f"deletion of workspace {f.workspace_id} refused: a user still referenced it "
                  f"({f.constraint}; {_where(f.places)}); not a failed login, not judged")
            for f in failures]


def _sorted(events: list[Event]) -> list[Event]:
    order = {s: i for i, s in enumerate(("workspaces", "memberships", "users", "logs"))}
    return sorted(events, key=lambda e: (e.at, order.get(e.source, 9)))


def _source_notes(m, outside=None) -> list[str]:
    used = list(outside.used) if outside is not None else []
    if m.deletion_source == "none" and not used:
        return ["No deletion source: no audit table, no soft-delete column, no server log statements, no "
                "application log events and no point-in-time probes, so no deletion is shown and verdicts that "
                "need one are insufficient_evidence."]
    if m.deletion_source == "none":
        return [f"No audit table: deletions come from {', '.join(used)}."]
    if m.deletion_source == "soft_delete":
        return [f"Deletions come from the soft-delete column {m.workspaces.qualified}."
                f"{m.workspaces.columns.get('deleted_at')}; memberships' joining comes from their joined_at "
                "column and their removal is not recorded."]
    return []


def user_timeline(db, user_id: str, *, logs=None, window: float = config.DEFAULT_WINDOW_SECONDS,
                  user_pattern: str | None = None, as_of: Any = None,
                  as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
                  as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS) -> Timeline:
    """Everything recorded about ``user_id``, in time order, with a verdict for each failed login.

    ``logs``: None (the demo's log for the demo database, else no logs), a :class:`LogScan`, or
    paths (files, globs, directories), scanned with ``user_pattern`` when given. An unknown user
    is not an error: the timeline is empty and its notes say so. Deletions also come from the
    logs and, with ``as_of`` (an as-of command), from point-in-time probes, as in
    :func:`~incidentkit.evidence.affected.affected`; the probes are marked on the timeline.
    """
    uid = check_user_id(user_id)
    w = check_window(window)
    given = default_logs(db) if logs is None else logs
    m = db.schema
    with server_log_ahead(given, m, db.dbname) as ahead:  # the server logs read on another core meanwhile
        scan, failures, notes = _scan(db, given, user_pattern)
        outside = gather(m, scan, database=db.dbname, as_of=default_as_of(db) if as_of is None else as_of,
                         as_of_since=as_of_since, as_of_precision=as_of_precision, ahead=ahead)
    logins = [f for f in failures if f.kind == "insert"]
    mine = [f for f in logins if f.user_id == uid]
    userless = [f for f in logins if f.user_id is None and f.workspace_id]
    with db.read() as r:
        m = m.check(r)
        h, judged = judge_failures(r, m, mine, w, user_ids=[uid], user_history=True, outside=outside)
        my_ws = {lf.workspace_id for lf in h.memberships_of(uid)}
        candidates = [f for f in userless if normalize_workspace_id(f.workspace_id) in my_ws]
        if candidates:
            _, more = judge_failures(r, m, candidates, w, outside=outside)
            judged += [j for j in more if j.user_id == uid]
        snapshot_at = r.snapshot_at
    judged.sort(key=lambda j: (j.at, j.source, j.line))

    lives = h.memberships_of(uid)
    wids = {lf.workspace_id for lf in lives} | {j.workspace_id for j in judged}
    row = h.users.get(uid)
    wids |= {normalize_workspace_id(row.get("primary_workspace_id"))} if row else set()
    wids |= {normalize_workspace_id(c.values.get("primary_workspace_id")) for c in h.changes_of("users", uid)}
    wids &= h.looked_up_workspaces | {j.workspace_id for j in judged}
    events = (_membership_events(h, lives) + _workspace_events(h, wids) + _user_events(h, uid)
              + _failure_events(judged) + _probe_events(h, judged)
              + _record_events(scan, [uid] + sorted({j.workspace_id for j in judged if j.workspace_id}), judged))
    events = _who_deleted(events, w)
    exists = row is not None
    if not exists:
        if not lives and not h.changes_of("users", uid):
            notes.insert(0, f"User {uid} is unknown to the database: no row in users, no membership"
                            + (", no audit row." if m.deletion_source == "audit" else ".")
                            + (f" Did you mean {', '.join(near)}?" if (near := _near_users(db, m, uid, failures))
                               else ""))
        else:
            notes.insert(0, f"User {uid} has no row in users: none of their logins has succeeded "
                            "(a failed first login rolls back its insert).")
    if scan is not None and not judged:
        notes.append(f"The logs ({len(scan.files)} file{'s' if len(scan.files) != 1 else ''}) record no "
                     f"failed login of {uid}.")
    notes += _source_notes(m, outside)
    return Timeline(uid, _sorted(events), judged, exists, notes, w, m.deletion_source, db.describe(), snapshot_at,
                    scan.constraint.name if scan else None, deletion_sources(m, outside))


def workspace_timeline(db, workspace_id: str, *, logs=None, window: float = config.DEFAULT_WINDOW_SECONDS,
                       user_pattern: str | None = None, as_of: Any = None,
                       as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
                       as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS) -> WorkspaceTimeline:
    """Everything recorded about one workspace: created, deleted, memberships, members' rows, failures."""
    wid = check_workspace_id(workspace_id)
    w = check_window(window)
    given = default_logs(db) if logs is None else logs
    m = db.schema
    with server_log_ahead(given, m, db.dbname) as ahead:
        scan, failures, notes = _scan(db, given, user_pattern)
        outside = gather(m, scan, database=db.dbname, as_of=default_as_of(db) if as_of is None else as_of,
                         as_of_since=as_of_since, as_of_precision=as_of_precision, ahead=ahead)
    naming = [f for f in failures if normalize_workspace_id(f.workspace_id) == wid]
    mine = [f for f in naming if f.kind == "insert"]
    with db.read() as r:
        m = m.check(r)
        h, judged = judge_failures(r, m, mine, w, workspace_ids=[wid], scan_workspaces=[wid], outside=outside)
        snapshot_at = r.snapshot_at
    judged.sort(key=lambda j: (j.at, j.source, j.line))
    lives = h.memberships_in(wid)
    events = (_membership_events(h, lives) + _workspace_events(h, {wid}) + _failure_events(judged)
              + _probe_events(h, judged) + _deletion_refused_events([f for f in naming if f.kind == "delete"])
              + _record_events(scan, [wid], judged))
    events = _who_deleted(events, w)
    for uid in sorted({lf.user_id for lf in lives if lf.user_id}):
        row = h.users.get(uid)
        created = h.user_created_at(uid)
        if row and created:
            events.append(Event(created, "users", "created", normalize_workspace_id(row.get("primary_workspace_id")),
                                f"member {uid} has a user row, created with primary workspace "
                                f"{row.get('primary_workspace_id')} (created_at column)"))
    exists = h.workspace_exists(wid)
    if not exists and not lives and not h.changes_of("workspaces", wid) and wid not in h.workspaces:
        notes.insert(0, f"Workspace {wid} is unknown to the database: no row, no membership"
                        + (", no audit row." if m.deletion_source == "audit" else "."))
    elif not exists:
        notes.insert(0, f"Workspace {wid} does not exist now.")
    if scan is not None and not judged:
        notes.append(f"The logs record no failed login naming workspace {wid}.")
    notes += _source_notes(m, outside)
    return WorkspaceTimeline(None, _sorted(events), judged, exists, notes, w, m.deletion_source, db.describe(),
                             snapshot_at, scan.constraint.name if scan else None, deletion_sources(m, outside),
                             workspace_id=wid)
