"""The race lab: run the report's fixes against the race, on a real PostgreSQL, step by step.

The diagnosis report blames a race between a user's first login (``ensureUserWorkspace``)
and an admin deleting the workspace the user was invited to, and proposes fixes that
nobody ran against that race. The lab runs them. Nothing here is predicted: every cell of
the matrix comes from running the steps on two real connections.

**Target.** By default the lab creates its own database on the kit's embedded server
(:func:`incidentkit.embedded.ensure_server`), named ``incidentkit_racelab_<pid>``, and drops
it when done. It never reads ``$DATABASE_URL``. ``scratch_url`` may name another scratch
database explicitly: the lab then refuses (:class:`~incidentkit.exceptions.UnsafeTarget`)
any database holding a table it did not create. It marks what it creates with a marker
table ``incidentkit_racelab.marker`` (and a ``comment on database`` when allowed) and
accepts only an empty database or one holding exactly its own tables next to that marker.

**Schema.** The reference schema (``sql/reference_schema.sql``), except that its audit
schema is dropped and re-created from the remediation template ``03_audit_trigger.sql``,
so every run also exercises that template (each cell checks that a committed deletion of
the workspace was logged).

**The two sides.** The *login* is ``ensureUserWorkspace`` as the report quotes it, as SQL
steps on one connection in its own transaction (READ COMMITTED, the app's default, unless
the strategy says otherwise): read the user, read the user's membership (``order by
is_primary desc, joined_at desc limit 1``), insert the user with that workspace as primary
``on conflict do nothing``; with no membership, the "no membership" path creates a new
workspace, the user and a primary membership. The *deletion* is an admin running ``delete
from workspaces where id = $1`` in a transaction on a second connection. Each cell starts
from fresh data: workspace W and an invite membership of the new user U in W (no user row).

**Interleavings** (:data:`INTERLEAVINGS`). The login has three pause points: before it
begins, right after it has read the membership (before anything else: validation, lock,
insert), and before its commit. The deletion has two: before it begins, and between its
delete statement and its commit/rollback. An interleaving is the order in which a driver
releases those points (a deletion that starts after the login's insert, before its commit,
is not among them). When a released step blocks, the driver sees it through PostgreSQL
itself -- ``pg_blocking_pids(pid)`` / ``pg_stat_activity.wait_event_type = 'Lock'`` polled
on a third, monitoring connection -- and moves on to the next step of the other side; it
never sleeps and hopes. Every statement's start, end, SQLSTATE and observed blockers are
recorded, hence who waited on whom and for how long. ``lock_timeout`` (5 s) and
``deadlock_timeout`` (100 ms) on both sides, a cancel (``pg_cancel_backend``) of a side
still blocked 1 s after the other side finished, and a 20 s bound per cell mean that no
cell can hang.

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

**Conclusions** derive from the results only: a strategy *closes the race* when its login
ended ``ok`` in every interleaving run and no deletion was lost (a deletion that committed
while W still exists afterwards). The *recommended* strategy is the cheapest of those:
fewest deleting-side failures and waits, then fewest login attempts thrown away, then
fewest statements on the uncontended path (``no_concurrent_delete``).

**Remediation SQL** (:func:`write_remediation`): templates in ``sql/remediation/``, rendered
with a header that states how each was verified in the lab run. The kit never runs them
against a real database.
"""

from __future__ import annotations

import os
import re
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .. import config
from ..exceptions import ConfigError, ConnectionFailed, QueryFailed, UnsafeTarget

# -- vocabulary -------------------------------------------------------------------------------

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
_FAILURES = frozenset({"fk_violation", "deadlock", "serialization_failure", "error"})

#: The incident's own identifiers: the error text the lab records reads like the report's.
USER_ID = "did:privy:cmgiqkpg0001wl40cqhofcvo4"
WORKSPACE_ID = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"
FALLBACK_WORKSPACE_NAME = "Personal workspace"

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

MARKER_SCHEMA = "incidentkit_racelab"
MARKER_TOKEN = "incidentkit racelab scratch database"
_OWN_TABLES = frozenset({
    ("public", "workspaces"), ("public", "users"), ("public", "workspace_members"),
    ("audit", "logged_actions"), (MARKER_SCHEMA, "marker"),
})

REMEDIATION_DIR = config.SQL_DIR / "remediation"
REFERENCE_SCHEMA = config.SQL_DIR / "reference_schema.sql"
CLEANUP_FILE = "01_orphan_memberships_cleanup.sql"
CASCADE_FILE = "02_workspace_members_cascade.sql"
AUDIT_FILE = "03_audit_trigger.sql"
REMEDIATION_FILES: tuple[str, ...] = (CLEANUP_FILE, CASCADE_FILE, AUDIT_FILE)
_VERIFIED_MARK = "-- @VERIFIED@"

# -- SQL: the login's steps ----------------------------------------------------------------

SQL_BEGIN: dict[str, str] = {
    "read committed": "begin isolation level read committed",
    "serializable": "begin isolation level serializable",
}
SQL_COMMIT = "commit"
SQL_ROLLBACK = "rollback"
SQL_SELECT_USER = "select privy_did, primary_workspace_id from users where privy_did = %(user_id)s"
SQL_SELECT_MEMBERSHIP = (
    "select id, workspace_id from workspace_members where user_id = %(user_id)s"
    " order by is_primary desc, joined_at desc limit 1"
)
SQL_CHECK_WORKSPACE = "select id from workspaces where id = %(workspace_id)s limit 1"
SQL_LOCK_WORKSPACE = "select id from workspaces where id = %(workspace_id)s for key share"
SQL_INSERT_USER = (
    "insert into users (privy_did, primary_workspace_id) values (%(user_id)s, %(workspace_id)s)"
    " on conflict do nothing returning primary_workspace_id"
)
SQL_DELETE_MEMBERSHIP = "delete from workspace_members where id = %(membership_id)s"
SQL_CREATE_WORKSPACE = "insert into workspaces (name) values (%(name)s) returning id"
SQL_INSERT_PRIMARY_MEMBERSHIP = (
    "insert into workspace_members (workspace_id, user_id, is_primary)"
    " values (%(workspace_id)s, %(user_id)s, true)"
)

