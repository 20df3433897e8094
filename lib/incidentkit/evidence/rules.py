"""The verdict rule: which verdict a failed login gets, decided from its evidence alone.

:func:`judge` is a pure function of an :class:`~incidentkit.evidence.model.Evidence` value (no
database, no clock, no I/O), so every branch is tested from hand-built evidence. It returns the
verdict's name (one of :mod:`incidentkit.evidence.registry`) and the sentences that decide it,
each a fact a reviewer can check against the timeline: times in UTC with milliseconds, ids, audit
transaction ids. The evidence is gathered by :mod:`incidentkit.evidence.history`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from .. import config
from ..text import fmt_duration, fmt_time
from . import registry
from .inputs import check_window
from .model import DELETION_ORIGINS, Deletion, Evidence


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` concludes: the verdict, the sentences behind it, the deletion it rests
    on (None when it rests on none) and how strong the evidence is (``model.STRENGTHS``)."""

    verdict: str
    sentences: list[str]
    deletion: Deletion | None
    strength: str


def decide(evidence: Evidence, window: float = config.DEFAULT_WINDOW_SECONDS) -> Decision:
    """:func:`judge` with the deletion the verdict rests on and the evidence's strength. Pure."""
    verdict, sentences, deletion, strength = _decide(evidence, check_window(window))
    return Decision(registry.get(verdict).name, sentences, deletion, strength)


def judge(evidence: Evidence, window: float = config.DEFAULT_WINDOW_SECONDS) -> tuple[str, list[str]]:
    """The verdict for one failure and the sentences that decide it. Pure: no I/O.

    Order of the rule: no usable workspace id -> ``insufficient_evidence``; a membership
    referencing the workspace while it has no row -> ``orphaned_membership``; a deletion within
    ``window`` seconds of the failure (inclusive, either side) -> ``concurrent_deletion``; the
    workspace exists now -> ``membership_before_workspace`` when it was created after the failure,
    else ``insufficient_evidence``; no deletion source -> ``insufficient_evidence``; created only
    after the failure -> ``membership_before_workspace``; deleted earlier than the window ->
    ``stale_read`` (or ``orphaned_membership`` when the login's membership outlived the workspace
    past the failure); no creation and no deletion recorded -> ``workspace_never_existed``;
    anything else -> ``insufficient_evidence``.

    A bracketed deletion (point-in-time probes: existed at t1, gone at t2) counts as within the
    window only when the whole bracket is, and as earlier than the window only when all of it
    is; a bracket across the window's edge decides nothing. Absence at every probe back to a
    time (no creation, no deletion found) is ``workspace_never_existed`` as far as the probes
    reach. Without an audit log the logs' deletions decide concurrency and staleness, but not
    "never existed": a log covers only its own time.
    """
    d = decide(evidence, window)
    return d.verdict, d.sentences


