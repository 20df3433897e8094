"""A verdict for every failed login: why did the user's insert find no workspace?

Each failure the logs record (:class:`incidentkit.logs.LogFailure`) gets exactly one of
:data:`VERDICTS`, decided by a pure rule, :func:`judge`, from an :class:`Evidence` record:

``concurrent_deletion``
    the workspace was deleted within ``window`` seconds of the failure (either side: the
    application's and the database's clocks differ) -- the race of the 2025-10-08 report;
``stale_read``
    the workspace, and the membership the login relied on, were gone before that window: the
    login read old data (a replica, a long transaction, a cache);
``orphaned_membership``
    a membership still references the missing workspace (or outlived it past the failure);
``workspace_never_existed``
    no trace of the workspace being created or deleted;
``membership_before_workspace``
    the workspace was created only after the failure;
``insufficient_evidence``
    what is known does not decide it; the evidence says what is missing.

Every verdict carries its evidence as sentences a reviewer can check against the timeline:
times (UTC, milliseconds), ids and audit transaction ids.

The evidence is gathered by :func:`collect` in one read-only snapshot, batched: one query per
kind of row for all the failures' distinct user and workspace ids (``= any(%(ids)s)``), never
one query per failure, never a whole table. Deletion times come from the audit log
(``D`` rows; the cascade's membership rows share the workspace's transaction id), from a
soft-delete column, or from nothing at all (``[deletions] source = "none"``), in which case the
verdicts say so. See :mod:`incidentkit.queries` (section "timelines and verdicts") for the
indexes each read relies on, and the two reads that want an index the reference schema lacks.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .. import config
from ..db import queries
from ..exceptions import ConfigError
from ..text import as_utc, fmt_duration, fmt_time, iso_utc  # noqa: F401  (re-used by timeline)
from .logs import LogFailure, LogScan

VERDICTS: tuple[str, ...] = (
    "concurrent_deletion",
    "stale_read",
    "orphaned_membership",
    "workspace_never_existed",
    "membership_before_workspace",
    "insufficient_evidence",
)
#: One line per verdict, for tables and legends.
VERDICT_LABELS = {
    "concurrent_deletion": "workspace deleted while the login ran",
    "stale_read": "login read data already gone (replica, long transaction, cache)",
    "orphaned_membership": "a membership references a missing workspace",
    "workspace_never_existed": "no trace of the workspace ever existing",
    "membership_before_workspace": "workspace created only after the failure",
    "insufficient_evidence": "not decidable from what is recorded",
}
#: A workspace's cascade removes its memberships in the same statement: their audit rows are
#: looked for within this many seconds of the workspace's own (then matched on the transaction id).
CASCADE_SPAN_SECONDS = 3600.0

_UUID_RX = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_USER_ID_LENGTH = 256


# -- validation ---------------------------------------------------------------------------
def check_user_id(user_id: Any) -> str:
    """``user_id`` unchanged if it can be a user id; :class:`ConfigError` otherwise."""
    if not isinstance(user_id, str) or not user_id:
        raise ConfigError("the user id is empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ConfigError(f"the user id is longer than {MAX_USER_ID_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in user_id):
        raise ConfigError(f"the user id {user_id[:80]!r} contains whitespace or control characters")
    return user_id


def is_workspace_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_UUID_RX.fullmatch(value))


def check_workspace_id(workspace_id: Any) -> str:
    """The workspace id in canonical (lower-case) UUID form; :class:`ConfigError` when it is not a UUID."""
    if not is_workspace_id(workspace_id):
        shown = workspace_id[:80] if isinstance(workspace_id, str) else workspace_id
        raise ConfigError(f"the workspace id {shown!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return str(uuid.UUID(workspace_id))


def check_window(window: Any) -> float:
    """The window in seconds as a float; :class:`ConfigError` unless a positive finite number."""
    if isinstance(window, bool) or not isinstance(window, (int, float)):
        raise ConfigError(f"the window must be a number of seconds (got {window!r})")
    value = float(window)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"the window must be a positive, finite number of seconds (got {window!r})")
    return value


# -- formatting ---------------------------------------------------------------------------


def _relative(at: datetime, t: datetime) -> str:
    """``46 ms before the failure`` / ``2 s after the failure`` / ``at the same instant as the failure``."""
    delta = (at - t).total_seconds()
    if delta == 0:
        return "at the same instant as the failure"
    return f"{fmt_duration(delta)} {'before' if delta < 0 else 'after'} the failure"


def _short(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


# -- evidence records (the rule's input) ----------------------------------------------------
@dataclass(frozen=True)
class Stamp:
    """When a row came to be: an audit ``I`` row (with its transaction) or a timestamp column."""

    at: datetime
    transaction_id: int | None = None
    origin: str = "audit"  # "audit" | "column"

    def how(self) -> str:
        if self.origin == "audit":
            return f"audit transaction {self.transaction_id}" if self.transaction_id is not None else "audit log"
        return "its created_at column"


@dataclass(frozen=True)
class Deletion:
    """One deletion of a workspace: an audit ``D`` row with its transaction, or a soft-delete time."""

    at: datetime
    transaction_id: int | None = None
    origin: str = "audit"  # "audit" | "soft_delete"
    #: Memberships removed in the same transaction (by the cascade): (membership id, user id).
    cascaded: tuple[tuple[str, str | None], ...] | None = None

    def how(self) -> str:
        if self.origin == "audit":
            return f"audit transaction {self.transaction_id}"
        return "soft-delete column deleted_at"


@dataclass(frozen=True)
class MembershipLife:
    """One membership's life: joined (audit ``I`` or joined_at), removed (audit ``D``), or still there."""

    id: str
    workspace_id: str | None
    user_id: str | None
    joined_at: datetime | None = None
    joined_tx: int | None = None
    removed_at: datetime | None = None
    removed_tx: int | None = None
    exists_now: bool = False
    is_primary: bool | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything :func:`judge` needs about one failure; built by :func:`evidence_for` or by hand in tests."""

    failure_at: datetime
    workspace_id: str | None
    user_id: str | None = None
    deletion_source: str = "audit"
    #: The workspace has a row now (soft-deleted or not).
    workspace_row: bool = False
    #: The workspace exists now: it has a row and that row is not soft-deleted.
    workspace_exists: bool = False
    creations: tuple[Stamp, ...] = ()
    deletions: tuple[Deletion, ...] = ()
    #: The membership the login relied on (the user's membership in the workspace), if found.
    membership: MembershipLife | None = None
    #: Memberships (ids) that reference the workspace now although it has no row (the user's,
    #: or anyone's when the user is not known).
    orphans: tuple[str, ...] = ()
    #: The earliest workspace creation the audit log records (how far back "no trace" reaches).
    audit_since: datetime | None = None
    workspace_id_valid: bool = True
    #: Facts found while gathering, stated as sentences (e.g. how the user was found).
    notes: tuple[str, ...] = ()
    source: str = ""
    line: int = 0

    def nearest_deletion(self) -> Deletion | None:
        """The deletion closest in time to the failure (None when none is known)."""
        if not self.deletions:
            return None
        return min(self.deletions, key=lambda d: abs((d.at - self.failure_at).total_seconds()))


# -- the rule --------------------------------------------------------------------------------
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
    """
    w = check_window(window)
    ev = evidence
    t = ev.failure_at
    user = ev.user_id or "an unidentified user"
    ws = ev.workspace_id
    where = f" ({Path(ev.source).name} line {ev.line})" if ev.source else ""
    out = [f"{fmt_time(t)}: the login of {user} failed on the primary-workspace foreign key"
           + (f" for workspace {ws}" if ws else "") + where + "."]
    out += list(ev.notes)

    if not ws:
        return "insufficient_evidence", out + [
            "The log record names no workspace id, so nothing can be checked in the database."]
    if not ev.workspace_id_valid:
        return "insufficient_evidence", out + [
            f"The workspace id {ws!r} in the log is not a valid key of the workspaces table."]

    created_before = sorted((c for c in ev.creations if c.at <= t), key=lambda c: c.at)
    created_after = sorted((c for c in ev.creations if c.at > t), key=lambda c: c.at)
    near = sorted((d for d in ev.deletions if abs((d.at - t).total_seconds()) <= w),
                  key=lambda d: abs((d.at - t).total_seconds()))
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
        s = [f"{fmt_time(d.at)}: workspace {ws} was deleted ({d.how()}), {_relative(d.at, t)}."]
        if d.cascaded:
            ids = [f"{mid} ({uid})" for mid, uid in d.cascaded]
            s.append(f"The same transaction {d.transaction_id} removed {len(ids)} membership"
                     f"{'s' if len(ids) != 1 else ''} by cascade: {_short(ids)}.")
        elif d.cascaded is not None and d.origin == "audit":
            s.append(f"Transaction {d.transaction_id} removed no membership with it.")
        return s

    # 1. a membership that references the missing workspace now
    if ev.orphans and not ev.workspace_row:
        out += [f"Membership{'s' if len(ev.orphans) != 1 else ''} {_short(list(ev.orphans))} still "
                f"reference{'s' if len(ev.orphans) == 1 else ''} workspace {ws}, which has no row in workspaces: "
                "an orphan the foreign key should have prevented (a restore with triggers disabled, a dropped "
                "or NOT VALID constraint?). Every login through it fails the same way until it is removed."]
        d = ev.nearest_deletion()
        if d is not None:
            out += deletion_sentences(d)
        out += creation_sentence() + membership_sentence()
        return "orphaned_membership", out

    # 2. deleted within the window
    if near:
        d = near[0]
        out += deletion_sentences(d)
        out.append(f"That is within the {w:g} s window around the failure: the workspace was deleted while "
                   "the login ran (it read the membership, then inserted the user after the deletion).")
        out += membership_sentence() + creation_sentence()
        return "concurrent_deletion", out

    # 3. the workspace exists now
    if ev.workspace_exists:
        if created_after and not created_before:
            c = created_after[0]
            out.append(f"{fmt_time(c.at)}: workspace {ws} was created ({c.how()}), {_relative(c.at, t)}: "
                       "it exists now, but did not exist yet when the login ran.")
            out += membership_sentence()
            return "membership_before_workspace", out
        if created_before:
            out += creation_sentence()
            out.append(f"Workspace {ws} exists now and no deletion of it is recorded within {w:g} s of the "
                       "failure: its history does not explain the violation (was the workspace id in the log "
                       "right? was the database restored?).")
        else:
            out.append(f"Workspace {ws} exists now, but when it was created is not recorded, so whether it "
                       "existed at the failure cannot be told.")
        out += membership_sentence()
        return "insufficient_evidence", out

    # 4. missing now
    if ev.deletion_source == "none":
        out.append(f"Workspace {ws} has no row now, and there is no deletion source (the schema mapping's "
                   "[deletions] source is \"none\"): when it was deleted, or whether it ever existed, cannot be "
                   "told. Map an audit log or a soft-delete column to decide.")
        out += creation_sentence() + membership_sentence()
        return "insufficient_evidence", out

    if created_after and not created_before:
        c = created_after[0]
        out.append(f"{fmt_time(c.at)}: workspace {ws} was created ({c.how()}), {_relative(c.at, t)}: "
                   "it did not exist yet when the login ran.")
        later = [d for d in ev.deletions if d.at >= c.at]
        if later:
            out += deletion_sentences(later[0])
        out += membership_sentence()
        return "membership_before_workspace", out

    before = sorted((d for d in ev.deletions if (d.at - t).total_seconds() < -w), key=lambda d: d.at)
    if before:
        d = before[-1]
        recreated = [c for c in ev.creations if d.at < c.at <= t]
        out += deletion_sentences(d)
        if recreated:
            c = recreated[-1]
            out.append(f"{fmt_time(c.at)}: workspace {ws} was created again ({c.how()}), {_relative(c.at, t)}: "
                       "it existed when the login ran, so its history does not explain the violation.")
            out += membership_sentence()
            return "insufficient_evidence", out
        if membership is not None and membership.removed_at is not None and \
                (membership.removed_at - t).total_seconds() > w:
            out += membership_sentence()
            out.append(f"The membership outlived workspace {ws} until after the failure: it was an orphan when "
                       "the login read it.")
            return "orphaned_membership", out
        out += membership_sentence()
        out.append(f"The workspace was gone {fmt_duration((t - d.at).total_seconds())} before the failure, "
                   f"longer than the {w:g} s window: the login read a membership that no longer existed "
                   "(a read replica, a long-running transaction or a cache).")
        out += creation_sentence()
        return "stale_read", out

    after = sorted((d for d in ev.deletions if (d.at - t).total_seconds() > w), key=lambda d: d.at)
    if after:
        out += creation_sentence()
        out += deletion_sentences(after[0])
        out.append(f"Workspace {ws} existed when the login ran and was deleted only later (beyond the {w:g} s "
                   "window): its history does not explain the violation.")
        out += membership_sentence()
        return "insufficient_evidence", out

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
        return "workspace_never_existed", out

    out += creation_sentence()
    out.append(f"Workspace {ws} has no row now, but no deletion of it is recorded: the deletion source misses "
               "it (audit trigger disabled, audit rows purged, a hard delete despite soft deletes?).")
    out += membership_sentence()
    return "insufficient_evidence", out


