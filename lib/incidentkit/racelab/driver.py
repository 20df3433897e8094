"""The two-connection driver: the login and the admin's deletion, stepped through an interleaving.

**The two sides.** The *login* is ``ensureUserWorkspace`` as the report quotes it, as SQL
steps on one connection in its own transaction (READ COMMITTED, the app's default, unless
the strategy says otherwise): read the user, read the user's membership (``order by
is_primary desc, joined_at desc limit 1``), insert the user with that workspace as primary
``on conflict do nothing``; with no membership, the "no membership" path creates a new
workspace, the user and a primary membership. The *deletion* is an admin running ``delete
from workspaces where id = $1`` in a transaction on a second connection. Each cell starts
from fresh data: workspace W and an invite membership of the new user U in W (no user row).

**Stepping.** Each side runs in a worker thread that stops at named pause points (see
:mod:`.cells` for the interleavings); the driver releases them in the interleaving's order.
When a released step blocks, the driver sees it through PostgreSQL itself --
``pg_blocking_pids(pid)`` / ``pg_stat_activity.wait_event_type = 'Lock'`` polled on a third,
monitoring connection -- and moves on to the next step of the other side; it never sleeps
and hopes. Every statement's start, end, SQLSTATE and observed blockers are recorded, hence
who waited on whom and for how long. ``lock_timeout`` (5 s) and ``deadlock_timeout``
(100 ms) on both sides, a cancel (``pg_cancel_backend``) of a side still blocked 1 s after
the other side finished, and a 20 s bound per cell mean that no cell can hang.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..exceptions import ConfigError, QueryFailed
from .cells import FALLBACK_WORKSPACE_NAME, INTERLEAVINGS, USER_ID, WORKSPACE_ID, CellResult, make_result
from .safety import connect, error_text, lab_error, prepare_database
from .sql import (
    SQL_BACKEND_PID,
    SQL_BEGIN,
    SQL_CANCEL_BACKEND,
    SQL_CHECK_WORKSPACE,
    SQL_COMMIT,
    SQL_COUNT_ORPHANS,
    SQL_CREATE_WORKSPACE,
    SQL_DEADLOCK_TIMEOUT,
    SQL_DELETE_MEMBERSHIP,
    SQL_DELETE_WORKSPACE,
    SQL_FINAL_STATE,
    SQL_INSERT_PRIMARY_MEMBERSHIP,
    SQL_INSERT_USER,
    SQL_LOCK_WAITS,
    SQL_LOCK_WORKSPACE,
    SQL_RESET_DATA,
    SQL_ROLLBACK,
    SQL_SEED_INVITE,
    SQL_SEED_WORKSPACE,
    SQL_SELECT_MEMBERSHIP,
    SQL_SELECT_USER,
    SQL_SERVER_VERSION,
    SQL_SESSION_SETTINGS,
    template,
)
from .strategies import STRATEGIES, Strategy

#: Session settings of the two sides (the monitor gets ``MONITOR_LOCK_TIMEOUT``).
LOCK_TIMEOUT = "5s"
DEADLOCK_TIMEOUT = "100ms"
STATEMENT_TIMEOUT = "15s"
MONITOR_LOCK_TIMEOUT = "10s"
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
#: A side still blocked this long after the other side finished is cancelled (-> ``blocked``).
BLOCKED_GRACE_SECONDS = 1.0
#: No cell may take longer than this; what is still running is cancelled.
CELL_TIMEOUT_SECONDS = 20.0
_POLL_SECONDS = 0.001


# -- one side --------------------------------------------------------------------------------

@dataclass
class _Stmt:
    """One statement a side ran: its timings, rows, SQLSTATE and the blockers the monitor saw."""

    side: str
    label: str
    started: float
    ended: float | None = None
    rows: int | None = None
    sqlstate: str | None = None
    blockers: set[str] = field(default_factory=set)
    wait_event: str | None = None
    cancelled: bool = False
    attempt: int = 1


class _Side:
    """One side's connection, run by one worker thread that stops at named pause points."""

    def __init__(self, name: str, conn, pid: int, cond: threading.Condition):
        self.name = name
        self.conn = conn
        self.pid = pid
        self.cond = cond
        self.released: set[str] = set()
        self.paused_at: str | None = None
        self.done = False
        self.abandon = False
        self.current: _Stmt | None = None
        self.statements: list[_Stmt] = []
        self.attempt = 1
        self.result: dict[str, Any] = {}
        self.finished_at: float | None = None

    def pause(self, phase: str) -> None:
        with self.cond:
            if phase in self.released or self.abandon:
                return
            self.paused_at = phase
            self.cond.notify_all()
            while phase not in self.released and not self.abandon:
                self.cond.wait()
            self.paused_at = None

    def release(self, phase: str) -> None:
        with self.cond:
            self.released.add(phase)
            self.cond.notify_all()

    def settled(self) -> bool:
        return self.done or (self.paused_at is not None and self.paused_at not in self.released)

    def execute(self, label: str, query: str, params: Mapping[str, Any] | None = None):
        stmt = _Stmt(self.name, label, time.monotonic(), attempt=self.attempt)
        with self.cond:
            self.current = stmt
            self.statements.append(stmt)
        try:
            cur = self.conn.execute(query, params)
            stmt.rows = cur.rowcount
            return cur
        except Exception as exc:
            stmt.sqlstate = getattr(exc, "sqlstate", None) or type(exc).__name__
            raise
        finally:
            stmt.ended = time.monotonic()
            with self.cond:
                self.current = None
                self.cond.notify_all()

    def rollback(self) -> None:
        try:
            self.execute("rollback", SQL_ROLLBACK)
        except Exception:  # noqa: BLE001 - a dead connection is reported by the next cell
            pass

    def last_failed(self) -> _Stmt | None:
        for stmt in reversed(self.statements):
            if stmt.sqlstate:
                return stmt
        return None


