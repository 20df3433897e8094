"""A reference-schema database of any size, built set-based inside PostgreSQL.

Used by the benchmark (``bench/run.py``) and by ``tests/test_plans.py``. Every row comes
from ``generate_series`` and deterministic expressions (ids are ``md5(...)::uuid``), so a
given size always yields the same rows, and Python can name any of them without a query
(:func:`user_id`, :func:`incident_failures`, :func:`expected_figures`).

The shape, for ``n`` users (``T = n // 50`` team workspaces):

* every user signed up between 2023-01-01 and 2025-08-28 in one transaction creating their
  workspace, their user row and their primary membership (``n`` of each);
* team workspace ``j`` is created by an existing user (workspace + owner membership); two
  in three get one invite (a membership of another user, in its own transaction);
* one team workspace in four is deleted later, with its memberships removed in the same
  transaction (``ON DELETE CASCADE``); one in forty of those had invited a *new* user who has
  no user row: the incident's pattern (:func:`incident_failures` names them);
* one surviving invite in five is removed later (the member left);
* anomalies, written with ``session_replication_role = replica`` as a restore with
  ``--disable-triggers`` or a manual clean-up would leave them, without audit rows: every
  20,000th user's primary workspace deleted (an invalid primary workspace, and that
  primary membership orphaned), and a membership in every 50th deleted team workspace
  (orphaned memberships);
* ``audit.logged_actions`` holds what the reference schema's trigger would have written for
  all of it: an ``I`` row per inserted row, a ``D`` row per deleted one, the trigger's
  ``row_data`` (``jsonb`` of the row) and the transaction's id and timestamps.

Bulk rows are written with the audit triggers (and foreign-key triggers) off and the audit
rows inserted set-based afterwards; the secondary indexes are dropped for the load and
re-created from their own definitions; ``VACUUM ANALYZE`` ends the build. At 1,000,000 users
that is 1.0 M workspaces, 1.02 M memberships and 3.1 M audit rows.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Callable

#: Bump when the generated data change: databases built by another version are rebuilt.
VERSION = 1
MARK = "incidentkit bench dataset v{version} users={n}"

T0_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z
SPAN_MS = 970 * 86_400_000  # signups spread over 970 days (to 2025-08-28)
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: How long after its workspace's deletion the incident users' logins fail (as in the demo).
FAILURE_DELAY_MS = 46

REFERENCE_SQL = Path(__file__).resolve().parents[1] / "lib" / "incidentkit" / "sql" / "reference_schema.sql"


# -- naming rows from Python (the same expressions as the SQL below) -------------------------
def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def user_id(i: int) -> str:
    """The ``privy_did`` of user ``i`` (1-based)."""
    return "did:privy:cm" + _md5(f"u{i}")[:23]


def new_user_id(j: int) -> str:
    """The id of the new (never created) user invited to team workspace ``j``."""
    return "did:privy:cmnw" + _md5(f"n{j}")[:21]


def team_workspace_id(j: int) -> str:
    return str(uuid.UUID(_md5(f"tw{j}")))


def step_ms(n: int) -> int:
    return SPAN_MS // n


def signup_ms(n: int, i: int) -> int:
    return T0_MS + (i - 1) * step_ms(n) + (i * 7919) % 1000


def team_at_ms(n: int, j: int) -> int:
    return signup_ms(n, 50 * j) + ((j % 24) + 1) * HOUR_MS


def deleted_at_ms(n: int, j: int) -> int:
    return team_at_ms(n, j) + ((j % 30) + 1) * DAY_MS


def teams(n: int) -> int:
    return n // 50


def incident_failures(n: int, limit: int | None = None) -> list[dict]:
    """The incident's pattern in this dataset: a new user invited to a team workspace that is
    deleted, whose first login fails 46 ms after the deletion. Oldest first."""
    out = []
    for j in range(40, teams(n) + 1, 40):
        if j % 3 == 0:
            continue  # no invite in this team workspace
        out.append({"user_id": new_user_id(j), "workspace_id": team_workspace_id(j),
                    "deleted_ms": deleted_at_ms(n, j), "failed_ms": deleted_at_ms(n, j) + FAILURE_DELAY_MS, "j": j})
        if limit is not None and len(out) >= limit:
            break
    return out


def owner_of_deleted_team(n: int) -> tuple[str, str]:
    """(user id, team workspace id) of an existing user whose team workspace, with an invite, was deleted."""
    for j in range(4, teams(n) + 1, 4):
        if j % 3 != 0:
            return user_id(1 + (j * 104729) % (50 * j)), team_workspace_id(j)
    raise ValueError(f"no deleted team workspace with an invite at {n} users")


def expected_figures(n: int) -> dict[str, int]:
    """The six diagnosis figures of the dataset of ``n`` users."""
    t = teams(n)
    deleted = t // 4
    gone = (n - 10007) // 20000 + 1 if n >= 10007 else 0
    current_invites = sum(1 for j in range(1, t + 1) if j % 3 != 0 and j % 4 != 0 and j % 5 != 1)
    orphans = t // 200
    return {
        "total_users": n,
        "total_workspaces": n - gone + t - deleted,
        "total_memberships": n + (t - deleted) + current_invites + orphans,
        "users_without_primary_workspace": 0,
        "users_with_invalid_primary_workspace": gone,
        "orphaned_memberships": gone + orphans,
    }


def mark(n: int) -> str:
    return MARK.format(version=VERSION, n=n)


# -- the build ------------------------------------------------------------------------------
def _functions(n: int) -> list[str]:
    """Inlinable SQL functions (session-local, in pg_temp) shared by every statement of the build."""
    step = step_ms(n)
    fns = {
        "did(i bigint) returns text": "select 'did:privy:cm' || substr(md5('u' || i), 1, 23)",
        "new_did(j bigint) returns text": "select 'did:privy:cmnw' || substr(md5('n' || j), 1, 21)",
        "ms(v bigint) returns timestamptz": "select timestamptz 'epoch' + v * interval '1 millisecond'",
        "signup_ms(i bigint) returns bigint": f"select {T0_MS}::bigint + (i - 1) * {step} + (i * 7919) % 1000",
        "team_owner(j bigint) returns bigint": "select 1 + (j * 104729) % (50 * j)",
        "team_ms(j bigint) returns bigint": f"select pg_temp.signup_ms(50 * j) + ((j % 24) + 1) * {HOUR_MS}",
        "invitee(j bigint) returns text":
            "select case when j % 40 = 0 then pg_temp.new_did(j) else pg_temp.did(1 + (j * 7919 + 1) % (50 * j)) end",
        "invite_ms(j bigint) returns bigint": f"select pg_temp.team_ms(j) + ((j % 20) + 1) * {HOUR_MS}",
        "deleted_ms(j bigint) returns bigint": f"select pg_temp.team_ms(j) + ((j % 30) + 1) * {DAY_MS}",
        "removed_ms(j bigint) returns bigint": f"select pg_temp.invite_ms(j) + ((j % 10) + 1) * {DAY_MS}",
    }
    return [f"create function pg_temp.{sig} immutable language sql as $$ {body} $$" for sig, body in fns.items()]


# Row sources: (id, columns...) of each kind of row, with the audit metadata beside them.
def _row_sources(n: int) -> dict[str, str]:
    t = teams(n)
    return {
        # signup i: workspace, user, primary membership; transaction i
        "primary_ws": f"""
            select md5('pw' || i)::uuid as id, 'Workspace ' || i as name, pg_temp.ms(pg_temp.signup_ms(i)) as created_at,
                   i as tx, pg_temp.ms(pg_temp.signup_ms(i)) as at, 0 as k
            from generate_series(1, {n}) i""",
        "users": f"""
            select pg_temp.did(i) as privy_did, md5('pw' || i)::uuid as primary_workspace_id,
                   pg_temp.ms(pg_temp.signup_ms(i)) as created_at,
                   i as tx, pg_temp.ms(pg_temp.signup_ms(i)) as at, 1 as k
            from generate_series(1, {n}) i""",
        "primary_m": f"""
            select md5('pm' || i)::uuid as id, md5('pw' || i)::uuid as workspace_id, pg_temp.did(i) as user_id,
                   true as is_primary, pg_temp.ms(pg_temp.signup_ms(i)) as joined_at,
                   i as tx, pg_temp.ms(pg_temp.signup_ms(i)) as at, 2 as k
            from generate_series(1, {n}) i""",
        # team workspace j: workspace + owner membership; transaction n + j
        "team_ws": f"""
            select md5('tw' || j)::uuid as id, 'Team ' || j as name, pg_temp.ms(pg_temp.team_ms(j)) as created_at,
                   {n} + j as tx, pg_temp.ms(pg_temp.team_ms(j)) as at, 0 as k
            from generate_series(1, {t}) j""",
        "owner_m": f"""
            select md5('om' || j)::uuid as id, md5('tw' || j)::uuid as workspace_id, pg_temp.did(pg_temp.team_owner(j)) as user_id,
                   false as is_primary, pg_temp.ms(pg_temp.team_ms(j)) as joined_at,
                   {n} + j as tx, pg_temp.ms(pg_temp.team_ms(j)) as at, 1 as k
            from generate_series(1, {t}) j""",
        # invite in team workspace j (two in three): transaction 2n + j
        "invite_m": f"""
            select md5('im' || j)::uuid as id, md5('tw' || j)::uuid as workspace_id, pg_temp.invitee(j) as user_id,
                   false as is_primary, pg_temp.ms(pg_temp.invite_ms(j)) as joined_at,
                   2 * {n} + j as tx, pg_temp.ms(pg_temp.invite_ms(j)) as at, 0 as k
            from generate_series(1, {t}) j where j % 3 <> 0""",
    }


_AUDIT_COLUMNS = ("schema_name, table_name, relid, session_user_name, action_tstamp_tx, action_tstamp_stm, "
                  "action_tstamp_clk, transaction_id, application_name, client_addr, client_port, client_query, "
                  "action, row_data, changed_fields, statement_only")
_QUERIES = {
    "workspaces": 'insert into "workspaces" ("id", "name", "created_at") values ($1, $2, $3)',
    "users": 'insert into "users" ("privy_did", "primary_workspace_id", "created_at") values ($1, $2, $3) '
             'on conflict do nothing returning "privy_did", "primary_workspace_id", "created_at"',
    "workspace_members": 'insert into "workspace_members" ("id", "workspace_id", "user_id", "is_primary", '
                         '"joined_at") values ($1, $2, $3, $4, $5)',
    "delete": 'delete from "workspaces" where "workspaces"."id" = $1',
    "leave": 'delete from "workspace_members" where "workspace_members"."id" = $1',
}
_COLUMNS = {
    "workspaces": ("id", "name", "created_at"),
    "users": ("privy_did", "primary_workspace_id", "created_at"),
    "workspace_members": ("id", "workspace_id", "user_id", "is_primary", "joined_at"),
}


def _audit(table: str, action: str, source: str, query: str, app: str = "web") -> str:
    """Audit rows for the rows of ``source`` (which carries tx, at and k, the row's order in its transaction)."""
    row = ", ".join(f"'{c}', s.{c}" for c in _COLUMNS[table])
    return f"""
        insert into audit.logged_actions ({_AUDIT_COLUMNS})
        select 'public', '{table}', 'public.{table}'::regclass::oid, 'app', s.at, s.at,
               s.at + s.k * interval '1 millisecond', s.tx, '{app}', inet '10.0.3.17', 5432,
               '{query.replace("'", "''")}', '{action}', jsonb_build_object({row}), null, false
        from ({source}) s"""


def _insert(table: str, source: str) -> str:
    cols = ", ".join(_COLUMNS[table])
    return f"insert into {table} ({cols}) select {cols} from ({source}) s"


def _steps(n: int) -> list[tuple[str, list[str]]]:
    src = _row_sources(n)
    t = teams(n)
    deleted_team = "j % 4 = 0"
    left = "j % 4 <> 0 and j % 3 <> 0 and j % 5 = 1"
    # The rows as they were just before their deletion, with the deletion's transaction and time.
    del_ws = f"""
        select md5('tw' || j)::uuid as id, 'Team ' || j as name, pg_temp.ms(pg_temp.team_ms(j)) as created_at,
               3 * {n} + j as tx, pg_temp.ms(pg_temp.deleted_ms(j)) as at, 0 as k
        from generate_series(1, {t}) j where {deleted_team}"""
    del_m = f"""
        select md5('om' || j)::uuid as id, md5('tw' || j)::uuid as workspace_id, pg_temp.did(pg_temp.team_owner(j)) as user_id,
               false as is_primary, pg_temp.ms(pg_temp.team_ms(j)) as joined_at,
               3 * {n} + j as tx, pg_temp.ms(pg_temp.deleted_ms(j)) as at, 1 as k
        from generate_series(1, {t}) j where {deleted_team}
        union all
        select md5('im' || j)::uuid, md5('tw' || j)::uuid, pg_temp.invitee(j), false, pg_temp.ms(pg_temp.invite_ms(j)),
               3 * {n} + j, pg_temp.ms(pg_temp.deleted_ms(j)), 2
        from generate_series(1, {t}) j where {deleted_team} and j % 3 <> 0"""
    left_m = f"""
        select md5('im' || j)::uuid as id, md5('tw' || j)::uuid as workspace_id, pg_temp.invitee(j) as user_id,
               false as is_primary, pg_temp.ms(pg_temp.invite_ms(j)) as joined_at,
               4 * {n} + j as tx, pg_temp.ms(pg_temp.removed_ms(j)) as at, 0 as k
        from generate_series(1, {t}) j where {left}"""
    return [
        ("workspaces", [_insert("workspaces", src["primary_ws"]), _insert("workspaces", src["team_ws"])]),
        ("users", [_insert("users", src["users"])]),
        ("memberships", [_insert("workspace_members", src["primary_m"]), _insert("workspace_members", src["owner_m"]),
                         _insert("workspace_members", src["invite_m"])]),
        ("audit I rows", [
            _audit("workspaces", "I", src["primary_ws"], _QUERIES["workspaces"]),
            _audit("users", "I", src["users"], _QUERIES["users"]),
            _audit("workspace_members", "I", src["primary_m"], _QUERIES["workspace_members"]),
            _audit("workspaces", "I", src["team_ws"], _QUERIES["workspaces"]),
            _audit("workspace_members", "I", src["owner_m"], _QUERIES["workspace_members"]),
            _audit("workspace_members", "I", src["invite_m"], _QUERIES["workspace_members"]),
        ]),
        ("deletions", [
            _audit("workspaces", "D", del_ws, _QUERIES["delete"], app="web-admin"),
            _audit("workspace_members", "D", del_m, _QUERIES["delete"], app="web-admin"),
            _audit("workspace_members", "D", left_m, _QUERIES["leave"]),
            # Replica mode: no cascade, so the cascade's deletions are spelled out.
            f"delete from workspace_members where workspace_id in (select md5('tw' || j)::uuid "
            f"from generate_series(1, {t}) j where {deleted_team})",
            f"delete from workspaces where id in (select md5('tw' || j)::uuid from generate_series(1, {t}) j "
            f"where {deleted_team})",
            f"delete from workspace_members where id in (select md5('im' || j)::uuid from generate_series(1, {t}) j "
            f"where {left})",
        ]),
        ("anomalies", [
            # Primary workspaces deleted behind the foreign keys' back (no audit row, no cascade).
            f"delete from workspaces where id in (select md5('pw' || i)::uuid from generate_series(10007, {n}, 20000) i)",
            # Memberships written into already deleted team workspaces, as a --disable-triggers restore would.
            f"""insert into workspace_members (id, workspace_id, user_id, is_primary, joined_at)
                select md5('om2' || j)::uuid, md5('tw' || j)::uuid, pg_temp.did(1 + (j * 13) % {n}), false,
                       pg_temp.ms(pg_temp.deleted_ms(j) + 2 * {HOUR_MS})
                from generate_series(200, {t}, 200) j""",
        ]),
    ]


_SECONDARY_INDEXES = """
    select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
    from pg_index i
    where i.indrelid in ('public.workspace_members'::regclass, 'audit.logged_actions'::regclass, 'public.users'::regclass,
                         'public.workspaces'::regclass)
      and not i.indisprimary and not i.indisunique
    order by 1
"""


def build(conn, n: int, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Fill the empty reference-schema database of ``conn`` (psycopg, autocommit) with ``n`` users.

    Returns the seconds each phase took.
    """
    say = progress or (lambda _msg: None)
    if n < 1000:
        raise ValueError("the dataset needs at least 1,000 users")
    timings: dict[str, float] = {}
    conn.execute("set maintenance_work_mem = '512MB'")
    conn.execute("set work_mem = '64MB'")
    conn.execute("set synchronous_commit = off")
    for stmt in _functions(n):
        conn.execute(stmt)
    indexes = conn.execute(_SECONDARY_INDEXES).fetchall()
    for name, _ in indexes:
        conn.execute(f"drop index {name}")
    # Replica: no user trigger (the audit triggers) and no foreign-key trigger fires.
    conn.execute("set session_replication_role = replica")
    for label, statements in _steps(n):
        t0 = time.perf_counter()
        say(f"{label}")
        with conn.transaction():
            for stmt in statements:
                conn.execute(stmt)
        timings[label] = time.perf_counter() - t0
    conn.execute("set session_replication_role = default")
    t0 = time.perf_counter()
    say(f"indexes ({len(indexes)})")
    for _, definition in indexes:
        conn.execute(definition)
    timings["indexes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("vacuum analyze")
    conn.execute("vacuum (analyze)")
    timings["vacuum analyze"] = time.perf_counter() - t0
    return timings


def figures_sql() -> str:
    """The six figures, hand-written (what a DBA would type into psql)."""
    return """
select (select count(*) from users) as total_users,
       (select count(*) from workspaces) as total_workspaces,
       (select count(*) from workspace_members) as total_memberships,
       (select count(*) from users where primary_workspace_id is null) as users_without_primary_workspace,
       (select count(*) from users u where not exists
           (select 1 from workspaces w where w.id = u.primary_workspace_id)) as users_with_invalid_primary_workspace,
       (select count(*) from workspace_members m where not exists
           (select 1 from workspaces w where w.id = m.workspace_id)) as orphaned_memberships
"""
