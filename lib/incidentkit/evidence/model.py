"""The evidence layer's records: what the rules read about one failure, and what they decide.

A deletion comes from one of :data:`DELETION_ORIGINS` and has one of :data:`STRENGTHS`:
``recorded`` when a source wrote it down at the time (an audit row, a soft-delete column, a
statement the server logged, an application's log event), ``bracketed`` when point-in-time
probes put it between two instants (the workspace existed at ``after``, was gone at ``at``).

:class:`Evidence` (with :class:`Stamp`, :class:`Deletion` and :class:`MembershipLife`) is the
input of the pure rule :func:`incidentkit.evidence.rules.judge`; :class:`Judged` is one failed
login with its verdict and the sentences behind it. Plain values: no database, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..text import iso_utc


# -- the rule's input ------------------------------------------------------------------------
#: Where a deletion was read: the audit table, a soft-delete column, a statement in the server
#: log, an application log's event, point-in-time probes of the database's history.
DELETION_ORIGINS = ("audit", "soft_delete", "server_log", "app_log", "as_of")
#: How strong a verdict's evidence is (see the module's docstring); ``inferred``: reasoned from
#: absence (no row now, no trace in a history that covers the time); ``none``: not decided.
STRENGTHS = ("recorded", "bracketed", "inferred", "none")


@dataclass(frozen=True)
class Stamp:
    """When a row came to be: an audit ``I`` row (with its transaction), a timestamp column, a
    logged INSERT, or the commit timestamp of the row's last write."""

    at: datetime
    transaction_id: int | None = None
    origin: str = "audit"  # "audit" | "column" | "server_log" | "commit_ts"
    where: tuple[str, ...] = ()

    def how(self) -> str:
        if self.origin == "audit":
            return f"audit transaction {self.transaction_id}" if self.transaction_id is not None else "audit log"
        if self.origin == "server_log":
            return "INSERT in the server log" + (f", {self.where[0]}" if self.where else "")
        if self.origin == "commit_ts":
            return "commit timestamp of the row's last write (track_commit_timestamp), no created_at column"
        return "its created_at column"


@dataclass(frozen=True)
class Deletion:
    """One deletion of a workspace, from one of :data:`DELETION_ORIGINS`.

    ``at`` is when it happened, or for a bracket (``after`` set) the first instant it was seen
    gone: the deletion lies in (``after``, ``at``].
    """

    at: datetime
    transaction_id: int | None = None
    origin: str = "audit"
    #: Memberships removed in the same transaction (by the cascade): (membership id, user id).
    cascaded: tuple[tuple[str, str | None], ...] | None = None
    #: A bracket's lower end: the last instant the workspace was seen to exist.
    after: datetime | None = None
    #: Where it was read ("file:line", every copy), for log sources.
    where: tuple[str, ...] = ()
    #: Who did it, as far as the source says (a user id, a database user and application).
    who: str | None = None
    #: What the record proves ("statement logged, commit not observed"; empty for audit rows).
    status: str = ""
    #: Probes used to bracket it (point-in-time).
    probes: int = 0
    #: The bracket's upper end is the failure itself (present at the first probe before it).
    bounded_by_failure: bool = False

    @property
    def strength(self) -> str:
        return "bracketed" if self.origin == "as_of" else "recorded"

    @property
    def earliest(self) -> datetime:
        """The earliest instant the deletion may have happened (``at`` for a recorded one)."""
        return self.after if self.after is not None else self.at

    def how(self) -> str:
        if self.origin == "audit":
            return f"audit transaction {self.transaction_id}"
        if self.origin == "soft_delete":
            return "soft-delete column deleted_at"
        by = f" by {self.who}" if self.who else ""
        where = f", {self.where[0]}" if self.where else ""
        if self.origin == "server_log":
            return f"DELETE in the server log{by}{where}; {self.status or 'statement logged, commit not observed'}"
        if self.origin == "app_log":
            return f"application log event{by}{where}"
        return (f"point-in-time probes: present at {iso_utc(self.after)}, "
                + ("gone by the failure" if self.bounded_by_failure else f"absent at {iso_utc(self.at)}")
                + f"; {self.probes} probe{'s' if self.probes != 1 else ''}")

    def to_dict(self) -> dict[str, Any]:
        """``{"at": ...}`` or ``{"between": [t1, t2]}``, its ``source``, where it was read and who."""
        out: dict[str, Any] = ({"between": [iso_utc(self.after), iso_utc(self.at)]} if self.after is not None
                               else {"at": iso_utc(self.at)})
        out["source"] = self.origin
        out["strength"] = self.strength
        out["where"] = list(self.where) or ([f"transaction {self.transaction_id}"] if self.transaction_id else [])
        if self.who:
            out["who"] = self.who
        if self.status:
            out["status"] = self.status
        if self.transaction_id is not None:
            out["transaction_id"] = self.transaction_id
        if self.origin == "as_of":
            out["probes"] = self.probes
        return out


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
    """Everything :func:`~incidentkit.evidence.rules.judge` needs about one failure.

    Built from the database by :func:`incidentkit.evidence.history.evidence_for`, or by hand in tests.
    """

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
    #: Point-in-time probes found the workspace absent at every probe back to this instant.
    absent_since: datetime | None = None
    #: Point-in-time probes used for this failure (0: none asked).
    as_of_probes: int = 0
    #: The deletion sources consulted besides the database's own (``server_log``, ``app_log``, ``as_of``).
    outside_sources: tuple[str, ...] = ()
    #: Facts found while gathering, stated as sentences (e.g. how the user was found).
    notes: tuple[str, ...] = ()
    source: str = ""
    line: int = 0

    def nearest_deletion(self) -> Deletion | None:
        """The deletion closest in time to the failure (None when none is known)."""
        if not self.deletions:
            return None
        return min(self.deletions, key=lambda d: abs((d.at - self.failure_at).total_seconds()))


# -- the rule's output, per failure -----------------------------------------------------------
@dataclass
class Judged:
    """One failed login with its verdict and the evidence for it."""

    at: datetime
    user_id: str | None
    workspace_id: str | None
    #: A name from :data:`incidentkit.evidence.registry.NAMES`.
    verdict: str
    #: The sentences that decide it, each checkable against the timeline.
    evidence: list[str]
    source: str = ""
    line: int = 0
    #: The deletion of the workspace closest to the failure, when one is known.
    deleted_at: datetime | None = None
    transaction_id: int | None = None
    #: Which side of the foreign key failed: "insert" (a login; the only kind judged).
    kind: str = "insert"
    #: Every (file, line) where the failure was seen, ``(source, line)`` first; empty: just that one.
    sources: tuple[tuple[str, int], ...] = ()
    #: The deletion the verdict rests on (or, when none does, the nearest one known).
    deletion: Deletion | None = None
    #: One of :data:`STRENGTHS`.
    evidence_strength: str = "none"
    #: Point-in-time probes used for this failure.
    as_of_probes: int = 0

    @property
    def places(self) -> tuple[tuple[str, int], ...]:
        """Every (file, line) where this failure was seen (at least ``(source, line)``)."""
        return self.sources or ((self.source, self.line),)

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
            "kind": self.kind,
            "sources": [{"file": f, "line": n} for f, n in self.places],
            "deletion": self.deletion.to_dict() if self.deletion else None,
            "evidence_strength": self.evidence_strength,
            "as_of_probes": self.as_of_probes,
        }