# -- the two programs: the login (one strategy) and the deletion -------------------------------

def _insert_user(side: _Side, workspace_id: str) -> str:
    row = side.execute("insert user", SQL_INSERT_USER, {"user_id": USER_ID, "workspace_id": workspace_id}).fetchone()
    if row is None:  # on conflict do nothing: someone else created the user; read it
        row = side.execute("select user again", SQL_SELECT_USER, {"user_id": USER_ID}).fetchone()
        return str(row[1])
    return str(row[0])


def _no_membership_path(side: _Side) -> str:
    new_id = side.execute("create workspace", SQL_CREATE_WORKSPACE, {"name": FALLBACK_WORKSPACE_NAME}).fetchone()[0]
    chosen = _insert_user(side, str(new_id))
    side.execute("insert primary membership", SQL_INSERT_PRIMARY_MEMBERSHIP,
                 {"workspace_id": str(new_id), "user_id": USER_ID})
    return chosen


def _login_attempt(strategy: Strategy, side: _Side) -> tuple[str, str]:
    """One transaction of ``ensureUserWorkspace``: (primary workspace id, path taken)."""
    side.execute("begin", SQL_BEGIN[strategy.isolation])
    user = side.execute("select user", SQL_SELECT_USER, {"user_id": USER_ID}).fetchone()
    if user is not None:
        side.pause("write")
        side.pause("commit")
        side.execute("commit", SQL_COMMIT)
        return str(user[1]), "user already existed"
    membership = side.execute("select membership", SQL_SELECT_MEMBERSHIP, {"user_id": USER_ID}).fetchone()
    side.pause("write")
    if membership is None:
        chosen, path = _no_membership_path(side), "no membership: created a new workspace"
    else:
        membership_id, workspace_id = str(membership[0]), str(membership[1])
        found: Any = True
        if strategy.check == "exists":
            found = side.execute("check workspace exists", SQL_CHECK_WORKSPACE,
                                 {"workspace_id": workspace_id}).fetchone()
        elif strategy.check == "key_share":
            found = side.execute("lock workspace for key share", SQL_LOCK_WORKSPACE,
                                 {"workspace_id": workspace_id}).fetchone()
        if found:
            chosen, path = _insert_user(side, workspace_id), "membership: used its workspace"
        else:
            if strategy.delete_orphan_membership:
                side.execute("delete orphaned membership", SQL_DELETE_MEMBERSHIP, {"membership_id": membership_id})
            chosen, path = _no_membership_path(side), "workspace gone: created a new workspace"
    side.pause("commit")
    side.execute("commit", SQL_COMMIT)
    return chosen, path