# -- what the database says ------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One audit row, its ``row_data`` mapped to the entity's logical columns."""

    at: datetime
    entity: str  # "workspaces" | "memberships" | "users"
    action: str  # "I" | "U" | "D"
    row_id: str
    values: Mapping[str, Any]
    transaction_id: int | None = None


@dataclass
class History:
    """The rows and audit rows of a set of users and workspaces, read in one snapshot."""

    deletion_source: str
    workspaces: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> row now
    memberships: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> row now
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> row now
    changes: list[Change] = field(default_factory=list)
    audit_since: datetime | None = None
    #: User ids and workspace ids whose rows were looked for (absent from the dicts: no row).
    looked_up_users: set[str] = field(default_factory=set)
    looked_up_workspaces: set[str] = field(default_factory=set)
    workspace_id_type: str | None = None
    snapshot_at: datetime | None = None

    _index: dict[tuple[str, str], list[Change]] | None = field(default=None, repr=False)
    _lives: dict[str, MembershipLife] | None = field(default=None, repr=False)
    _removed_by_tx: dict[int, list[Change]] = field(default_factory=dict, repr=False)

    def freeze(self) -> None:
        """Sort the changes and (re)build the lookups; called once the reads are done."""
        self.changes.sort(key=lambda c: (c.at, c.transaction_id or 0, c.entity != "workspaces"))
        self._index = {}
        self._removed_by_tx = {}
        for c in self.changes:
            self._index.setdefault((c.entity, c.row_id), []).append(c)
            if c.entity == "memberships" and c.action == "D" and c.transaction_id is not None:
                self._removed_by_tx.setdefault(c.transaction_id, []).append(c)
        self._lives = None

    # -- per entity -----------------------------------------------------------------------
    def changes_of(self, entity: str, row_id: str) -> list[Change]:
        if self._index is None:
            self.freeze()
        return list(self._index.get((entity, row_id), []))

    def workspace_creations(self, wid: str) -> list[Stamp]:
        audit = [Stamp(c.at, c.transaction_id, "audit") for c in self.changes_of("workspaces", wid) if c.action == "I"]
        if audit:
            return audit
        created = None
        if wid in self.workspaces:
            created = as_utc(self.workspaces[wid].get("created_at"))
        if created is None:
            for c in self.changes_of("workspaces", wid):
                created = created or as_utc(c.values.get("created_at"))
        return [Stamp(created, None, "column")] if created else []

    def workspace_deletions(self, wid: str) -> list[Deletion]:
        out: list[Deletion] = []
        for c in self.changes_of("workspaces", wid):
            if c.action != "D":
                continue
            if self._index is None:
                self.freeze()
            cascaded = tuple(
                (x.row_id, x.values.get("user_id"))
                for x in self._removed_by_tx.get(c.transaction_id, [])
                if normalize_workspace_id(x.values.get("workspace_id")) == wid
            )
            out.append(Deletion(c.at, c.transaction_id, "audit", cascaded))
        row = self.workspaces.get(wid)
        if self.deletion_source == "soft_delete" and row and row.get("deleted_at") is not None:
            out.append(Deletion(as_utc(row["deleted_at"]), None, "soft_delete", None))
        return sorted(out, key=lambda d: d.at)

    def workspace_exists(self, wid: str) -> bool:
        row = self.workspaces.get(wid)
        return bool(row) and not (self.deletion_source == "soft_delete" and row.get("deleted_at") is not None)

    def membership_lives(self) -> dict[str, MembershipLife]:
        """Every membership known, current or from the audit log, with its joining and removal."""
        if self._lives is None:
            self._lives = self._build_lives()
        return self._lives

    def _build_lives(self) -> dict[str, MembershipLife]:
        ids = {c.row_id for c in self.changes if c.entity == "memberships"} | set(self.memberships)
        out = {}
        for mid in ids:
            changes = self.changes_of("memberships", mid)
            values: dict[str, Any] = {}
            for c in changes:
                values.update({k: v for k, v in c.values.items() if v is not None})
            now = self.memberships.get(mid)
            if now:
                values.update({k: v for k, v in now.items() if v is not None})
            ins = [c for c in changes if c.action == "I"]
            dels = [c for c in changes if c.action == "D"]
            joined_at = ins[0].at if ins else as_utc(values.get("joined_at"))
            out[mid] = MembershipLife(
                id=mid,
                workspace_id=normalize_workspace_id(values.get("workspace_id")),
                user_id=None if values.get("user_id") is None else str(values.get("user_id")),
                joined_at=joined_at,
                joined_tx=ins[0].transaction_id if ins else None,
                removed_at=dels[-1].at if dels and not now else None,
                removed_tx=dels[-1].transaction_id if dels and not now else None,
                exists_now=bool(now),
                is_primary=values.get("is_primary"),
            )
        return out

    def memberships_of(self, user_id: str) -> list[MembershipLife]:
        return sorted((m for m in self.membership_lives().values() if m.user_id == user_id),
                      key=lambda m: (m.joined_at or datetime.min.replace(tzinfo=timezone.utc), m.id))

    def memberships_in(self, wid: str) -> list[MembershipLife]:
        return sorted((m for m in self.membership_lives().values() if m.workspace_id == wid),
                      key=lambda m: (m.joined_at or datetime.min.replace(tzinfo=timezone.utc), m.id))

    def user_created_at(self, user_id: str) -> datetime | None:
        ins = [c for c in self.changes_of("users", user_id) if c.action == "I"]
        if ins:
            return ins[0].at
        row = self.users.get(user_id)
        return as_utc(row.get("created_at")) if row else None