# -- SQL: the deletion -----------------------------------------------------------------------

SQL_DELETE_WORKSPACE = "delete from workspaces where id = %(workspace_id)s"

# -- SQL: the lab's own housekeeping ---------------------------------------------------------

SQL_SESSION_SETTINGS = (
    "select set_config('lock_timeout', %(lock)s, false),"
    " set_config('statement_timeout', %(statement)s, false),"
    " set_config('idle_in_transaction_session_timeout', %(idle)s, false)"
)
SQL_DEADLOCK_TIMEOUT = "select set_config('deadlock_timeout', %(deadlock)s, false)"
SQL_BACKEND_PID = "select pg_backend_pid()"
SQL_SERVER_VERSION = "select current_setting('server_version')"
SQL_LOCK_WAITS = (
    "select pid, pg_blocking_pids(pid) as blockers, wait_event_type, wait_event"
    " from pg_stat_activity where pid = any(%(pids)s)"
)
SQL_CANCEL_BACKEND = "select pg_cancel_backend(%(pid)s)"
SQL_USER_TABLES = (
    "select n.nspname, c.relname, c.relkind from pg_class c"
    " join pg_namespace n on n.oid = c.relnamespace"
    " where c.relkind in ('r', 'p', 'f', 'v', 'm')"
    " and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'"
    " order by 1, 2"
)
SQL_READ_MARKER = f"select created_by from {MARKER_SCHEMA}.marker"
SQL_CREATE_MARKER = (
    f"create schema if not exists {MARKER_SCHEMA};"
    f" create table if not exists {MARKER_SCHEMA}.marker"
    " (created_by text not null, created_at timestamptz not null default now())"
)
SQL_INSERT_MARKER = f"insert into {MARKER_SCHEMA}.marker (created_by) values (%(token)s)"
SQL_DROP_OWN_TABLES = (
    "drop table if exists public.users, public.workspace_members, public.workspaces cascade;"
    " drop schema if exists audit cascade"
)
SQL_DROP_AUDIT = "drop schema if exists audit cascade"
SQL_CURRENT_DATABASE = "select current_database()"
SQL_RESET_DATA = "truncate users, workspace_members, workspaces, audit.logged_actions restart identity"
SQL_SEED_WORKSPACE = "insert into workspaces (id, name) values (%(workspace_id)s, %(name)s)"
SQL_SEED_INVITE = (
    "insert into workspace_members (workspace_id, user_id, is_primary)"
    " values (%(workspace_id)s, %(user_id)s, false)"
)
SQL_COUNT_ORPHANS = (
    "select count(*) from workspace_members wm"
    " where not exists (select 1 from workspaces w where w.id = wm.workspace_id)"
)
SQL_FINAL_STATE = (
    "select exists (select 1 from workspaces where id = %(workspace_id)s) as workspace_exists,"
    " (select primary_workspace_id from users where privy_did = %(user_id)s) as user_primary,"
    " (select count(*) from workspace_members where user_id = %(user_id)s) as memberships,"
    " (select count(*) from audit.logged_actions where table_name = 'workspaces' and action = 'D'"
    "   and row_data ->> 'id' = %(workspace_id)s::text) as audited_deletes"
)

# -- strategies --------------------------------------------------------------------------------

_TS_ORIGINAL = """\
// packages/web/src/server/utils/workspace.ts (as the report quotes it)
if (!user) {
  const existingMembershipRows = await tx
    .select()
    .from(workspaceMembers)
    .where(eq(workspaceMembers.userId, userId))
    .orderBy(desc(workspaceMembers.isPrimary), desc(workspaceMembers.joinedAt))
    .limit(1);

  const existingMembership = existingMembershipRows[0];
  let primaryWorkspaceId: string;

  if (existingMembership) {
    primaryWorkspaceId = existingMembership.workspaceId;
    const inserted = await tx
      .insert(users)
      .values({ privyDid: userId, primaryWorkspaceId })
      .onConflictDoNothing()
      .returning();
    // ...
  } else {
    // "no membership" path: create a workspace, the user, a primary membership
  }
}
"""

_TS_OPTION1 = """\
// Report, Option 1 (defensive validation)
if (existingMembership) {
  const workspaceRows = await tx
    .select()
    .from(workspaces)
    .where(eq(workspaces.id, existingMembership.workspaceId))
    .limit(1);

  if (workspaceRows.length > 0) {
    primaryWorkspaceId = existingMembership.workspaceId;
    const inserted = await tx
      .insert(users)
      .values({ privyDid: userId, primaryWorkspaceId })
      .onConflictDoNothing()
      .returning();
    // ... rest of logic
  } else {
    // Orphaned membership detected: follow the "no membership" path
    const tempWorkspaceId = randomUUID();
    // ... existing code for creating a new workspace
  }
}
"""

_TS_OPTION2 = """\
// Report, Option 2 / "Proposed Fix (Combined Approach)":
// once: run 01_orphan_memberships_cleanup.sql; then in ensureUserWorkspace:
if (existingMembership) {
  const workspaceRows = await tx
    .select()
    .from(workspaces)
    .where(eq(workspaces.id, existingMembership.workspaceId))
    .limit(1);

  if (workspaceRows.length > 0) {
    primaryWorkspaceId = existingMembership.workspaceId;
    const inserted = await tx
      .insert(users)
      .values({ privyDid: userId, primaryWorkspaceId })
      .onConflictDoNothing()
      .returning();
    // ... rest of logic
  } else {
    console.warn(`Orphaned workspace membership detected for user ${userId}, workspace ${existingMembership.workspaceId}`);
    await tx.delete(workspaceMembers).where(eq(workspaceMembers.id, existingMembership.id));
    const tempWorkspaceId = randomUUID();
    // ... existing code for creating a new workspace
  }
} else {
  // ... existing code
}
"""

