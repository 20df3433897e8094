"""The evidence layer's records: what the rules read about one failure, and what they decide.

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
        }

