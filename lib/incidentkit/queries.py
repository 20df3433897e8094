"""Every SQL statement the kit reads with, one function each.

Values are always bound (psycopg ``%(name)s`` placeholders); identifiers come from the
schema mapping and are always quoted (:func:`incidentkit.schema.quote_ident`). Counts,
anti-joins and per-user slices run in PostgreSQL; callers get small result sets back.
Statements are written to run on PostgreSQL 13 to 17.
"""

from __future__ import annotations

from typing import Any

from .schema import SchemaMap


def existing_columns(reader, tables: list[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """The columns of each (schema, table) that exists and is readable, from the catalog."""
    rows = reader.all(
        """
        select c.table_schema, c.table_name, c.column_name
        from information_schema.columns c
        join unnest(%(schemas)s::text[], %(names)s::text[]) as t(s, n)
          on c.table_schema = t.s and c.table_name = t.n
        """,
        {"schemas": [s for s, _ in tables], "names": [n for _, n in tables]},
    )
    out: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        out.setdefault((r["table_schema"], r["table_name"]), set()).add(r["column_name"])
    return out


def diagnosis_figures(reader, m: SchemaMap) -> dict[str, int]:
    """The six figures of the diagnosis, as counts and anti-joins in one statement."""
    u, w, ms = m.users, m.workspaces, m.memberships
    sql = f"""
        select
          (select count(*) from {u.sql}) as total_users,
          (select count(*) from {w.sql}) as total_workspaces,
          (select count(*) from {ms.sql}) as total_memberships,
          (select count(*) from {u.sql} where {u.col('primary_workspace_id')} is null)
              as users_without_primary_workspace,
          (select count(*) from {u.sql} x
            where x.{u.col('primary_workspace_id')} is not null
              and not exists (select 1 from {w.sql} y where y.{w.col('id')} = x.{u.col('primary_workspace_id')}))
              as users_with_invalid_primary_workspace,
          (select count(*) from {ms.sql} x
            where not exists (select 1 from {w.sql} y where y.{w.col('id')} = x.{ms.col('workspace_id')}))
              as orphaned_memberships
    """
    row = reader.one(sql)
    return {k: int(v) for k, v in row.items()}


def invalid_primary_sample(reader, m: SchemaMap, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` users whose primary workspace points at no workspace."""
    u, w = m.users, m.workspaces
    return reader.all(
        f"""
        select x.{u.col('id')}::text as user_id, x.{u.col('primary_workspace_id')}::text as primary_workspace_id
        from {u.sql} x
        where x.{u.col('primary_workspace_id')} is not null
          and not exists (select 1 from {w.sql} y where y.{w.col('id')} = x.{u.col('primary_workspace_id')})
        order by 1
        limit %(limit)s
        """,
        {"limit": limit},
    )


def orphaned_membership_sample(reader, m: SchemaMap, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` memberships whose workspace does not exist."""
    ms, w = m.memberships, m.workspaces
    return reader.all(
        f"""
        select x.{ms.col('id')}::text as membership_id, x.{ms.col('user_id')}::text as user_id,
               x.{ms.col('workspace_id')}::text as workspace_id
        from {ms.sql} x
        where not exists (select 1 from {w.sql} y where y.{w.col('id')} = x.{ms.col('workspace_id')})
        order by 3, 2, 1
        limit %(limit)s
        """,
        {"limit": limit},
    )


def users_without_primary_sample(reader, m: SchemaMap, limit: int) -> list[dict[str, Any]]:
    u = m.users
    return reader.all(
        f"""
        select x.{u.col('id')}::text as user_id from {u.sql} x
        where x.{u.col('primary_workspace_id')} is null order by 1 limit %(limit)s
        """,
        {"limit": limit},
    )


_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def guarding_foreign_keys(reader, m: SchemaMap) -> list[dict[str, Any]]:
    """Foreign keys from users or memberships, or onto workspaces, read from ``pg_constraint``."""
    names = [m.users.qualified, m.memberships.qualified, m.workspaces.qualified]
    rows = reader.all(
        """
        with t as (
          select to_regclass(format('%%I.%%I', split_part(n, '.', 1), split_part(n, '.', 2))) as oid
          from unnest(%(names)s::text[]) as n
        )
        select c.conname as name,
               c.conrelid::regclass::text as "table",
               array(select a.attname::text from unnest(c.conkey) with ordinality k(attnum, i)
                     join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum order by k.i) as columns,
               c.confrelid::regclass::text as references_table,
               array(select a.attname::text from unnest(c.confkey) with ordinality k(attnum, i)
                     join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.attnum order by k.i)
                 as references_columns,
               c.confdeltype::text as on_delete,
               c.convalidated as validated,
               c.condeferrable as deferrable,
               c.condeferred as initially_deferred
        from pg_constraint c
        where c.contype = 'f'
          and (c.conrelid in (select oid from t where oid is not null)
               or c.confrelid in (select oid from t where oid is not null))
        order by 2, 1
        """,
        {"names": names},
    )
    for r in rows:
        r["on_delete"] = _ON_DELETE.get(r["on_delete"], r["on_delete"])
        r["columns"] = list(r["columns"])
        r["references_columns"] = list(r["references_columns"])
    return rows


def server_facts(reader) -> dict[str, Any]:
    """Server version and whether this transaction is read-only (for the report header)."""
    return reader.one(
        "select current_setting('server_version') as server_version,"
        " current_setting('transaction_read_only') as read_only,"
        " current_setting('statement_timeout') as statement_timeout"
    )