_TS_OPTION3 = """\
// Report, Option 3: migration 02_workspace_members_cascade.sql, and in the Drizzle schema
// (packages/web/src/db/schema/workspaces.ts) -- which the report shows already reads:
workspaceId: uuid('workspace_id')
  .notNull()
  .references(() => workspaces.id, { onDelete: 'cascade' }),
// ensureUserWorkspace itself is unchanged (the seed_original code).
// users.primaryWorkspaceId -> workspaces.id keeps no onDelete action.
"""

_TS_LOCK = """\
// packages/web/src/server/utils/workspace.ts, inside the existing db.transaction(async (tx) => ...)
if (existingMembership) {
  // Lock the membership's workspace row FOR KEY SHARE (the lock the FK check itself takes)
  // before using it. A concurrent DELETE of that workspace has then either committed
  // (no row comes back) or it is still running (this select waits for it to end).
  const [workspace] = await tx
    .select({ id: workspaces.id })
    .from(workspaces)
    .where(eq(workspaces.id, existingMembership.workspaceId))
    .for('key share');

  if (workspace) {
    primaryWorkspaceId = workspace.id;
    const inserted = await tx
      .insert(users)
      .values({ privyDid: userId, primaryWorkspaceId })
      .onConflictDoNothing()
      .returning();
    // ... rest of logic unchanged
  } else {
    // The workspace is gone: take the existing "no membership" path
    // (create a new workspace, the user, and a primary membership).
  }
} else {
  // ... existing "no membership" path, unchanged
}
"""

_TS_RETRY_FK = """\
// packages/web/src/server/utils/workspace.ts: move the body of ensureUserWorkspace's
// transaction, unchanged, into ensureUserWorkspaceTx(tx, userId), and retry the whole
// transaction (which re-reads the membership) when the FK check fails (SQLSTATE 23503).
const MAX_ATTEMPTS = 3;

export async function ensureUserWorkspace(userId: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction((tx) => ensureUserWorkspaceTx(tx, userId));
    } catch (err) {
      const code = (err as any)?.code ?? (err as any)?.cause?.code; // pg error, or wrapped by Drizzle
      if (code === '23503' && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}
"""

_TS_SERIALIZABLE = """\
// packages/web/src/server/utils/workspace.ts: run the unchanged body as SERIALIZABLE
// and retry the whole transaction on serialization failures (SQLSTATE 40001).
const MAX_ATTEMPTS = 3;

export async function ensureUserWorkspace(userId: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction((tx) => ensureUserWorkspaceTx(tx, userId), {
        isolationLevel: 'serializable',
      });
    } catch (err) {
      const code = (err as any)?.code ?? (err as any)?.cause?.code;
      if (code === '40001' && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}
"""


@dataclass(frozen=True)
class Strategy:
    """One way of writing the login, as the SQL steps an app engineer would apply.

    The login program is the same for every strategy; these fields switch its steps on:
    ``check`` is what it does with the membership's workspace before the insert (nothing,
    ``"exists"``: a plain select, or ``"key_share"``: ``select ... for key share``);
    ``delete_orphan_membership`` deletes the membership when its workspace is gone;
    ``isolation``, ``retry_sqlstates`` and ``max_attempts`` say how the transaction runs
    and when it is re-run from the start (re-reading the membership). ``setup_files`` are
    remediation templates applied to the scratch database before each cell.
    ``typescript`` is the code change in the app (Drizzle), for the report.
    """

    name: str
    description: str
    typescript: str
    check: str | None = None
    delete_orphan_membership: bool = False
    isolation: str = "read committed"
    retry_sqlstates: tuple[str, ...] = ()
    max_attempts: int = 1
    setup_files: tuple[str, ...] = ()

    @property
    def steps(self) -> tuple[tuple[str, str], ...]:
        """``(label, SQL)`` in the order the login issues them (branches labelled)."""
        out: list[tuple[str, str]] = [
            ("begin", SQL_BEGIN[self.isolation]),
            ("select user", SQL_SELECT_USER),
            ("select membership", SQL_SELECT_MEMBERSHIP),
        ]
        if self.check == "exists":
            out.append(("[membership] check workspace exists", SQL_CHECK_WORKSPACE))
        elif self.check == "key_share":
            out.append(("[membership] lock workspace for key share", SQL_LOCK_WORKSPACE))
        out.append(("[membership%s] insert user" % (", workspace found" if self.check else ""), SQL_INSERT_USER))
        if self.delete_orphan_membership:
            out.append(("[workspace gone] delete orphaned membership", SQL_DELETE_MEMBERSHIP))
        fallback = "[no membership or workspace gone]" if self.check else "[no membership]"
        out += [
            (f"{fallback} create workspace", SQL_CREATE_WORKSPACE),
            (f"{fallback} insert user", SQL_INSERT_USER),
            (f"{fallback} insert primary membership", SQL_INSERT_PRIMARY_MEMBERSHIP),
            ("commit", SQL_COMMIT),
        ]
        if self.retry_sqlstates:
            states = ", ".join(self.retry_sqlstates)
            out.append((f"[on SQLSTATE {states}] rollback, then re-run from begin "
                        f"(at most {self.max_attempts} attempts)", SQL_ROLLBACK))
        return tuple(out)

    @property
    def sql(self) -> str:
        """The steps as one commented SQL script (for the report)."""
        lines = [f"-- strategy {self.name}: {self.description}"]
        for f in self.setup_files:
            lines.append(f"-- before: the remediation file {f}")
        for label, stmt in self.steps:
            lines.append(f"-- {label}")
            lines.append(stmt.rstrip(";") + ";")
        return "\n".join(lines) + "\n"