def failed_attempt(exc: BaseException, side: "_Side", attempt: int) -> dict[str, Any]:
    """One failed attempt of a side's program, as the cell records it (read before any rollback)."""
    failed = side.last_failed()
    return {"attempt": attempt, "outcome": _classify(exc, failed), "sqlstate": getattr(exc, "sqlstate", None),
            "step": failed.label if failed else None, "error": error_text(exc), "constraint": _constraint(exc)}


def _login_program(strategy: Strategy, side: _Side) -> dict[str, Any]:
    side.pause("start")
    attempts: list[dict[str, Any]] = []
    for attempt in range(1, strategy.max_attempts + 1):
        side.attempt = attempt
        try:
            chosen, path = _login_attempt(strategy, side)
        except Exception as exc:  # noqa: BLE001 - every failure is an observed outcome
            entry = failed_attempt(exc, side, attempt)
            side.rollback()
            attempts.append(entry)
            if entry["sqlstate"] in strategy.retry_sqlstates and attempt < strategy.max_attempts:
                continue
            return {"outcome": entry["outcome"], "error": entry["error"], "sqlstate": entry["sqlstate"],
                    "constraint": entry["constraint"], "workspace_id": None, "path": None, "attempts": attempts}
        attempts.append({"attempt": attempt, "outcome": "ok", "path": path})
        return {"outcome": "ok", "error": None, "sqlstate": None, "constraint": None,
                "workspace_id": chosen, "path": path, "attempts": attempts}
    raise AssertionError("unreachable: the loop returns")  # pragma: no cover


def _delete_program(side: _Side, end: str) -> dict[str, Any]:
    return delete_program(side, end, "delete workspace", SQL_DELETE_WORKSPACE, {"workspace_id": WORKSPACE_ID})


def delete_program(side: _Side, end: str, label: str, statement: str, params: dict[str, Any]) -> dict[str, Any]:
    """The deleting side of a cell: delete the referenced row in a transaction that ends with ``end``
    (commit or rollback) when the schedule releases it; an error is its outcome."""
    side.pause("start")
    try:
        side.execute("begin", SQL_BEGIN["read committed"])
        rows = side.execute(label, statement, params).rowcount
        side.pause("end")
        side.execute(end, SQL_COMMIT if end == "commit" else SQL_ROLLBACK)
    except Exception as exc:  # noqa: BLE001
        failed = side.last_failed()
        side.rollback()
        return {"outcome": _classify(exc, failed), "error": error_text(exc),
                "sqlstate": getattr(exc, "sqlstate", None), "constraint": _constraint(exc),
                "rows": None, "end": "rolled back after the error", "step": failed.label if failed else None}
    return {"outcome": "ok", "error": None, "sqlstate": None, "constraint": None, "rows": rows, "end": end}


# -- the interleavings and the lab ---------------------------------------------------------------

#: Each interleaving: the pause points to release, in order, and how the deletion ends.
_SCHEDULES: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "no_concurrent_delete": (
        (("login", "start"), ("login", "write"), ("login", "commit"), ("delete", "start"), ("delete", "end")),
        "commit"),
    "delete_before_read": (
        (("delete", "start"), ("delete", "end"), ("login", "start"), ("login", "write"), ("login", "commit")),
        "commit"),
    "delete_between_read_and_insert": (
        (("login", "start"), ("delete", "start"), ("delete", "end"), ("login", "write"), ("login", "commit")),
        "commit"),
    "delete_in_flight_commit": (
        (("login", "start"), ("delete", "start"), ("login", "write"), ("delete", "end"), ("login", "commit")),
        "commit"),
    "delete_in_flight_rollback": (
        (("login", "start"), ("delete", "start"), ("login", "write"), ("delete", "end"), ("login", "commit")),
        "rollback"),
}