def normalize_workspace_id(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text.lower() if is_workspace_id(text) else text


def _logical(table, row_data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``row_data`` (physical keys) -> {logical column: value}."""
    row_data = row_data or {}
    return {logical: row_data.get(physical) for logical, physical in table.columns.items() if physical}


def _id_types(reader, m) -> dict[str, str]:
    """The id columns' types, read once per :class:`Database` and mapping (catalog facts)."""
    db = reader.db
    cached = getattr(db, "_id_types", None)
    if cached is not None and cached[0] is m:
        return cached[1]
    types = queries.id_column_types(reader, m)
    db._id_types = (m, types)
    return types


def collect(reader, m, *, user_ids: Iterable[str] = (), workspace_ids: Iterable[str] = (),
            scan_workspaces: Iterable[str] = (), user_history: bool = False,
            member_users: bool = True) -> History:
    """Read the history of the given users and workspaces, batched, in ``reader``'s snapshot.

    * users: their rows, their memberships (now, and from the audit's membership inserts) and,
      with ``user_history``, their own audit rows (creation, primary-workspace changes);
    * workspaces: the given ones, the users' memberships' and primary workspaces: rows now, audit
      rows, and for each audit deletion the memberships its transaction removed;
    * the memberships in the given workspaces now (orphans included), and in ``scan_workspaces``
      from the audit's membership inserts too (to find a user a log line does not name);
    * with ``member_users``, the user rows of the given workspaces' members.
    """
    uids = sorted({u for u in user_ids if u})
    types = _id_types(reader, m)
    ws_type = types.get("workspaces.id")

    def usable(ids: Iterable[str]) -> list[str]:
        ids = {normalize_workspace_id(i) for i in ids if i}
        if ws_type == "uuid":
            return sorted(i for i in ids if is_workspace_id(i))
        return sorted(ids)

    wids = usable(workspace_ids)
    scan_wids = usable(scan_workspaces)
    audit = m.deletion_source == "audit"
    h = History(m.deletion_source, workspace_id_type=ws_type)
    h.snapshot_at = reader.snapshot_at

    def add_changes(entity: str, rows: list[dict[str, Any]]) -> None:
        table = getattr(m, entity)
        seen = {(c.entity, c.row_id, c.action, c.at, c.transaction_id) for c in h.changes}
        for r in rows:
            values = _logical(table, r["row_data"])
            row_id = values.get("id")
            if row_id is None:
                continue
            row_id = normalize_workspace_id(row_id) if entity == "workspaces" else str(row_id)
            at = as_utc(r["at"])
            key = (entity, row_id, (r["action"] or "").strip(), at, r["transaction_id"])
            if key in seen:
                continue
            seen.add(key)
            h.changes.append(Change(at, entity, key[2], row_id, values,
                                    None if r["transaction_id"] is None else int(r["transaction_id"])))

    # Round 1: the users' side.
    h.looked_up_users |= set(uids)
    for row in queries.current_users(reader, m, uids, types):
        h.users[row["id"]] = row
    if audit and user_history:
        add_changes("users", queries.audit_user_rows(reader, m, uids))
    for row in queries.current_memberships(reader, m, user_ids=uids, workspace_ids=wids, types=types):
        row["workspace_id"] = normalize_workspace_id(row["workspace_id"])
        h.memberships[row["id"]] = row
    if audit:
        add_changes("memberships", queries.audit_membership_inserts(reader, m, user_ids=uids, workspace_ids=scan_wids))

    # Round 2: every workspace the users' rows reference.
    more = set(wids)
    more |= {r["workspace_id"] for r in h.memberships.values() if r.get("user_id") in uids}
    more |= {normalize_workspace_id(c.values.get("workspace_id")) for c in h.changes if c.entity == "memberships"}
    more |= {normalize_workspace_id(r.get("primary_workspace_id")) for r in h.users.values()}
    more |= {normalize_workspace_id(c.values.get("primary_workspace_id")) for c in h.changes if c.entity == "users"}
    all_wids = usable(x for x in more if x)
    h.looked_up_workspaces |= set(all_wids)
    for row in queries.current_workspaces(reader, m, all_wids, types):
        h.workspaces[normalize_workspace_id(row["id"])] = row
    if audit:
        add_changes("workspaces", queries.audit_rows_by_id(reader, m, "workspaces", all_wids))
        deletions = [(c.transaction_id, c.at) for c in h.changes
                     if c.entity == "workspaces" and c.action == "D" and c.transaction_id is not None]
        add_changes("memberships", queries.audit_cascade_rows(reader, m, deletions, CASCADE_SPAN_SECONDS))
        mids = sorted({c.row_id for c in h.changes if c.entity == "memberships"} | set(h.memberships))
        add_changes("memberships", queries.audit_rows_by_id(reader, m, "memberships", mids))
        h.audit_since = as_utc(queries.audit_first_workspace_insert(reader, m))

    # Round 3: the user rows of the given workspaces' members (to tell who had none).
    if member_users:
        h.freeze()
        members = {lf.user_id for lf in h.membership_lives().values()
                   if lf.workspace_id in set(wids) | set(scan_wids) and lf.user_id}
        extra = sorted(members - h.looked_up_users)
        h.looked_up_users |= set(extra)
        for row in queries.current_users(reader, m, extra, types):
            h.users[row["id"]] = row
    h.freeze()
    return h


def evidence_for(h: History, failure: LogFailure, window: float = config.DEFAULT_WINDOW_SECONDS) -> Evidence:
    """The :class:`Evidence` of one failure, from a :class:`History` that covers its ids."""
    w = check_window(window)
    t = failure.at.astimezone(timezone.utc)
    raw_ws = failure.workspace_id
    ws = normalize_workspace_id(raw_ws)
    valid = ws is not None and (h.workspace_id_type != "uuid" or is_workspace_id(ws))
    base = dict(failure_at=t, workspace_id=ws, user_id=failure.user_id, deletion_source=h.deletion_source,
                source=failure.source, line=failure.line, audit_since=h.audit_since)
    if not ws or not valid:
        return Evidence(**base, workspace_id_valid=bool(ws) and valid)
    notes: list[str] = []
    user = failure.user_id
    in_ws = h.memberships_in(ws)
    if user is None:
        user, note = _resolve_user(h, in_ws, t, w)
        if note:
            notes.append(note)
    membership = None
    if user is not None:
        mine = [lf for lf in in_ws if lf.user_id == user]
        joined_before = [lf for lf in mine if lf.joined_at is None or (lf.joined_at - t).total_seconds() <= w]
        pool = joined_before or mine
        membership = pool[-1] if pool else None
    row = ws in h.workspaces
    orphans: tuple[str, ...] = ()
    if not row:
        current = [lf for lf in in_ws if lf.exists_now]
        relevant = [lf for lf in current if user is None or lf.user_id == user]
        orphans = tuple(lf.id for lf in relevant)
        others = [lf for lf in current if lf not in relevant]
        if others:
            notes.append(f"Other users' memberships still reference workspace {ws}: "
                         f"{_short([f'{lf.id} ({lf.user_id})' for lf in others])}.")
    base["user_id"] = user
    return Evidence(**base, workspace_row=row, workspace_exists=h.workspace_exists(ws),
                    creations=tuple(h.workspace_creations(ws)), deletions=tuple(h.workspace_deletions(ws)),
                    membership=membership, orphans=orphans, notes=tuple(notes))


def _resolve_user(h: History, in_ws: list[MembershipLife], t: datetime, w: float) -> tuple[str | None, str | None]:
    """The user of a failure whose log line names none: the member of the workspace, joined before the
    failure, who had no user row at the time (their first login is the one that failed)."""
    joined = [lf for lf in in_ws if lf.user_id and lf.joined_at is not None
              and (lf.joined_at - t).total_seconds() <= w]
    # prefer memberships still there around the failure; a stale read may have used an older one
    alive = [lf for lf in joined if lf.removed_at is None or (lf.removed_at - t).total_seconds() >= -w]
    before = alive or joined
    if not before:
        return None, ("The log record names no user, and no membership in the workspace created before the "
                      "failure is recorded.")

    def had_no_row(lf: MembershipLife) -> bool:
        created = h.user_created_at(lf.user_id)
        return lf.user_id not in h.users or (created is not None and created > t)

    newcomers = [lf for lf in before if had_no_row(lf)]
    pool = newcomers or before
    users = sorted({lf.user_id for lf in pool})
    if len(users) == 1:
        lf = [x for x in pool if x.user_id == users[0]][-1]
        why = " and had no user row at the time" if newcomers else ""
        return users[0], (f"The log record names no user; {users[0]} is the member of the workspace whose "
                          f"membership {lf.id} was created {fmt_time(lf.joined_at)}, before the failure{why}.")
    return None, (f"The log record names no user, and several members of the workspace could be it: "
                  f"{_short(users)}.")


# -- results ---------------------------------------------------------------------------------
@dataclass
class Judged:
    """One failed login with its verdict and the evidence for it."""

    at: datetime
    user_id: str | None
    workspace_id: str | None
    verdict: str
    evidence: list[str]
    source: str = ""
    line: int = 0
    #: The deletion of the workspace closest to the failure, when one is known.
    deleted_at: datetime | None = None
    transaction_id: int | None = None

    @property
    def seconds_after_deletion(self) -> float | None:
        """Seconds from the workspace's deletion to the failure (negative: the failure came first)."""
        if self.deleted_at is None:
            return None
        return (self.at - self.deleted_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": iso_utc(self.at),
            "user_id": self.user_id,
            "workspace_id": self.workspace_id,
            "verdict": self.verdict,
            "evidence": list(self.evidence),
            "source": self.source,
            "line": self.line,
            "deleted_at": iso_utc(self.deleted_at) if self.deleted_at else None,
            "deletion_transaction_id": self.transaction_id,
            "seconds_after_deletion": self.seconds_after_deletion,
        }


def judge_failure(h: History, failure: LogFailure, window: float) -> Judged:
    """Gathered evidence + :func:`judge` -> :class:`Judged`."""
    ev = evidence_for(h, failure, window)
    verdict, sentences = judge(ev, window)
    d = ev.nearest_deletion()
    return Judged(ev.failure_at, ev.user_id, ev.workspace_id, verdict, sentences, failure.source, failure.line,
                  d.at if d else None, d.transaction_id if d else None)


def judge_failures(reader, m, failures: Sequence[LogFailure], window: float, *,
                   user_ids: Iterable[str] = (), workspace_ids: Iterable[str] = (),
                   scan_workspaces: Iterable[str] = (), user_history: bool = False) -> tuple[History, list[Judged]]:
    """Gather the evidence of ``failures`` (plus the extra ids) in one batch and judge each."""
    uids = set(user_ids) | {f.user_id for f in failures if f.user_id}
    wids = set(workspace_ids) | {f.workspace_id for f in failures if f.workspace_id}
    scan = set(scan_workspaces) | {f.workspace_id for f in failures if f.workspace_id and not f.user_id}
    h = collect(reader, m, user_ids=uids, workspace_ids=wids, scan_workspaces=scan, user_history=user_history)
    return h, [judge_failure(h, f, window) for f in failures]


def load_failures(logs, user_pattern: str | None = None) -> LogScan:
    """``logs`` as a :class:`LogScan`: one already made, or the paths to scan."""
    if isinstance(logs, LogScan):
        return logs
    from .logs import scan_logs

    if user_pattern:
        return scan_logs(logs, user_pattern=user_pattern)
    return scan_logs(logs)


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

    def by_verdict(self) -> dict[str, int]:
        counts = {v: 0 for v in VERDICTS}
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
            "snapshot_at": iso_utc(self.snapshot_at) if self.snapshot_at else None,
        }

    def headline(self) -> dict[str, Any]:
        """The figures a report's index keeps: failure count, affected users, counts per verdict."""
        return {"failures": len(self.failures),
                "users": sorted({j.user_id for j in self.failures if j.user_id}),
                "by_verdict": self.by_verdict()}

    def text(self) -> str:
        """Plain text for the terminal: counts per verdict, then each failure with its evidence."""
        counts = self.by_verdict()
        width = max(len(v) for v in VERDICTS)
        lines = [f"{len(self.failures)} failed login{'s' if len(self.failures) != 1 else ''} in "
                 f"{len(self.files)} file{'s' if len(self.files) != 1 else ''} ({self.skipped_lines} lines skipped); "
                 f"window ±{self.window:g} s; deletions from: {self.deletion_source}", ""]
        lines += [f"{v:<{width}}  {counts[v]:>6}" for v in VERDICTS]
        for j in self.failures:
            delay = "" if j.seconds_after_deletion is None else f"  ({j.seconds_after_deletion:+.3f} s after deletion)"
            lines += ["", f"{fmt_time(j.at)}  {j.user_id or '-'}  {j.workspace_id or '-'}  {j.verdict}{delay}"]
            lines += [f"    - {s}" for s in j.evidence]
        return "\n".join(lines)

    def frame(self):
        """One row per failure: time, user, workspace, verdict, seconds after the deletion, where logged."""
        import pandas as pd

        cols = ["at", "user_id", "workspace_id", "verdict", "seconds_after_deletion", "source", "line"]
        return pd.DataFrame([{"at": fmt_time(j.at), "user_id": j.user_id, "workspace_id": j.workspace_id,
                              "verdict": j.verdict, "seconds_after_deletion": j.seconds_after_deletion,
                              "source": Path(j.source).name if j.source else "", "line": j.line}
                             for j in self.failures], columns=cols)

    def by_verdict_frame(self):
        """Every verdict with its count (zeros included) and what it means."""
        import pandas as pd

        counts = self.by_verdict()
        return pd.DataFrame({"verdict": list(VERDICTS), "failures": [counts[v] for v in VERDICTS],
                             "meaning": [VERDICT_LABELS[v] for v in VERDICTS]})

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
        verdicts = [v for v in VERDICTS if any(r[0] == v for r in rows)] or ["concurrent_deletion"]
        colors = dict(zip(VERDICTS, ["#c44e52", "#dd8452", "#8172b3", "#937860", "#55a868", "#8c8c8c"]))
        for i, v in enumerate(verdicts):
            xs = [s for verdict, s in rows if verdict == v]
            if xs:
                ys = [i + ((k * 0.618) % 1 - 0.5) * 0.35 for k in range(len(xs))] if len(xs) > 1 else [i]
                ax.scatter(xs, ys, color=colors[v], s=36, zorder=3, alpha=0.85, label=f"{v} ({len(xs)})")
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


def affected(db, logs=None, *, window: float = config.DEFAULT_WINDOW_SECONDS,
             user_pattern: str | None = None) -> Affected:
    """Every failure in ``logs`` (paths, or a :class:`LogScan`) judged against ``db``, in one snapshot.

    ``logs`` None means the demo log when ``db`` is the demo database (:func:`default_logs`),
    and is an error otherwise.
    """
    from .timeline import default_logs

    w = check_window(window)
    if logs is None:
        logs = default_logs(db)
    if logs is None:
        raise ConfigError("no logs given: pass the application or PostgreSQL log files (--logs PATH)")
    scan = load_failures(logs, user_pattern)
    m = db.schema
    with db.read() as r:
        m.check(r)
        h, judged = judge_failures(r, m, scan.failures, w)
        snapshot_at = r.snapshot_at
    judged.sort(key=lambda j: (j.at, j.source, j.line))
    return Affected(judged, scan.skipped_lines, list(scan.files), w, db.describe(), m.deletion_source, snapshot_at)