def _strategies() -> dict[str, Strategy]:
    items = [
        Strategy(
            "seed_original",
            "the code as the report quotes it: read the membership, insert the user with its workspace",
            _TS_ORIGINAL,
        ),
        Strategy(
            "seed_option1_validate",
            "the report's Option 1: check that the membership's workspace exists (plain select), "
            "else take the no-membership path",
            _TS_OPTION1,
            check="exists",
        ),
        Strategy(
            "seed_option2_cleanup",
            "the report's Option 2: the orphan cleanup SQL, plus Option 1's check that also deletes "
            "the orphaned membership before the no-membership path",
            _TS_OPTION2,
            check="exists",
            delete_orphan_membership=True,
            setup_files=(CLEANUP_FILE,),
        ),
        Strategy(
            "seed_option3_cascade",
            "the report's Option 3: the ON DELETE CASCADE migration on workspace_members "
            "(the users foreign key keeps no ON DELETE action); login code unchanged",
            _TS_OPTION3,
            setup_files=(CASCADE_FILE,),
        ),
        Strategy(
            "lock_workspace_for_key_share",
            "lock the membership's workspace with select ... for key share before the insert; "
            "when no row comes back (deleted), take the no-membership path",
            _TS_LOCK,
            check="key_share",
        ),
        Strategy(
            "retry_on_fk_violation",
            "the original code, with the whole transaction retried (re-reading the membership) "
            "on SQLSTATE 23503, at most 3 attempts",
            _TS_RETRY_FK,
            retry_sqlstates=("23503",),
            max_attempts=3,
        ),
        Strategy(
            "serializable_retry",
            "the original code in a SERIALIZABLE transaction (the login only; the admin's deletion "
            "is unchanged), retried on SQLSTATE 40001, at most 3 attempts",
            _TS_SERIALIZABLE,
            isolation="serializable",
            retry_sqlstates=("40001",),
            max_attempts=3,
        ),
    ]
    return {s.name: s for s in items}


#: Every strategy the lab runs, by name.
STRATEGIES: dict[str, Strategy] = _strategies()


# -- results ---------------------------------------------------------------------------------

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


# -- errors and URLs ---------------------------------------------------------------------------