class _Lab:
    """The three connections of one lab run (login, delete, monitor) on the scratch database."""

    def __init__(self, url: str):
        self.url = url
        self._opened: list = []
        try:
            self._open(url)
        except BaseException:
            self.close()
            raise

    def _open(self, url: str) -> None:
        self.monitor = self._track(connect(url, "monitor"))
        # The monitor resets data between cells: never let that wait forever either.
        self.monitor.execute(SQL_SESSION_SETTINGS, {"lock": MONITOR_LOCK_TIMEOUT, "statement": STATEMENT_TIMEOUT,
                                                    "idle": IDLE_IN_TRANSACTION_TIMEOUT})
        self.login_conn = self._track(connect(url, "login"))
        self.delete_conn = self._track(connect(url, "delete"))
        for conn in (self.login_conn, self.delete_conn):
            conn.execute(SQL_SESSION_SETTINGS, {"lock": LOCK_TIMEOUT, "statement": STATEMENT_TIMEOUT,
                                                "idle": IDLE_IN_TRANSACTION_TIMEOUT})
            try:
                conn.execute(SQL_DEADLOCK_TIMEOUT, {"deadlock": DEADLOCK_TIMEOUT})
            except Exception:  # noqa: BLE001 - needs superuser or SET privilege; the default (1 s) is fine too
                pass
        self.pids = {
            "login": self.login_conn.execute(SQL_BACKEND_PID).fetchone()[0],
            "delete": self.delete_conn.execute(SQL_BACKEND_PID).fetchone()[0],
        }
        self.server = "PostgreSQL " + str(self.monitor.execute(SQL_SERVER_VERSION).fetchone()[0])

    def _track(self, conn):
        self._opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in reversed(self._opened):
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._opened.clear()

    # -- one cell ----------------------------------------------------------------------
    def reset(self, strategy: Strategy) -> dict[str, Any]:
        """Fresh data for a cell: W, U's invite membership in W, then the strategy's setup SQL."""
        self.monitor.execute(SQL_RESET_DATA)
        self.monitor.execute(SQL_SEED_WORKSPACE, {"workspace_id": WORKSPACE_ID, "name": "Invited workspace W"})
        self.monitor.execute(SQL_SEED_INVITE, {"workspace_id": WORKSPACE_ID, "user_id": USER_ID})
        setup: dict[str, Any] = {}
        for name in strategy.setup_files:
            orphans = int(self.monitor.execute(SQL_COUNT_ORPHANS).fetchone()[0])
            self.monitor.execute(template(name))
            setup[name] = {"ran": True, "orphaned_memberships_before": orphans}
        return setup

    def poll(self, sides: Sequence[_Side]) -> set[str]:
        """Ask PostgreSQL which sides wait on a lock now; note the blockers on the statement."""
        current = {s.name: s.current for s in sides}
        by_pid = {s.pid: s for s in sides}
        names = {s.pid: s.name for s in sides}
        blocked: set[str] = set()
        rows = self.monitor.execute(SQL_LOCK_WAITS, {"pids": list(by_pid)}).fetchall()
        for pid, blockers, wait_type, wait_event in rows:
            if not blockers:
                continue
            side = by_pid[pid]
            stmt = current[side.name]
            # Count the wait only when it is pinned to one statement (the same before and after
            # the query); otherwise the next poll sees it again, attributed.
            if stmt is not None and side.current is stmt:
                blocked.add(side.name)
                stmt.blockers |= {names.get(b, f"pid {b}") for b in blockers}
                stmt.wait_event = f"{wait_type}/{wait_event}" if wait_type else stmt.wait_event
        return blocked

    def settle(self, side: _Side, sides: Sequence[_Side], deadline: float) -> None:
        """Wait until ``side`` pauses, finishes, or PostgreSQL shows it waiting on a lock."""
        while time.monotonic() < deadline:
            with side.cond:
                if side.settled():
                    return
            if side.name in self.poll(sides):
                return
            with side.cond:
                if not side.settled():
                    side.cond.wait(_POLL_SECONDS)

    def cancel(self, side: _Side) -> None:
        """Cancel the side's running statement (once per statement): it ends as ``blocked``."""
        stmt = side.current
        if stmt is None or stmt.cancelled:
            return
        stmt.cancelled = True
        self.monitor.execute(SQL_CANCEL_BACKEND, {"pid": side.pid})

    def finish(self, sides: Sequence[_Side], deadline: float) -> None:
        """All pause points are released: wait for both sides, cancelling a side stuck on a lock."""
        while True:
            with sides[0].cond:
                if all(s.done for s in sides):
                    return
            now = time.monotonic()
            blocked = self.poll(sides)
            for s in sides:
                others = [o for o in sides if o is not s]
                if s.done or s.name not in blocked:
                    continue
                ended = [o.finished_at for o in others if o.done and o.finished_at is not None]
                if now >= deadline or (len(ended) == len(others) and now - max(ended) > BLOCKED_GRACE_SECONDS):
                    self.cancel(s)
            if now >= deadline + 5.0:
                for s in sides:
                    s.abandon = True
                    if not s.done:
                        self.cancel(s)
                with sides[0].cond:
                    sides[0].cond.notify_all()
                if now >= deadline + 10.0:
                    raise QueryFailed("a race lab cell did not finish in time; its connections were cancelled")
            with sides[0].cond:
                if not all(s.done for s in sides):
                    sides[0].cond.wait(_POLL_SECONDS * 5)

    def race(self, login_program: Callable[["_Side"], dict[str, Any]],
             delete_program: Callable[["_Side", str], dict[str, Any]], interleaving: str,
             name: str = "racelab") -> tuple["_Side", "_Side", float, float]:
        """Run the two sides' programs on their connections, stepped through ``interleaving``'s
        schedule; returns the two sides (with their results), the start time and the elapsed time.
        A program's exception is recorded as its side's ``error`` outcome, never lost."""
        schedule, end = _SCHEDULES[interleaving]
        cond = threading.Condition()
        login = _Side("login", self.login_conn, self.pids["login"], cond)
        delete = _Side("delete", self.delete_conn, self.pids["delete"], cond)
        sides = (login, delete)
        programs: dict[str, Callable[[], dict[str, Any]]] = {
            "login": lambda: login_program(login),
            "delete": lambda: delete_program(delete, end),
        }

        def run(side: _Side) -> None:
            try:
                side.result = programs[side.name]()
            except Exception as exc:  # noqa: BLE001 - recorded, never lost
                side.result = {"outcome": "error", "error": error_text(exc), "sqlstate": None}
            finally:
                with cond:
                    side.done = True
                    side.finished_at = time.monotonic()
                    cond.notify_all()

        t0 = time.monotonic()
        deadline = t0 + CELL_TIMEOUT_SECONDS
        threads = [threading.Thread(target=run, args=(s,), name=f"{name}-{s.name}", daemon=True) for s in sides]
        for t in threads:
            t.start()
        for s in sides:
            self.settle(s, sides, deadline)
        by_name = {s.name: s for s in sides}
        for side_name, phase in schedule:
            by_name[side_name].release(phase)
            self.settle(by_name[side_name], sides, deadline)
        self.finish(sides, deadline)
        for t in threads:
            t.join(timeout=5)
        return login, delete, t0, time.monotonic() - t0

    def run_cell(self, strategy: Strategy, interleaving: str, *,
                 after_reset: Callable[[], None] | None = None) -> CellResult:
        """One cell. ``after_reset`` (tests only) runs once the data are fresh, before the sides start."""
        setup = self.reset(strategy)
        if after_reset is not None:
            after_reset()
        schedule, _ = _SCHEDULES[interleaving]
        login, delete, t0, elapsed = self.race(
            lambda side: _login_program(strategy, side), lambda side, end: _delete_program(side, end), interleaving)
        final = self.monitor.execute(SQL_FINAL_STATE, {"workspace_id": WORKSPACE_ID, "user_id": USER_ID}).fetchone()
        return make_result(strategy.name, interleaving, login, delete, final, setup, schedule, t0, elapsed, self.server)


