"""One cell of the matrix: the interleavings, the outcome values, and :class:`CellResult`.

**Interleavings** (:data:`INTERLEAVINGS`). The login has three pause points: before it
begins, right after it has read the membership (before anything else: validation, lock,
insert), and before its commit. The deletion has two: before it begins, and between its
delete statement and its commit/rollback. An interleaving is the order in which the driver
releases those points (a deletion that starts after the login's insert, before its commit,
is not among them).

**Outcome values** (:data:`OUTCOMES`), the same for both sides. An outcome says how the
side's work *ended*:

* ``ok`` -- the side's transaction did what it was scripted to do. For the login: the user
  row exists, ``detail["login_workspace"]`` says whether its primary workspace is the
  ``"original"`` W or a ``"new"`` fallback one. For the deletion: the delete ran and was
  committed, or rolled back when the interleaving says so (``detail["delete_end"]``).
  A side that had to wait on the other's lock and then succeeded is still ``ok``: the wait
  is in ``detail["waits"]`` (waiter, blocked_by, step, seconds, wait_event), and the
  matrix marks it.
* ``fk_violation`` -- SQLSTATE 23503. Login side: the report's 500. Deleting side: the
  deletion refused (a user's primary workspace cannot be deleted).
* ``blocked`` -- the side was still waiting for a lock when the cell's bound ran out
  (``lock_timeout``, or the lab cancelled it): it never got the lock. Its wait is recorded.
* ``deadlock`` -- SQLSTATE 40P01. ``serialization_failure`` -- SQLSTATE 40001.
* ``error`` -- anything else (the SQLSTATE and text are recorded).

A strategy that retries reports the outcome of its *last* attempt; every attempt is in
``detail["login_attempts"]``. Errors are recorded as PostgreSQL gives them (``e.diag``
message, then ``DETAIL:``), and the constraint name separately.

:func:`make_result` assembles a :class:`CellResult` from what the driver observed on the two
sides (their results and statements, see :mod:`.driver`) and the data left afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..db.demo import INCIDENT_USER, INCIDENT_WORKSPACE

#: The interleavings, in the order the matrix shows them.
INTERLEAVINGS: tuple[str, ...] = (
    "no_concurrent_delete",
    "delete_before_read",
    "delete_between_read_and_insert",
    "delete_in_flight_commit",
    "delete_in_flight_rollback",
)

#: What each interleaving does (for reports and the notebook).
INTERLEAVING_DESCRIPTIONS: dict[str, str] = {
    "no_concurrent_delete": "the login runs alone and commits; the admin deletes W afterwards",
    "delete_before_read": "the deletion commits before the login reads the membership",
    "delete_between_read_and_insert":
        "the deletion commits after the login has read the membership, before its insert",
    "delete_in_flight_commit":
        "the deletion has run but not committed when the login goes on to insert; then it commits",
    "delete_in_flight_rollback":
        "the deletion has run but not committed when the login goes on to insert; then it rolls back",
}

#: Outcome values, for both sides (see the module docstring).
OUTCOMES: tuple[str, ...] = ("ok", "blocked", "fk_violation", "deadlock", "serialization_failure", "error")
#: The outcomes that are failures (``blocked`` is not: the side never got the lock).
FAILURES = frozenset({"fk_violation", "deadlock", "serialization_failure", "error"})

#: The incident's own identifiers (from the demo incident): the errors the lab records read
#: like the report's.
USER_ID = INCIDENT_USER
WORKSPACE_ID = INCIDENT_WORKSPACE
FALLBACK_WORKSPACE_NAME = "Personal workspace"


@dataclass
class CellResult:
    """What one strategy did under one interleaving, observed on both sides.

    ``login_outcome``/``delete_outcome`` are values of :data:`OUTCOMES`; ``*_error`` the
    PostgreSQL error text of that outcome (``None`` when ``ok``); ``detail`` a JSON-ready
    dict: ``summary`` (one sentence), ``login_workspace`` (``"original"``, ``"new"`` or
    None), ``login_attempts``, ``waits``, ``delete_end``, ``delete_rows``, ``final_state``,
    ``lost_deletion``, ``statements`` (every statement with timings) and more.
    """

    strategy: str
    interleaving: str
    login_outcome: str
    delete_outcome: str
    login_error: str | None
    delete_error: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "interleaving": self.interleaving,
            "login_outcome": self.login_outcome,
            "delete_outcome": self.delete_outcome,
            "login_error": self.login_error,
            "delete_error": self.delete_error,
            "detail": self.detail,
        }


# -- assembling a result from the observations ----------------------------------------------

def make_result(strategy: str, interleaving: str, login, delete, final, setup: dict,
                schedule, t0: float, elapsed: float, server: str) -> CellResult:
    """The cell's result: ``login``/``delete`` are the driver's two sides (each with
    ``.result`` and ``.statements``), ``final`` the row of ``SQL_FINAL_STATE``."""
    lr, dr = login.result, delete.result
    workspace_exists, user_primary, memberships, audited = final
    user_primary = None if user_primary is None else str(user_primary)
    login_workspace = None
    if lr.get("outcome") == "ok" and lr.get("workspace_id"):
        login_workspace = "original" if lr["workspace_id"] == WORKSPACE_ID else "new"
    delete_end = dr.get("end")
    committed = dr.get("outcome") == "ok" and delete_end == "commit" and (dr.get("rows") or 0) > 0
    waits = _waits((login, delete))
    detail: dict[str, Any] = {
        "login_workspace": login_workspace,
        "login_path": lr.get("path"),
        "login_attempts": lr.get("attempts", []),
        "login_sqlstate": lr.get("sqlstate"),
        "login_constraint": lr.get("constraint"),
        "login_statements": sum(1 for s in login.statements),
        "delete_end": delete_end,
        "delete_rows": dr.get("rows"),
        "delete_sqlstate": dr.get("sqlstate"),
        "delete_constraint": dr.get("constraint"),
        "waits": waits,
        "final_state": {
            "workspace_w_exists": bool(workspace_exists),
            "user_primary_workspace": (None if user_primary is None else
                                       "original" if user_primary == WORKSPACE_ID else "new"),
            "user_primary_workspace_id": user_primary,
            "user_memberships": int(memberships),
            "deletion_audited": int(audited) > 0,
        },
        "lost_deletion": bool(committed and workspace_exists),
        "setup": setup,
        "schedule": [f"{side}:{phase}" for side, phase in schedule],
        "statements": _statements((login, delete), t0),
        "elapsed_seconds": round(elapsed, 4),
        "server": server,
        "workspace_w": WORKSPACE_ID,
        "user": USER_ID,
    }
    detail["summary"] = _summary(lr, dr, detail)
    return CellResult(strategy, interleaving, lr.get("outcome", "error"), dr.get("outcome", "error"),
                      lr.get("error"), dr.get("error"), detail)


def _waits(sides: Iterable) -> list[dict[str, Any]]:
    out = []
    for side in sides:
        for stmt in side.statements:
            if stmt.blockers or stmt.cancelled:
                out.append({
                    "waiter": side.name,
                    "blocked_by": sorted(stmt.blockers),
                    "step": stmt.label,
                    "attempt": stmt.attempt,
                    "seconds": round((stmt.ended or time.monotonic()) - stmt.started, 4),
                    "wait_event": stmt.wait_event,
                    "ended": "ok" if not stmt.sqlstate else f"SQLSTATE {stmt.sqlstate}",
                })
    return out


def _statements(sides: Iterable, t0: float) -> list[dict[str, Any]]:
    rows = []
    for side in sides:
        for s in side.statements:
            rows.append({"side": side.name, "attempt": s.attempt, "step": s.label,
                         "start_ms": round((s.started - t0) * 1000, 2),
                         "ms": round(((s.ended or s.started) - s.started) * 1000, 2),
                         "rows": s.rows, "sqlstate": s.sqlstate,
                         "blocked_by": sorted(s.blockers) or None})
    rows.sort(key=lambda r: r["start_ms"])
    return rows


def _wait_phrase(waits: list[dict[str, Any]], side: str) -> str:
    mine = [w for w in waits if w["waiter"] == side]
    if not mine:
        return ""
    parts = []
    for w in mine:
        who = " and ".join(w["blocked_by"]) or "?"
        parts.append(f"waited {w['seconds']:.3f} s on the {who} side ({w['wait_event'] or 'lock'}) "
                     f"at '{w['step']}'")
    return "; " + "; ".join(parts)


def _summary(lr: dict, dr: dict, detail: dict) -> str:
    outcome = lr.get("outcome", "error")
    attempts = detail["login_attempts"]
    if outcome == "ok":
        got = "the original workspace W" if detail["login_workspace"] == "original" else "a new fallback workspace"
        login = f"login ok, the user got {got}"
        if len(attempts) > 1:
            failed = ", ".join(f"attempt {a['attempt']}: {a['outcome']}" for a in attempts[:-1])
            login += f" on attempt {len(attempts)} ({failed})"
    else:
        login = f"login {outcome}" + (" (the report's 500)" if outcome == "fk_violation" else "")
        if len(attempts) > 1:
            login += f" after {len(attempts)} attempts"
    login += _wait_phrase(detail["waits"], "login")
    d_out = dr.get("outcome", "error")
    if d_out == "ok":
        end = "committed" if detail["delete_end"] == "commit" else "rolled back as scripted"
        rows = detail["delete_rows"]
        delete = f"delete ok ({rows} row{'' if rows == 1 else 's'}, {end})"
    elif d_out == "fk_violation":
        delete = "delete fk_violation (the deletion was refused)"
    else:
        delete = f"delete {d_out}"
    delete += _wait_phrase(detail["waits"], "delete")
    state = "W still exists" if detail["final_state"]["workspace_w_exists"] else "W is gone"
    if detail["lost_deletion"]:
        state += " although the deletion committed (lost deletion)"
    return f"{login}. {delete}. Afterwards {state}."