def _error_text(exc: BaseException) -> str:
    """The error as PostgreSQL gives it: message, then ``DETAIL:`` when there is one."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        return " ".join(str(exc).split()) or type(exc).__name__
    detail = getattr(diag, "message_detail", None)
    return f"{primary}\nDETAIL:  {detail}" if detail else primary


def _classify(exc: BaseException, stmt: "_Stmt | None" = None) -> str:
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


def _url_parts(url: str) -> dict[str, str]:
    import psycopg

    if not isinstance(url, str) or not url.strip():
        raise ConfigError("scratch_url is empty")
    try:
        return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(url).items() if v is not None}
    except psycopg.Error:
        raise ConfigError("scratch_url is not a valid libpq URL (postgresql://user@host:port/dbname)") from None


def _describe(parts: Mapping[str, str]) -> str:
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    return f"database {parts.get('dbname') or parts.get('user') or '?'!r} on {host}:{port}"


def _scrub(text: str, url: str, parts: Mapping[str, str]) -> str:
    out = str(text)
    for secret in sorted({url, parts.get("password", "")}, key=len, reverse=True):
        if secret:
            out = out.replace(secret, "***")
    out = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", out)
    out = re.sub(r"(password\s*=\s*)\S+", r"\1***", out, flags=re.I)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    return (lines[0] if lines else "")[:300]


def _connect(url: str, role: str):
    import psycopg

    parts = _url_parts(url)
    try:
        return psycopg.connect(url, autocommit=True, application_name=f"incidentkit-racelab-{role}",
                               connect_timeout=10)
    except psycopg.Error as exc:
        raise ConnectionFailed(
            f"cannot connect to the race lab's scratch {_describe(parts)}: {_scrub(str(exc), url, parts)}"
        ) from None


# -- the scratch target ------------------------------------------------------------------------

def _template(name: str) -> str:
    return (REMEDIATION_DIR / name).read_text()


def _prepare_database(url: str) -> None:
    """Check the target is the lab's own (or empty), then (re)build the lab's schema in it."""
    parts = _url_parts(url)
    conn = _connect(url, "setup")
    try:
        tables = [(r[0], r[1]) for r in conn.execute(SQL_USER_TABLES).fetchall()]
        foreign = [t for t in tables if t not in _OWN_TABLES]
        where = _describe(parts)
        if foreign:
            shown = ", ".join(f"{s}.{t}" for s, t in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UnsafeTarget(f"refusing to run the race lab on {where}: it holds tables the lab did not "
                               f"create ({shown}); give it an empty scratch database")
        if tables:
            marked = (MARKER_SCHEMA, "marker") in tables and any(
                row[0] == MARKER_TOKEN for row in conn.execute(SQL_READ_MARKER).fetchall())
            if not marked:
                raise UnsafeTarget(f"refusing to run the race lab on {where}: it holds application tables "
                                   "the lab did not create (no race lab marker); give it an empty scratch database")
            conn.execute(SQL_DROP_OWN_TABLES)
        conn.execute(SQL_CREATE_MARKER)
        if not conn.execute(SQL_READ_MARKER).fetchall():
            conn.execute(SQL_INSERT_MARKER, {"token": MARKER_TOKEN})
        _comment_database(conn)
        conn.execute(REFERENCE_SCHEMA.read_text())
        conn.execute(SQL_DROP_AUDIT)
        conn.execute(_template(AUDIT_FILE))
    except UnsafeTarget:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error becomes one scrubbed line
        import psycopg

        if isinstance(exc, psycopg.Error):
            raise QueryFailed(f"preparing the race lab's {_describe(parts)} failed: "
                              f"{_scrub(_error_text(exc), url, parts)}") from None
        raise
    finally:
        conn.close()


def _comment_database(conn) -> None:
    """Mark the database itself too, when the role may (it is not required)."""
    import psycopg
    from psycopg import sql

    name = conn.execute(SQL_CURRENT_DATABASE).fetchone()[0]
    try:
        conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(MARKER_TOKEN)))
    except psycopg.Error:
        pass


# -- the step driver ---------------------------------------------------------------------------

@dataclass
class _Stmt:
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


def _login_program(strategy: Strategy, side: _Side) -> dict[str, Any]:
    side.pause("start")
    attempts: list[dict[str, Any]] = []
    for attempt in range(1, strategy.max_attempts + 1):
        side.attempt = attempt
        try:
            chosen, path = _login_attempt(strategy, side)
        except Exception as exc:  # noqa: BLE001 - every failure is an observed outcome
            failed = side.last_failed()
            side.rollback()
            outcome = _classify(exc, failed)
            entry = {"attempt": attempt, "outcome": outcome, "sqlstate": getattr(exc, "sqlstate", None),
                     "step": failed.label if failed else None, "error": _error_text(exc),
                     "constraint": _constraint(exc)}
            attempts.append(entry)
            if entry["sqlstate"] in strategy.retry_sqlstates and attempt < strategy.max_attempts:
                continue
            return {"outcome": outcome, "error": entry["error"], "sqlstate": entry["sqlstate"],
                    "constraint": entry["constraint"], "workspace_id": None, "path": None, "attempts": attempts}
        attempts.append({"attempt": attempt, "outcome": "ok", "path": path})
        return {"outcome": "ok", "error": None, "sqlstate": None, "constraint": None,
                "workspace_id": chosen, "path": path, "attempts": attempts}
    raise AssertionError("unreachable: the loop returns")  # pragma: no cover


def _delete_program(side: _Side, end: str) -> dict[str, Any]:
    side.pause("start")
    try:
        side.execute("begin", SQL_BEGIN["read committed"])
        rows = side.execute("delete workspace", SQL_DELETE_WORKSPACE, {"workspace_id": WORKSPACE_ID}).rowcount
        side.pause("end")
        side.execute(end, SQL_COMMIT if end == "commit" else SQL_ROLLBACK)
    except Exception as exc:  # noqa: BLE001
        failed = side.last_failed()
        side.rollback()
        return {"outcome": _classify(exc, failed), "error": _error_text(exc),
                "sqlstate": getattr(exc, "sqlstate", None), "constraint": _constraint(exc),
                "rows": None, "end": "rolled back after the error", "step": failed.label if failed else None}
    return {"outcome": "ok", "error": None, "sqlstate": None, "constraint": None, "rows": rows, "end": end}


def _constraint(exc: BaseException) -> str | None:
    diag = getattr(exc, "diag", None)
    return getattr(diag, "constraint_name", None) if diag is not None else None


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
        self.monitor = self._track(_connect(url, "monitor"))
        # The monitor resets data between cells: never let that wait forever either.
        self.monitor.execute(SQL_SESSION_SETTINGS, {"lock": MONITOR_LOCK_TIMEOUT, "statement": STATEMENT_TIMEOUT,
                                                    "idle": IDLE_IN_TRANSACTION_TIMEOUT})
        self.login_conn = self._track(_connect(url, "login"))
        self.delete_conn = self._track(_connect(url, "delete"))
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
            self.monitor.execute(_template(name))
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

    def run_cell(self, strategy: Strategy, interleaving: str, *,
                 after_reset: Callable[[], None] | None = None) -> CellResult:
        """One cell. ``after_reset`` (tests only) runs once the data are fresh, before the sides start."""
        setup = self.reset(strategy)
        if after_reset is not None:
            after_reset()
        schedule, end = _SCHEDULES[interleaving]
        cond = threading.Condition()
        login = _Side("login", self.login_conn, self.pids["login"], cond)
        delete = _Side("delete", self.delete_conn, self.pids["delete"], cond)
        sides = (login, delete)
        programs: dict[str, Callable[[], dict[str, Any]]] = {
            "login": lambda: _login_program(strategy, login),
            "delete": lambda: _delete_program(delete, end),
        }

        def run(side: _Side) -> None:
            try:
                side.result = programs[side.name]()
            except Exception as exc:  # noqa: BLE001 - recorded, never lost
                side.result = {"outcome": "error", "error": _error_text(exc), "sqlstate": None}
            finally:
                with cond:
                    side.done = True
                    side.finished_at = time.monotonic()
                    cond.notify_all()

        t0 = time.monotonic()
        deadline = t0 + CELL_TIMEOUT_SECONDS
        threads = [threading.Thread(target=run, args=(s,), name=f"racelab-{s.name}", daemon=True) for s in sides]
        for t in threads:
            t.start()
        for s in sides:
            self.settle(s, sides, deadline)
        by_name = {s.name: s for s in sides}
        for name, phase in schedule:
            by_name[name].release(phase)
            self.settle(by_name[name], sides, deadline)
        self.finish(sides, deadline)
        for t in threads:
            t.join(timeout=5)
        elapsed = time.monotonic() - t0
        final = self.monitor.execute(SQL_FINAL_STATE, {"workspace_id": WORKSPACE_ID, "user_id": USER_ID}).fetchone()
        return _make_result(strategy, interleaving, login, delete, final, setup, schedule, t0, elapsed, self.server)


def _waits(sides: Iterable[_Side]) -> list[dict[str, Any]]:
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


def _statements(sides: Iterable[_Side], t0: float) -> list[dict[str, Any]]:
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


def _make_result(strategy: Strategy, interleaving: str, login: _Side, delete: _Side, final, setup: dict,
                 schedule, t0: float, elapsed: float, server: str) -> CellResult:
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
    return CellResult(strategy.name, interleaving, lr.get("outcome", "error"), dr.get("outcome", "error"),
                      lr.get("error"), dr.get("error"), detail)


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
        _prepare_database(url)
        lab = _Lab(url)
        try:
            return [lab.run_cell(STRATEGIES[s], i) for s in strategy_names for i in interleaving_names]
        except Exception as exc:  # noqa: BLE001 - the lab's own connections failing, scrubbed
            raise _lab_error(exc, url) from None
        finally:
            lab.close()
    finally:
        if server is not None and dbname is not None:
            server.drop_database(dbname)


def _lab_error(exc: Exception, url: str) -> Exception:
    """A driver error on the lab's own connections (not a cell's outcome) as one scrubbed line."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return exc
    parts = _url_parts(url)
    text = _scrub(_error_text(exc), url, parts)
    if isinstance(exc, psycopg.OperationalError):
        return ConnectionFailed(f"the race lab lost its scratch {_describe(parts)}: {text}")
    return QueryFailed(f"the race lab failed on its scratch {_describe(parts)}: {text}")


# -- reading the results -----------------------------------------------------------------------