# -- errors as outcomes ------------------------------------------------------------------------

def _classify(exc: BaseException, stmt: "_Stmt | None" = None) -> str:
    """The outcome value (:data:`~.cells.OUTCOMES`) of a failed statement."""
    state = getattr(exc, "sqlstate", None)
    if state == "23503":
        return "fk_violation"
    if state == "40P01":
        return "deadlock"
    if state == "40001":
        return "serialization_failure"
    if state == "55P03":
        return "blocked"
    if state == "57014" and stmt is not None and (stmt.blockers or stmt.cancelled):
        return "blocked"
    return "error"


def _constraint(exc: BaseException) -> str | None:
    diag = getattr(exc, "diag", None)
    return getattr(diag, "constraint_name", None) if diag is not None else None


# -- running -----------------------------------------------------------------------------------

def _select(names: Iterable[Any] | None, known: Sequence[str], what: str) -> list[str]:
    if names is None:
        return list(known)
    if isinstance(names, (str, Strategy)):
        names = [names]
    out = []
    for n in names:
        name = n.name if isinstance(n, Strategy) else str(n)
        if name not in known:
            raise ConfigError(f"unknown {what} {name!r} (known: {', '.join(known)})")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"no {what} selected")
    return out


def run_cells(run_cell: Callable[[str, str], Any], strategies: list[str], interleavings: list[str]) -> list:
    """``run_cell(strategy, interleaving)`` for every strategy under every interleaving, in that
    order, with the progress line of :func:`cells_progress`."""
    show = cells_progress(len(strategies), len(interleavings))
    results = []
    for s in strategies:
        for i in interleavings:
            results.append(run_cell(s, i))
            show(len(results))
    return results


