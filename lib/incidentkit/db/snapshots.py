"""The demo's point-in-time snapshots: real databases that are the demo as it was at a moment.

The machinery behind :mod:`incidentkit.db.demo_asof` (the as-of command, whose docstring tells
how a snapshot is made and kept) and :func:`incidentkit.db.demo.ensure_demo` (which drops them
when the demo is rebuilt). It never imports :mod:`incidentkit.db.demo`: the demo's lock and
loading are the caller's.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from .. import config
from ..exceptions import ConfigError, EmbeddedServerError
from ..text import iso_utc, one_line

#: The private copy of the demo every snapshot is made from.
BASE_DATABASE = config.DEMO_ASOF_PREFIX + "base"
_SNAPSHOT_NAME = re.compile(re.escape(config.DEMO_ASOF_PREFIX) + r"\d{8}t\d{12}z")
_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|\+00:00|\+00)")

#: Undo, newest first, every audited change of the transactions after ``incidentkit.as_of``.
#: Runs as ``session_replication_role = replica``: no trigger fires (neither the audit trigger
#: nor the foreign keys' ones), so rows come back exactly as ``row_data`` recorded them.
_UNDO_SQL = """
do $undo$
declare
    r record;
    pk text;
    tbl text;
    new_row jsonb;
begin
    for r in
        select event_id, schema_name, table_name, relid, action, row_data, changed_fields
        from audit.logged_actions
        where action_tstamp_tx > current_setting('incidentkit.as_of')::timestamptz
        order by event_id desc
    loop
        tbl := format('%I.%I', r.schema_name, r.table_name);
        select string_agg(format('%I', a.attname), ',' order by k.n) into pk
        from pg_index i
        cross join lateral unnest(i.indkey) with ordinality k(attnum, n)
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
        where i.indrelid = tbl::regclass and i.indisprimary;
        if pk is null then
            raise exception 'table % has no primary key: cannot undo its changes', tbl;
        end if;
        if r.action = 'D' then
            execute format('insert into %s select * from jsonb_populate_record(null::%s, $1)', tbl, tbl)
                using r.row_data;
        elsif r.action = 'I' then
            execute format('delete from %s where (%s) = (select %s from jsonb_populate_record(null::%s, $1))',
                           tbl, pk, pk, tbl)
                using r.row_data;
        elsif r.action = 'U' then
            new_row := r.row_data || coalesce(r.changed_fields, '{}'::jsonb);
            execute format('delete from %s where (%s) = (select %s from jsonb_populate_record(null::%s, $1))',
                           tbl, pk, pk, tbl)
                using new_row;
            execute format('insert into %s select * from jsonb_populate_record(null::%s, $1)', tbl, tbl)
                using r.row_data;
        else
            raise exception 'audit event % (%) cannot be undone', r.event_id, r.action;
        end if;
    end loop;
end
$undo$
"""


def parse_at(text: str) -> datetime:
    """``2025-10-08T09:41:27.118Z`` -> an aware UTC datetime; anything else is a ConfigError."""
    if not isinstance(text, str) or not _AT.fullmatch(text.strip()):
        raise ConfigError(f"not a moment in ISO 8601 UTC (e.g. 2025-10-08T09:41:27.118Z): "
                          f"{one_line(repr(text), 80)}")
    value = text.strip()
    value = value[:-1] + "+00:00" if value.endswith("Z") else value
    value = value + ":00" if value.endswith("+00") else value
    try:
        return datetime.fromisoformat(value).astimezone(timezone.utc)
    except ValueError:
        raise ConfigError(f"not a valid date and time: {one_line(repr(text), 80)}") from None


def snapshot_name(at: datetime) -> str:
    """The snapshot database for ``at``: ``incidentkit_demo_asof_20251008t094127118000z``."""
    at = at.astimezone(timezone.utc)
    return f"{config.DEMO_ASOF_PREFIX}{at:%Y%m%dt%H%M%S}{at.microsecond:06d}z"


def database_comment(conn, name: str) -> str | None:
    row = conn.execute("select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                       (name,)).fetchone()
    return row[0] if row else None


def demo_identity(conn, dbname: str) -> str:
    """Which build of the demo a copy comes from: its database's oid (a rebuild changes it)."""
    row = conn.execute("select oid from pg_database where datname = %s", (dbname,)).fetchone()
    if row is None:
        raise EmbeddedServerError(f"the demo database {dbname} does not exist")
    return f"{config.DEMO_MARK}; from database oid {row[0]}"