def _by_strategy(results: Sequence[CellResult]) -> dict[str, list[CellResult]]:
    out: dict[str, list[CellResult]] = {}
    order = {n: i for i, n in enumerate(INTERLEAVINGS)}
    for r in results:
        out.setdefault(r.strategy, []).append(r)
    for cells in out.values():
        cells.sort(key=lambda c: order.get(c.interleaving, 99))
    known = list(STRATEGIES)
    return dict(sorted(out.items(), key=lambda kv: known.index(kv[0]) if kv[0] in known else 99))


def _login_waited(cell: CellResult) -> list[dict[str, Any]]:
    return [w for w in cell.detail.get("waits", []) if w["waiter"] == "login"]


def _delete_waited(cell: CellResult) -> list[dict[str, Any]]:
    return [w for w in cell.detail.get("waits", []) if w["waiter"] == "delete"]


@dataclass
class Verdict:
    """What the results say about one strategy (derived, never declared)."""

    strategy: str
    interleavings: list[str]
    login_failures: dict[str, str]
    lost_deletions: list[str]
    delete_costs: dict[str, str]
    login_waits: dict[str, float]
    attempts_thrown_away: int
    uncontended_statements: int | None
    original_workspace: list[str]
    new_workspace: list[str]

    @property
    def closes_race(self) -> bool:
        return not self.login_failures and not self.lost_deletions

    @property
    def concurrent_delete_costs(self) -> dict[str, str]:
        """The deleting side's costs where it raced the login (``no_concurrent_delete`` left out)."""
        return {k: t for k, t in self.delete_costs.items() if k != "no_concurrent_delete"}

    def cost_key(self) -> tuple:
        return (len(self.concurrent_delete_costs), self.attempts_thrown_away, self.uncontended_statements or 0)


def verdicts(results: Sequence[CellResult]) -> dict[str, Verdict]:
    """Per strategy: failures, lost deletions, costs -- all read from the cells."""
    out = {}
    for name, cells in _by_strategy(results).items():
        baseline = [c for c in cells if c.interleaving == "no_concurrent_delete"]
        delete_costs = {}
        for c in cells:
            waited = _delete_waited(c)
            if c.delete_outcome != "ok" or waited:
                text = c.delete_outcome if c.delete_outcome != "ok" else "ok"
                if waited:
                    text += f", after waiting {sum(w['seconds'] for w in waited):.3f} s on the login"
                delete_costs[c.interleaving] = text
        out[name] = Verdict(
            strategy=name,
            interleavings=[c.interleaving for c in cells],
            login_failures={c.interleaving: c.login_outcome for c in cells if c.login_outcome != "ok"},
            lost_deletions=[c.interleaving for c in cells if c.detail.get("lost_deletion")],
            delete_costs=delete_costs,
            login_waits={c.interleaving: round(sum(w["seconds"] for w in _login_waited(c)), 4)
                         for c in cells if _login_waited(c)},
            attempts_thrown_away=sum(max(0, len(c.detail.get("login_attempts", [])) - 1) for c in cells),
            uncontended_statements=baseline[0].detail.get("login_statements") if baseline else None,
            original_workspace=[c.interleaving for c in cells if c.detail.get("login_workspace") == "original"],
            new_workspace=[c.interleaving for c in cells if c.detail.get("login_workspace") == "new"],
        )
    return out


def _fingerprint(cells: Sequence[CellResult]) -> tuple:
    return tuple((c.interleaving, c.login_outcome, c.delete_outcome, c.detail.get("login_workspace"))
                 for c in cells)


def _why(cell: CellResult, strategy: Strategy) -> str:
    """Why the login failed in this cell, read from its statements and waits."""
    attempts = cell.detail.get("login_attempts", [])
    last = attempts[-1] if attempts else {}
    step = last.get("step") or "a step"
    parts = [f"in {cell.interleaving} its '{step}' failed with {cell.login_outcome}"]
    if cell.detail.get("login_constraint"):
        parts.append(f" on {cell.detail['login_constraint']}")
    checks = [s for s in cell.detail.get("statements", [])
              if s["side"] == "login" and s["step"] in ("check workspace exists", "lock workspace for key share")]
    if checks and checks[-1]["rows"]:
        parts.append(f" although its '{checks[-1]['step']}' had just found the workspace")
    waited = _login_waited(cell)
    if waited:
        parts.append(f", after waiting {sum(w['seconds'] for w in waited):.3f} s on the "
                     f"{' and '.join(waited[-1]['blocked_by'])} side")
    if len(attempts) > 1:
        parts.append(f" ({len(attempts)} attempts; retried on {', '.join(strategy.retry_sqlstates)} only)")
    return "".join(parts)