def _decide(ev: Evidence, w: float) -> tuple[str, list[str], Deletion | None, str]:
    """The rule's branches, in the order :func:`judge` states; ``w`` is the checked window.
    Returns the verdict, its sentences, the deletion it rests on and the evidence's strength."""
    t = ev.failure_at
    user = ev.user_id or "an unidentified user"
    ws = ev.workspace_id
    where = f" ({Path(ev.source).name} line {ev.line})" if ev.source else ""
    out = [f"{fmt_time(t)}: the login of {user} failed on the primary-workspace foreign key"
           + (f" for workspace {ws}" if ws else "") + where + "."]
    out += list(ev.notes)

    if not ws:
        return "insufficient_evidence", out + [
            "The log record names no workspace id, so nothing can be checked in the database."], None, "none"
    if not ev.workspace_id_valid:
        return "insufficient_evidence", out + [
            f"The workspace id {ws!r} in the log is not a valid key of the workspaces table."], None, "none"

    created_before = sorted((c for c in ev.creations if c.at <= t), key=lambda c: c.at)
    created_after = sorted((c for c in ev.creations if c.at > t), key=lambda c: c.at)
    near = sorted((d for d in ev.deletions if _within(d, t, w)), key=lambda d: (_RANK[d.origin], _distance(d, t)))
    membership = ev.membership

    def creation_sentence() -> list[str]:
        if created_before:
            c = created_before[-1]
            return [f"{fmt_time(c.at)}: workspace {ws} was created ({c.how()}), {_relative(c.at, t)}."]
        return []

    def membership_sentence() -> list[str]:
        if membership is None:
            if ev.user_id:
                return [f"No membership of {ev.user_id} in workspace {ws} is recorded."]
            return []
        m = membership
        joined = (f"joined {fmt_time(m.joined_at)}" + (f" (audit transaction {m.joined_tx})" if m.joined_tx else "")
                  if m.joined_at else "joined at an unknown time")
        s = f"The login relied on membership {m.id} of {m.user_id} in workspace {ws}, {joined}"
        if m.removed_at is not None:
            s += (f"; it was removed {fmt_time(m.removed_at)}"
                  + (f" in audit transaction {m.removed_tx}" if m.removed_tx is not None else "")
                  + f", {_relative(m.removed_at, t)}.")
        elif m.exists_now:
            s += "; it still exists."
        else:
            s += "; its removal is not recorded."
        return [s]

    def deletion_sentences(d: Deletion) -> list[str]:
        if d.after is not None:
            s = [f"Workspace {ws} existed at {fmt_time(d.after)} ({_relative(d.after, t)}) and was gone "
                 + ("by the failure" if d.bounded_by_failure else f"at {fmt_time(d.at)} ({_relative(d.at, t)})")
                 + f": deleted in between ({d.how()})."]
        else:
            s = [f"{fmt_time(d.at)}: workspace {ws} was deleted ({d.how()}), {_relative(d.at, t)}."]
        if d.cascaded:
            ids = [f"{mid} ({uid})" for mid, uid in d.cascaded]
            s.append(f"The same transaction {d.transaction_id} removed {len(ids)} membership"
                     f"{'s' if len(ids) != 1 else ''} by cascade: {short_list(ids)}.")
        elif d.cascaded is not None and d.origin == "audit":
            s.append(f"Transaction {d.transaction_id} removed no membership with it.")
        return s

    def corroboration(d: Deletion) -> list[str]:
        """The other sources that saw the same deletion (within the window of it)."""
        others = [x for x in ev.deletions if x is not d and x.origin != d.origin
                  and abs((x.at - d.at).total_seconds()) <= w]
        return [f"Also seen: {x.how()}, {fmt_time(x.at)}." for x in others]

    # 1. a membership that references the missing workspace now
    if ev.orphans and not ev.workspace_row:
        out += [f"Membership{'s' if len(ev.orphans) != 1 else ''} {short_list(list(ev.orphans))} still "
                f"reference{'s' if len(ev.orphans) == 1 else ''} workspace {ws}, which has no row in workspaces: "
                "an orphan the foreign key should have prevented (a restore with triggers disabled, a dropped "
                "or NOT VALID constraint?). Every login through it fails the same way until it is removed."]
        d = ev.nearest_deletion()
        if d is not None:
            out += deletion_sentences(d)
        out += creation_sentence() + membership_sentence()
        return "orphaned_membership", out, d, "recorded"

    # 2. deleted within the window
    if near:
        d = near[0]
        out += deletion_sentences(d)
        out.append(f"That is within the {w:g} s window around the failure: the workspace was deleted while "
                   "the login ran (it read the membership, then inserted the user after the deletion).")
        out += corroboration(d) + membership_sentence() + creation_sentence()
        return "concurrent_deletion", out, d, d.strength

    # 3. the workspace exists now
    if ev.workspace_exists:
        if created_after and not created_before:
            c = created_after[0]
            out.append(f"{fmt_time(c.at)}: workspace {ws} was created ({c.how()}), {_relative(c.at, t)}: "
                       "it exists now, but did not exist yet when the login ran.")
            out += membership_sentence()
            return "membership_before_workspace", out, None, "recorded"
        if created_before:
            out += creation_sentence()
            out.append(f"Workspace {ws} exists now and no deletion of it is recorded within {w:g} s of the "
                       "failure: its history does not explain the violation (was the workspace id in the log "
                       "right? was the database restored?).")
        else:
            out.append(f"Workspace {ws} exists now, but when it was created is not recorded, so whether it "
                       "existed at the failure cannot be told.")
        out += membership_sentence()
        return "insufficient_evidence", out, None, "none"

    # 4. missing now
    if ev.deletion_source == "none" and not ev.outside_sources:
        out.append(f"Workspace {ws} has no row now, and there is no deletion source (no audit table, no "
                   "soft-delete column, no server log statements, no application log events, no point-in-time "
                   "probes): when it was deleted, or whether it ever existed, cannot be told. See \"Using it on "
                   "production\" in the README for the sources to turn on.")
        out += creation_sentence() + membership_sentence()
        return "insufficient_evidence", out, None, "none"

    if created_after and not created_before:
        c = created_after[0]
        out.append(f"{fmt_time(c.at)}: workspace {ws} was created ({c.how()}), {_relative(c.at, t)}: "
                   "it did not exist yet when the login ran.")
        later = [d for d in ev.deletions if d.at >= c.at]
        if later:
            out += deletion_sentences(later[0])
        out += membership_sentence()
        return "membership_before_workspace", out, later[0] if later else None, "recorded"

    before = sorted((d for d in ev.deletions if (d.at - t).total_seconds() < -w), key=lambda d: d.at)
    straddling = [d for d in ev.deletions if not _within(d, t, w) and (d.at - t).total_seconds() >= -w
                  and (d.earliest - t).total_seconds() <= w]
    if before:
        d = before[-1]
        recreated = [c for c in ev.creations if d.at < c.at <= t]
        out += deletion_sentences(d)
        if recreated:
            c = recreated[-1]
            out.append(f"{fmt_time(c.at)}: workspace {ws} was created again ({c.how()}), {_relative(c.at, t)}: "
                       "it existed when the login ran, so its history does not explain the violation.")
            out += membership_sentence()
            return "insufficient_evidence", out, d, "none"
        if membership is not None and membership.removed_at is not None and \
                (membership.removed_at - t).total_seconds() > w:
            out += membership_sentence()
            out.append(f"The membership outlived workspace {ws} until after the failure: it was an orphan when "
                       "the login read it.")
            return "orphaned_membership", out, d, d.strength
        out += membership_sentence()
        out.append(f"The workspace was gone {fmt_duration((t - d.at).total_seconds())} before the failure, "
                   f"longer than the {w:g} s window: the login read a membership that no longer existed "
                   "(a read replica, a long-running transaction or a cache).")
        out += corroboration(d) + creation_sentence()
        return "stale_read", out, d, d.strength

    if straddling:
        d = straddling[0]
        out += deletion_sentences(d)
        out.append(f"That interval reaches across the edge of the {w:g} s window around the failure, so whether "
                   "the deletion was concurrent or earlier cannot be told (probe with a finer --as-of-precision).")
        out += membership_sentence()
        return "insufficient_evidence", out, d, "none"

    after = sorted((d for d in ev.deletions if (d.at - t).total_seconds() > w), key=lambda d: d.at)
    if after:
        out += creation_sentence()
        out += deletion_sentences(after[0])
        out.append(f"Workspace {ws} existed when the login ran and was deleted only later (beyond the {w:g} s "
                   "window): its history does not explain the violation.")
        out += membership_sentence()
        return "insufficient_evidence", out, after[0], "none"

    if not ev.creations and ev.absent_since is not None:
        out.append(f"Workspace {ws} has no row now and was absent at every point-in-time probe back to "
                   f"{fmt_time(ev.absent_since)} ({ev.as_of_probes} probe{'s' if ev.as_of_probes != 1 else ''}): "
                   "it never existed in the history the probes reach.")
        out += membership_sentence()
        return "workspace_never_existed", out, None, "inferred"

    if not ev.creations and ev.deletion_source == "none":
        used = ", ".join(ev.outside_sources)
        out.append(f"Workspace {ws} has no row now and no deletion of it is found in the sources used ({used}). "
                   "Logs cover only their own time, so this does not show that it never existed; an as-of "
                   "command (--as-of-command) would probe the database's history.")
        out += membership_sentence()
        return "insufficient_evidence", out, None, "none"

    if not ev.creations:
        if ev.deletion_source == "soft_delete":
            out.append(f"Workspace {ws} has no row in workspaces; with soft deletes a deleted workspace keeps "
                       "its row (deleted_at), so it never existed (unless deleted rows are also purged).")
        else:
            since = f" (its earliest workspace creation is at {fmt_time(ev.audit_since)})" if ev.audit_since else \
                " (it records no workspace creation at all)"
            out.append(f"Workspace {ws} has no row in workspaces and the audit log holds no row of it: it was "
                       f"never created nor deleted while the audit log recorded{since}.")
        out += membership_sentence()
        return "workspace_never_existed", out, None, "inferred"

    out += creation_sentence()
    out.append(f"Workspace {ws} has no row now, but no deletion of it is recorded: the deletion sources miss "
               "it (audit trigger disabled, audit rows purged, a hard delete despite soft deletes, a log that "
               "does not cover the time?).")
    out += membership_sentence()
    return "insufficient_evidence", out, None, "none"


#: Which source a verdict rests on when several saw the deletion: the database's own record first,
#: then the statement the server logged, the application's event, the probes' bracket.
_RANK = {origin: i for i, origin in enumerate(DELETION_ORIGINS)}


def _within(d: Deletion, t: datetime, w: float) -> bool:
    """The whole of the deletion (its bracket, for probes) lies within ``w`` seconds of ``t``."""
    return (d.earliest - t).total_seconds() >= -w and (d.at - t).total_seconds() <= w


def _distance(d: Deletion, t: datetime) -> float:
    return min(abs((d.at - t).total_seconds()), abs((d.earliest - t).total_seconds()))


# -- sentence helpers --------------------------------------------------------------------
def _relative(at: datetime, t: datetime) -> str:
    """``46 ms before the failure`` / ``2 s after the failure`` / ``at the same instant as the failure``."""
    delta = (at - t).total_seconds()
    if delta == 0:
        return "at the same instant as the failure"
    return f"{fmt_duration(delta)} {'before' if delta < 0 else 'after'} the failure"


def short_list(ids: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` / ``a, b, c, d, e and 3 more``: at most ``limit`` ids."""
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
