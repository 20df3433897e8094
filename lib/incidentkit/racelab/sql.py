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

#: Between two cells: the scratch tables emptied (DELETE: on these few rows far quicker than TRUNCATE,
#: which rewrites every table and index), the audit's numbering back to 1 as TRUNCATE ... RESTART IDENTITY.
SQL_RESET_DATA = """
    delete from workspace_members; delete from users; delete from workspaces; delete from audit.logged_actions;
    select setval(pg_get_serial_sequence('audit.logged_actions', 'event_id'), 1, false)
"""
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

# -- the race lab for any foreign key (racelab.generic) --------------------------------------------
# Catalog reads (on the source database, inside its read-only snapshot) and the statement shapes of
# the generic lab. The shapes' identifiers and casts are filled in with psycopg.sql composition
# (``{table}``, ``{columns}``...: quoted identifiers; ``{values}``: bound ``%(name)s::type``).

#: The two tables' oids from their qualified (quoted) names.
SQL_GENERIC_TABLE_OIDS = """
    select to_regclass(%(table)s)::oid::bigint as table_oid,
           to_regclass(%(referenced)s)::oid::bigint as referenced_oid
"""
#: Every column of the given tables, in order: its type as ``format_type`` writes it, NOT NULL,
#: whether it is generated, and what the type is made of (domains resolved to their base type).
SQL_GENERIC_COLUMNS = """
    select a.attrelid::bigint as relid, a.attnum::int as attnum, a.attname::text as name,
           format_type(a.atttypid, a.atttypmod) as declared_type,
           format_type(coalesce(nullif(t.typbasetype, 0), t.oid),
                       case when t.typtype = 'd' then t.typtypmod else a.atttypmod end) as type,
           a.attnotnull as not_null, a.attgenerated::text as generated,
           coalesce(bt.typtype, t.typtype)::text as typtype,
           coalesce(bt.typcategory, t.typcategory)::text as category,
           coalesce(btn.nspname, tn.nspname)::text as type_schema,
           array(select e.enumlabel::text from pg_enum e
                  where e.enumtypid = coalesce(bt.oid, t.oid) order by e.enumsortorder) as enum_labels
      from pg_attribute a
      join pg_type t on t.oid = a.atttypid
      join pg_namespace tn on tn.oid = t.typnamespace
      left join pg_type bt on bt.oid = nullif(t.typbasetype, 0)
      left join pg_namespace btn on btn.oid = bt.typnamespace
     where a.attrelid = any(%(oids)s::oid[]) and a.attnum > 0 and not a.attisdropped
     order by a.attrelid, a.attnum
"""
#: The primary keys and unique constraints of the given tables, columns in key order.
SQL_GENERIC_KEYS = """
    select c.conrelid::bigint as relid, c.conname::text as name, c.contype::text as kind,
           array(select a.attname::text from unnest(c.conkey) with ordinality k(attnum, i)
                  join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum order by k.i) as columns
      from pg_constraint c
     where c.conrelid = any(%(oids)s::oid[]) and c.contype in ('p', 'u')
     order by c.conrelid, c.contype, c.conname
"""

# The scratch copy: schema, tables, keys, the foreign key (built from the definitions read above).
SQL_GENERIC_CREATE_SCHEMA = "create schema if not exists {schema}"
SQL_GENERIC_CREATE_TABLE = "create table {table} ({elements})"
SQL_GENERIC_ADD_FOREIGN_KEY = (
    "alter table {table} add constraint {name} foreign key ({columns}) references {referenced} ({referenced_columns})"
    " {properties}"
)

# Each cell: fresh rows, the two sides, the state left afterwards.
SQL_GENERIC_RESET = "truncate {tables}"
SQL_GENERIC_INSERT = "insert into {table} ({columns}) values ({values})"
SQL_GENERIC_CHECK_PARENT = "select 1 from {parent} where {match} limit 1"
SQL_GENERIC_LOCK_PARENT = "select 1 from {parent} where {match} for key share"
SQL_GENERIC_INSERT_SELECT_LOCKED = (
    "insert into {table} ({columns}) select {values} from {parent} where {match} for key share"
)
SQL_GENERIC_DELETE_PARENT = "delete from {parent} where {match}"
SQL_GENERIC_FINAL_STATE = """
    select (select count(*) from {parent} where {parent_match}) as parent_rows,
           (select count(*) from {child} where {child_match}) as child_rows,
           (select array[{child_key}] from {child} where {child_match} limit 1) as child_key,
           (select {child_key_is_parents} from {child} where {child_match} limit 1) as key_is_parents,
           (select count(*) from {child} c
             where {child_key_not_null}
               and not exists (select 1 from {parent} p where {join})) as orphans
"""