def conclusions(results: Sequence[CellResult]) -> list[str]:
    """Plain sentences derived from the results: what closes the race, what does not and why, costs."""
    results = list(results)
    if not results:
        return ["The race lab produced no results."]
    cells_by = _by_strategy(results)
    v = verdicts(results)
    server = results[0].detail.get("server", "PostgreSQL")
    n_inter = len({r.interleaving for r in results})
    out = [f"The race lab ran {len(cells_by)} strategies under {n_inter} interleavings on {server}; "
           "every cell was observed on two real connections, none predicted."]
    fingerprints = {name: _fingerprint(cells) for name, cells in cells_by.items()}
    for name, cells in cells_by.items():
        verdict = v[name]
        strategy = STRATEGIES.get(name)
        if verdict.closes_race:
            s = (f"{name} closes the race: the login ended ok in all {len(cells)} interleavings "
                 f"(original workspace in {len(verdict.original_workspace)}, new fallback workspace in "
                 f"{len(verdict.new_workspace)}) and no deletion was lost.")
        else:
            reasons = []
            for c in cells:
                if c.login_outcome != "ok" and strategy is not None:
                    reasons.append(_why(c, strategy))
            if verdict.lost_deletions:
                reasons.append("a committed deletion was lost in " + ", ".join(verdict.lost_deletions))
            s = f"{name} does not close the race: " + "; ".join(reasons) + "."
        if verdict.login_waits:
            longest = max(verdict.login_waits.values())
            s += (f" Its login waited on the deletion's lock in {', '.join(verdict.login_waits)} "
                  f"(longest {longest:.3f} s).")
        if verdict.attempts_thrown_away:
            s += f" It threw away {verdict.attempts_thrown_away} login attempt(s) in all."
        concurrent_costs = verdict.concurrent_delete_costs
        if concurrent_costs:
            s += " Cost to the deleting side: " + "; ".join(f"{k}: {t}" for k, t in concurrent_costs.items()) + "."
        else:
            s += (" Cost to the deleting side: none in the concurrent interleavings"
                  " (it never waited and was never refused).")
        twins = [o for o in fingerprints if o != name and fingerprints[o] == fingerprints[name]
                 and list(cells_by).index(o) < list(cells_by).index(name)]
        if twins:
            s += f" Its outcomes (both sides, every interleaving) are identical to {twins[0]}'s."
        out.append(s)
    baseline = [r for r in results if r.interleaving == "no_concurrent_delete"]
    refused = [r for r in baseline if r.delete_outcome == "fk_violation"]
    if baseline and len(refused) == len(baseline):
        constraint = refused[0].detail.get("delete_constraint") or "the users foreign key"
        out.append(f"In no_concurrent_delete, deleting W after the login had committed was refused (fk_violation on "
                   f"{constraint}) under every strategy: the user now has W as primary workspace and that foreign key "
                   "has no ON DELETE action. This is the schema's doing, the same for every fix, not a cost of one.")
    elif refused:
        out.append("In no_concurrent_delete, deleting W after the login had committed was refused under "
                   + ", ".join(r.strategy for r in refused) + ".")
    audited = [r for r in results if r.detail.get("delete_end") == "commit" and r.delete_outcome == "ok"]
    if audited:
        logged = sum(1 for r in audited if r.detail["final_state"]["deletion_audited"])
        out.append(f"The audit trigger ({AUDIT_FILE}) logged the deletion of W in {logged} of the {len(audited)} "
                   "cells where it committed.")
    closers = [n for n in cells_by if v[n].closes_race]
    if closers:
        best = recommended(results)
        bv = v[best.name]
        out.append(f"Recommended: {best.name}, the cheapest of the strategies that close the race "
                   f"({', '.join(closers)}): {len(bv.concurrent_delete_costs)} concurrent interleaving(s) with a "
                   f"cost to the deleting side, {bv.attempts_thrown_away} login attempt(s) thrown away, "
                   f"{bv.uncontended_statements} statements on the uncontended login. Its code change is "
                   "shown with the recommended fix.")
    else:
        out.append("None of the strategies run closes the race.")
    return out


def recommended(results: Sequence[CellResult]) -> Strategy:
    """The cheapest strategy that closes the race, judged from the results (its code: ``.typescript``).

    Cheapest: fewest interleavings costing the deleting side (refused, aborted or waiting),
    then fewest login attempts thrown away, then fewest statements on the uncontended path.
    When nothing closes the race: the strategy with the fewest failed logins.
    """
    v = verdicts(results)
    if not v:
        raise ConfigError("no results to recommend from")
    order = list(STRATEGIES)
    closers = [x for x in v.values() if x.closes_race and x.strategy in STRATEGIES]
    if closers:
        best = min(closers, key=lambda x: (x.cost_key(), order.index(x.strategy)))
    else:
        known = [x for x in v.values() if x.strategy in STRATEGIES]
        if not known:
            raise ConfigError("the results name no strategy the lab knows")
        best = min(known, key=lambda x: (len(x.login_failures), x.cost_key(), order.index(x.strategy)))
    return STRATEGIES[best.strategy]


def _cell_text(cell: CellResult) -> str:
    login = cell.login_outcome
    if cell.login_outcome == "ok":
        login += " (W)" if cell.detail.get("login_workspace") == "original" else " (new ws)"
    n = len(cell.detail.get("login_attempts", []))
    notes = []
    if n > 1:
        notes.append(f"{n} attempts")
    lw = _login_waited(cell)
    if lw:
        notes.append(f"waited {sum(w['seconds'] for w in lw) * 1000:.0f} ms")
    if notes:
        login += ", " + ", ".join(notes)
    delete = cell.delete_outcome
    if cell.delete_outcome == "ok" and cell.detail.get("delete_end") == "rollback":
        delete += " (rolled back)"
    elif cell.delete_outcome == "fk_violation":
        delete += " (refused)"
    dw = _delete_waited(cell)
    if dw:
        delete += f", waited {sum(w['seconds'] for w in dw) * 1000:.0f} ms"
    return f"login {login} / delete {delete}"


def matrix_frame(results: Sequence[CellResult]):
    """Strategy rows x interleaving columns; each cell: the login's and the deletion's outcome."""
    import pandas as pd

    cells_by = _by_strategy(list(results))
    columns = [i for i in INTERLEAVINGS if any(r.interleaving == i for r in results)]
    data = {name: {c.interleaving: _cell_text(c) for c in cells} for name, cells in cells_by.items()}
    frame = pd.DataFrame.from_dict(data, orient="index").reindex(columns=columns)
    frame.index.name = "strategy"
    frame.columns.name = "interleaving"
    return frame


_GREEN, _AMBER, _RED = "#d4edda", "#fff3cd", "#f8d7da"


def _colour(cell: CellResult) -> str:
    if cell.login_outcome in _FAILURES or cell.detail.get("lost_deletion"):
        return _RED
    if (cell.login_outcome == "blocked" or cell.delete_outcome != "ok" or cell.detail.get("waits")):
        return _AMBER
    return _GREEN


def styled_matrix(results: Sequence[CellResult]):
    """:func:`matrix_frame` as a pandas Styler: red = the login failed (or a deletion was lost),
    amber = the login got through but a side waited, was blocked or the deletion was refused,
    green = both sides ok without waiting."""
    import pandas as pd

    results = list(results)
    frame = matrix_frame(results)
    colours = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for r in results:
        if r.strategy in colours.index and r.interleaving in colours.columns:
            colours.loc[r.strategy, r.interleaving] = f"background-color: {_colour(r)}; color: #212529"
    return (frame.style.apply(lambda _: colours, axis=None)
            .set_caption("Race lab: login / deletion, observed on PostgreSQL "
                         "(green ok, amber waited/blocked/refused, red login failed)")
            .set_properties(**{"white-space": "pre-wrap", "font-size": "0.85em"}))


