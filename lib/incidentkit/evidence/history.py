"""What the database says about a set of users and workspaces, read once, and the evidence from it.

:func:`collect` reads the history of the given users and workspaces in one read-only snapshot,
batched: one query per kind of row for all the failures' distinct user and workspace ids
(``= any(%(ids)s)``), never one query per failure, never a whole table. Deletion times come
from the audit log (``D`` rows; the cascade's membership rows share the workspace's transaction
id), from a soft-delete column, or from nothing at all (``[deletions] source = "none"``), in
which case the verdicts say so. See :mod:`incidentkit.db.queries` (section "timelines and
verdicts") for the indexes each read relies on, and the two reads that want an index the
reference schema lacks.

:func:`evidence_for` turns a :class:`History` and one log failure into the rule's
:class:`~incidentkit.evidence.model.Evidence`; :func:`judge_failures` does all of it for a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from .. import config
from ..db import queries
from ..text import as_utc, fmt_time
from .inputs import check_window, is_workspace_id, normalize_workspace_id
from .logs import DEFAULT_CONSTRAINT, ForeignKey, LogFailure
from .model import Deletion, Evidence, Judged, MembershipLife, Stamp
from .rules import decide, short_list

#: A workspace's cascade removes its memberships in the same statement: their audit rows are
#: looked for within this many seconds of the workspace's own (then matched on the transaction id).
CASCADE_SPAN_SECONDS = 3600.0


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
    #: Deletions and creations found outside the tables (server log, application log, probes).
    outside: Any = None

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
        created, origin = None, "column"
        if wid in self.workspaces:
            created = as_utc(self.workspaces[wid].get("created_at"))
            origin = self.workspaces[wid].get("created_origin") or "column"
        if created is None:
            for c in self.changes_of("workspaces", wid):
                created = created or as_utc(c.values.get("created_at"))
        if created:
            return [Stamp(created, None, origin)]
        return self.outside.workspace_creations(wid) if self.outside is not None else []

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
        if self.outside is not None:
            out += self.outside.workspace_deletions(wid)
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

def foreign_key(reader, m) -> ForeignKey:
    """The foreign key a log scan looks for: the one from the mapped users' primary-workspace column
    to the mapped workspaces' id, from ``pg_constraint`` (validated first, then by name), with the
    mapped table and column names its violations print. When the catalog has none (the key was
    dropped, or never made), the reference name with the mapped names."""
    rows = queries.primary_workspace_foreign_keys(reader, m)
    if rows:
        r = rows[0]
        return ForeignKey(r["name"], r["table"], r["column"], r["referenced_table"], r["referenced_column"])
    return ForeignKey(DEFAULT_CONSTRAINT, m.users.name, m.users.columns["primary_workspace_id"], m.workspaces.name,
                      m.workspaces.columns["id"])


def _logical(table, row_data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``row_data`` (physical keys) -> {logical column: value}."""
    row_data = row_data or {}
    return {logical: row_data.get(physical) for logical, physical in table.columns.items() if physical}


def _id_types(reader, m) -> dict[str, str]:
    """The id columns' types, read once per :class:`Database` and mapping (catalog facts).

    Kept in the database's ``id_types`` field (mapping, types).
    """
    db = reader.db
    cached = db.id_types
    if cached is not None and cached[0] is m:
        return cached[1]
    types = queries.id_column_types(reader, m)
    db.id_types = (m, types)
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
                         f"{short_list([f'{lf.id} ({lf.user_id})' for lf in others])}.")
    base["user_id"] = user
    deletions = h.workspace_deletions(ws)
    exists = h.workspace_exists(ws)
    absent_since, probes = None, 0
    if h.outside is not None and not exists and not deletions:
        bracketed, absent_since, probes = h.outside.probe(ws, t)
        if bracketed is not None:
            deletions.append(bracketed)
    return Evidence(**base, workspace_row=row, workspace_exists=exists,
                    creations=tuple(h.workspace_creations(ws)), deletions=tuple(deletions),
                    membership=membership, orphans=orphans, notes=tuple(notes), absent_since=absent_since,
                    as_of_probes=probes, outside_sources=tuple(h.outside.used) if h.outside is not None else ())


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
                  f"{short_list(users)}.")


def judge_failure(h: History, failure: LogFailure, window: float) -> Judged:
    """One failure's evidence, gathered from ``h``, judged by :func:`~incidentkit.evidence.rules.decide`."""
    ev = evidence_for(h, failure, window)
    decision = decide(ev, window)
    d = decision.deletion or ev.nearest_deletion()
    return Judged(ev.failure_at, ev.user_id, ev.workspace_id, decision.verdict, decision.sentences, failure.source,
                  failure.line, d.at if d else None, d.transaction_id if d else None, failure.kind, failure.places,
                  d, decision.strength, ev.as_of_probes)


def judge_failures(reader, m, failures: Sequence[LogFailure], window: float, *,
                   user_ids: Iterable[str] = (), workspace_ids: Iterable[str] = (),
                   scan_workspaces: Iterable[str] = (), user_history: bool = False,
                   outside: Any = None) -> tuple[History, list[Judged]]:
    """Gather the evidence of ``failures`` (plus the extra ids) in one batch and judge each.

    ``outside`` (:class:`~incidentkit.evidence.sources.Outside`) adds the deletions and
    creations the logs record, and the point-in-time probes."""
    uids = set(user_ids) | {f.user_id for f in failures if f.user_id}
    wids = set(workspace_ids) | {f.workspace_id for f in failures if f.workspace_id}
    scan = set(scan_workspaces) | {f.workspace_id for f in failures if f.workspace_id and not f.user_id}
    h = collect(reader, m, user_ids=uids, workspace_ids=wids, scan_workspaces=scan, user_history=user_history)
    h.outside = outside
    return h, [judge_failure(h, f, window) for f in failures]