def _create_from(server, name: str, template: str, attempts: int = 5) -> None:
    """``CREATE DATABASE name TEMPLATE template``, retried while the template is briefly in use."""
    import psycopg

    for attempt in range(attempts):
        try:
            server.create_database(name, template=template, replace=True)
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise EmbeddedServerError(f"cannot copy {template}: other sessions are connected to it "
                                          f"(close them and try again)") from None
            time.sleep(0.5 * (attempt + 1))


def _set_comment(conn, name: str, mark: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(mark)))


def _ensure_base(server, admin) -> str:
    """The private copy of the demo snapshots are made from (rebuilt when the demo is)."""
    identity = demo_identity(admin, config.DEMO_DATABASE)
    mark = f"{identity}; base"
    if database_comment(admin, BASE_DATABASE) != mark:
        _create_from(server, BASE_DATABASE, config.DEMO_DATABASE)
        _set_comment(admin, BASE_DATABASE, mark)
    return identity


def make_copy(server, name: str, at: datetime | None, mark: str) -> None:
    """Create ``name`` from the demo's private copy, undo every audited transaction after ``at``
    (none when ``at`` is None), drop the audit schema, and mark it done with ``mark``.
    The caller holds the demo's lock and has loaded the demo."""
    with server.admin() as admin:
        _ensure_base(server, admin)
        _create_from(server, name, BASE_DATABASE)
        with server.admin(name) as conn:
            with conn.transaction():
                if at is not None:
                    conn.execute("set local session_replication_role = replica")
                    conn.execute("select set_config('incidentkit.as_of', %s, true)", (iso_utc(at),))
                    conn.execute(_UNDO_SQL)
                conn.execute("drop schema audit cascade")
            conn.execute("analyze")
        _set_comment(admin, name, mark)


def snapshot_mark(server, at: datetime) -> str:
    with server.admin() as admin:
        return f"{demo_identity(admin, config.DEMO_DATABASE)}; as of {iso_utc(at)}"


def list_demo_snapshots(server) -> list[str]:
    """The snapshot databases on ``server``, oldest first."""
    with server.admin() as admin:
        rows = admin.execute("select datname from pg_database where starts_with(datname, %s) order by oid",
                             (config.DEMO_ASOF_PREFIX,)).fetchall()
    return [r[0] for r in rows if _SNAPSHOT_NAME.fullmatch(r[0])]


def _evict(server, keep: int, spare: str) -> list[str]:
    """Drop the oldest snapshots beyond ``keep``; never ``spare`` nor one somebody is connected to."""
    import psycopg
    from psycopg import sql

    names = [n for n in list_demo_snapshots(server) if n != spare]
    dropped = []
    with server.admin() as admin:
        busy = {r[0] for r in admin.execute("select distinct datname from pg_stat_activity where datname is not null")}
        for name in names[: max(0, len(names) + 1 - keep)]:
            if name in busy:
                continue  # PostgreSQL would wait 5 s for its sessions, then refuse
            try:
                admin.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
                dropped.append(name)
            except psycopg.errors.ObjectInUse:
                continue  # in use by a probe: left for next time
    return dropped


def drop_demo_snapshots(server) -> list[str]:
    """Drop every snapshot and the private copy they are made from (the demo was rebuilt)."""
    from psycopg import sql

    names = list_demo_snapshots(server) + [BASE_DATABASE]
    with server.admin() as admin:
        for name in names:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    return names