def waits_frame(results: Sequence[CellResult]):
    """Every lock wait the monitor saw: who waited on whom, at which step, for how long."""
    import pandas as pd

    rows = [{"strategy": r.strategy, "interleaving": r.interleaving, **w}
            for r in results for w in r.detail.get("waits", [])]
    cols = ["strategy", "interleaving", "waiter", "blocked_by", "step", "attempt", "seconds", "wait_event", "ended"]
    return pd.DataFrame(rows, columns=cols)


# -- remediation SQL ----------------------------------------------------------------------------

def _outcome_line(cells: Sequence[CellResult]) -> str:
    return "; ".join(f"{c.interleaving}: login {c.login_outcome}"
                     + (f" ({c.detail.get('login_workspace')})" if c.login_outcome == "ok" else "")
                     + f", delete {c.delete_outcome}" for c in cells)


def _verification(name: str, results: Sequence[CellResult], when: str) -> list[str]:
    cells_by = _by_strategy(list(results))
    server = results[0].detail.get("server", "PostgreSQL") if results else "PostgreSQL"
    lines = [f"Generated by the incidentkit race lab on {when}, {server}, scratch database only."]
    if name in (CLEANUP_FILE, CASCADE_FILE):
        strategy = "seed_option2_cleanup" if name == CLEANUP_FILE else "seed_option3_cascade"
        cells = cells_by.get(strategy, [])
        if not cells:
            return lines + [f"NOT verified in this run: strategy {strategy} was not run."]
        ran = [c for c in cells if c.detail.get("setup", {}).get(name, {}).get("ran")]
        lines.append(f"Verified: applied, as this file, to the lab's scratch database before each of the "
                     f"{len(ran)} {strategy} cells; it ran without error every time.")
        if name == CLEANUP_FILE:
            orphans = sorted({c.detail["setup"][name]["orphaned_memberships_before"] for c in ran})
            lines.append(f"Orphaned memberships it found there: {', '.join(map(str, orphans))} "
                         "(the cascade foreign key leaves none).")
        lines.append(f"Observed with it ({strategy}): {_outcome_line(cells)}.")
        v = verdicts(results).get(strategy)
        if v is not None:
            lines.append(f"Race closed by {strategy}: {'yes' if v.closes_race else 'no'} "
                         f"(login failures: {', '.join(f'{k} {o}' for k, o in v.login_failures.items()) or 'none'}).")
        return lines
    committed = [r for r in results if r.detail.get("delete_end") == "commit" and r.delete_outcome == "ok"]
    rolled = [r for r in results if r.detail.get("delete_end") == "rollback"]
    lines.append("Verified: the lab built its scratch database from the reference schema with its audit schema "
                 "dropped and re-created by this file, then ran every cell on it.")
    lines.append(f"The deletion of W was logged in audit.logged_actions in "
                 f"{sum(1 for r in committed if r.detail['final_state']['deletion_audited'])} of the "
                 f"{len(committed)} cells where it committed, and in "
                 f"{sum(1 for r in rolled if r.detail['final_state']['deletion_audited'])} of the "
                 f"{len(rolled)} cells where it rolled back.")
    return lines


def render_remediation(name: str, results: Sequence[CellResult], when: str | None = None) -> str:
    """One remediation template with its verification header filled in from ``results``."""
    if name not in REMEDIATION_FILES:
        raise ConfigError(f"unknown remediation file {name!r}")
    when = when or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = _template(name)
    block = "\n".join(f"-- {part}" for line in _verification(name, results, when)
                      for part in textwrap.wrap(line, width=92, subsequent_indent="   ", break_on_hyphens=False))
    return text.replace(_VERIFIED_MARK, block, 1)


def write_remediation(out_dir, *, results: Sequence[CellResult] | None = None,
                      scratch_url: str | None = None) -> list[Path]:
    """Write the remediation SQL files (for review) into ``out_dir``; their headers say how the
    lab verified them. Without ``results`` the lab runs first (on ``scratch_url`` or the
    embedded server). Nothing is run against a real database."""
    if results is None:
        results = run_race_lab(scratch_url)
    results = list(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    paths = []
    for name in REMEDIATION_FILES:
        path = out / name
        path.write_text(render_remediation(name, results, when))
        paths.append(path)
    return paths


def target_description(scratch_url: str | None = None) -> str:
    """Where the lab ran, as reports name databases (host/dbname, never credentials)."""
    if not scratch_url:
        return "a scratch database of its own on the kit's embedded server (dropped afterwards)"
    from ..db.connection import Database

    return f"`{Database(scratch_url).describe()}` (scratch)"


def fix_markdown(strategy: Strategy) -> str:
    """The recommended fix for the report: what it does, the TypeScript change, the SQL steps."""
    return (f"**`{strategy.name}`**: {strategy.description}\n\n"
            f"Change in `packages/web/src/server/utils/workspace.ts`:\n\n```ts\n{strategy.typescript.strip()}\n```\n\n"
            f"The SQL steps the lab ran for it:\n\n```sql\n{strategy.sql.strip()}\n```")


def summary(results: Sequence[CellResult]) -> dict[str, Any]:
    """What the index and the incident document record of a lab run (JSON-ready)."""
    v = verdicts(results)
    return {
        "cells": len(results),
        "closes_race": sorted(k for k, x in v.items() if x.closes_race),
        "does_not_close": sorted(k for k, x in v.items() if not x.closes_race),
        "recommended": recommended(results).name if results else None,
    }


__all__ = [
    "INTERLEAVINGS", "INTERLEAVING_DESCRIPTIONS", "OUTCOMES", "STRATEGIES", "REMEDIATION_FILES",
    "CellResult", "Strategy", "Verdict",
    "run_race_lab", "matrix_frame", "styled_matrix", "waits_frame", "conclusions", "recommended",
    "verdicts", "render_remediation", "write_remediation", "fix_markdown", "summary", "target_description",
]