def cells_progress(strategies: int, interleavings: int) -> Callable[[int], None]:
    """``show(done)``: on a terminal, one line rewritten as the lab's cells are done (``race lab: 7
    of 35 cells``, strategies × interleavings), ended when all are; silent when stderr is no
    terminal (a pipe, a file, a notebook's kernel)."""
    import sys

    total = strategies * interleavings
    on = sys.stderr.isatty()

    def show(done: int) -> None:
        if on:
            end = "\n" if done >= total else ""
            print(f"\r  race lab: {done} of {total} cells ({strategies} strateg{'y' if strategies == 1 else 'ies'}"
                  f" × {interleavings} interleaving{'' if interleavings == 1 else 's'})", end=end, file=sys.stderr,
                  flush=True)

    return show


def run_race_lab(scratch_url: str | None = None, *, strategies=None, interleavings=None) -> list[CellResult]:
    """Run every strategy under every interleaving on a scratch database; one result per cell.

    ``scratch_url`` None: a database of its own on the kit's embedded server, dropped at the
    end. Otherwise that database, which must be empty or the lab's own (else
    :class:`UnsafeTarget`). ``strategies``/``interleavings`` narrow the matrix (names or
    :class:`Strategy` objects from :data:`STRATEGIES`).
    """
    strategy_names = _select(strategies, list(STRATEGIES), "strategy")
    interleaving_names = _select(interleavings, INTERLEAVINGS, "interleaving")
    server = None
    dbname = None
    if scratch_url is None:
        from ..db import embedded

        server = embedded.ensure_server()
        dbname = f"incidentkit_racelab_{os.getpid()}"
        url = server.create_database(dbname, replace=True)
    else:
        url = scratch_url
    try:
        prepare_database(url)
        lab = _Lab(url)
        try:
            return run_cells(lambda s, i: lab.run_cell(STRATEGIES[s], i), strategy_names, interleaving_names)
        except Exception as exc:  # noqa: BLE001 - the lab's own connections failing, scrubbed
            raise lab_error(exc, url) from None
        finally:
            lab.close()
    finally:
        if server is not None and dbname is not None:
            server.drop_database(dbname)
