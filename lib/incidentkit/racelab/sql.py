"""Every SQL statement the race lab sends, named, and the SQL files it reads.

Values are always bound (``%(name)s``); the only identifier pasted in is the lab's own
marker schema, a constant. The login's steps are kept on one line each: the report quotes
them (:attr:`~incidentkit.racelab.strategies.Strategy.sql`).
"""

from __future__ import annotations

from .. import config

# -- the SQL files -----------------------------------------------------------------------------

REMEDIATION_DIR = config.SQL_DIR / "remediation"
REFERENCE_SCHEMA = config.SQL_DIR / "reference_schema.sql"
CLEANUP_FILE = "01_orphan_memberships_cleanup.sql"
CASCADE_FILE = "02_workspace_members_cascade.sql"
AUDIT_FILE = "03_audit_trigger.sql"
#: The remediation templates, in the order they are written and applied.
REMEDIATION_FILES: tuple[str, ...] = (CLEANUP_FILE, CASCADE_FILE, AUDIT_FILE)


def template(name: str) -> str:
    """The text of one remediation template (``sql/remediation/<name>``)."""
    return (REMEDIATION_DIR / name).read_text()


# -- the login's steps (ensureUserWorkspace) ----------------------------------------------------

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

# -- the admin's deletion ------------------------------------------------------------------------

SQL_DELETE_WORKSPACE = "delete from workspaces where id = %(workspace_id)s"

# -- the driver: sessions, lock waits, cancels ----------------------------------------------------

SQL_SESSION_SETTINGS = """
    select set_config('lock_timeout', %(lock)s, false),
           set_config('statement_timeout', %(statement)s, false),
           set_config('idle_in_transaction_session_timeout', %(idle)s, false)
"""
SQL_DEADLOCK_TIMEOUT = "select set_config('deadlock_timeout', %(deadlock)s, false)"
SQL_BACKEND_PID = "select pg_backend_pid()"
SQL_SERVER_VERSION = "select current_setting('server_version')"
SQL_LOCK_WAITS = """
    select pid, pg_blocking_pids(pid) as blockers, wait_event_type, wait_event
      from pg_stat_activity
     where pid = any(%(pids)s)
"""
SQL_CANCEL_BACKEND = "select pg_cancel_backend(%(pid)s)"

# -- each cell's data: fresh before, read back after ------------------------------------------------

SQL_RESET_DATA = "truncate users, workspace_members, workspaces, audit.logged_actions restart identity"
SQL_SEED_WORKSPACE = "insert into workspaces (id, name) values (%(workspace_id)s, %(name)s)"
SQL_SEED_INVITE = """
    insert into workspace_members (workspace_id, user_id, is_primary)
    values (%(workspace_id)s, %(user_id)s, false)
"""
SQL_COUNT_ORPHANS = """
    select count(*)
      from workspace_members wm
     where not exists (select 1 from workspaces w where w.id = wm.workspace_id)
"""
SQL_FINAL_STATE = """
    select exists (select 1 from workspaces where id = %(workspace_id)s) as workspace_exists,
           (select primary_workspace_id from users where privy_did = %(user_id)s) as user_primary,
           (select count(*) from workspace_members where user_id = %(user_id)s) as memberships,
           (select count(*) from audit.logged_actions
             where table_name = 'workspaces' and action = 'D'
               and row_data ->> 'id' = %(workspace_id)s::text) as audited_deletes
"""

# -- the scratch database: what it holds, the lab's marker, its schema -------------------------------

#: The schema of the marker table that says "this database is the race lab's".
MARKER_SCHEMA = "incidentkit_racelab"

SQL_USER_TABLES = """
    select n.nspname, c.relname, c.relkind
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p', 'f', 'v', 'm')
       and n.nspname not in ('pg_catalog', 'information_schema')
       and n.nspname not like 'pg\\_%'
     order by 1, 2
"""
SQL_READ_MARKER = f"select created_by from {MARKER_SCHEMA}.marker"
SQL_CREATE_MARKER = f"""
    create schema if not exists {MARKER_SCHEMA};
    create table if not exists {MARKER_SCHEMA}.marker
        (created_by text not null, created_at timestamptz not null default now())
"""
SQL_INSERT_MARKER = f"insert into {MARKER_SCHEMA}.marker (created_by) values (%(token)s)"
SQL_DROP_OWN_TABLES = """
    drop table if exists public.users, public.workspace_members, public.workspaces cascade;
    drop schema if exists audit cascade
"""
SQL_DROP_AUDIT = "drop schema if exists audit cascade"
SQL_CURRENT_DATABASE = "select current_database()"
