"""Every SQL statement the kit reads with, one function each.

Values are always bound (psycopg ``%(name)s`` placeholders); identifiers come from the
schema mapping and are always quoted (:func:`incidentkit.schema.quote_ident`). Counts,
anti-joins and per-user slices run in PostgreSQL; callers get small result sets back.
Statements are written to run on PostgreSQL 13 to 17.
"""

from __future__ import annotations

from typing import Any

#: The ``m`` every query takes: a :class:`incidentkit.db.schema.SchemaMap`. Named, not imported:
#: the schema map reads the catalog through this module, never the other way round.
SchemaMap = Any


def existing_columns(reader, tables: list[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """The columns of each (schema, table) that exists, from ``pg_attribute`` (fast at any size)."""
    rows = reader.all(
        """
        select n.nspname as table_schema, c.relname as table_name, a.attname as column_name
        from unnest(%(schemas)s::text[], %(names)s::text[]) as t(s, r)
        join pg_namespace n on n.nspname = t.s
        join pg_class c on c.relnamespace = n.oid and c.relname = t.r
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        """,
        {"schemas": [s for s, _ in tables], "names": [n for _, n in tables]},
    )
    out: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        out.setdefault((r["table_schema"], r["table_name"]), set()).add(r["column_name"])
    return out


def diagnosis(reader, m: SchemaMap, limit: int) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    """The six figures and capped samples of the offending keys, in ONE statement.

    Each anti-join runs once: its rows are materialised in a CTE that both the count and the
    sample read, so the samples cost no second pass over the tables (the raw six-figure SQL
    is the floor this is measured against, see ``bench/``).
    """
    u, w, ms = m.users, m.workspaces, m.memberships
    uid, upw, wid = u.col("id"), u.col("primary_workspace_id"), w.col("id")
    sql = f"""
        with invalid as materialized (
          select x.{uid}::text as user_id, x.{upw}::text as primary_workspace_id
          from {u.sql} x
          where x.{upw} is not null
            and not exists (select 1 from {w.sql} y where y.{wid} = x.{upw})
        ), orphaned as materialized (
          select x.{ms.col('id')}::text as membership_id, x.{ms.col('user_id')}::text as user_id,
                 x.{ms.col('workspace_id')}::text as workspace_id
          from {ms.sql} x
          where not exists (select 1 from {w.sql} y where y.{wid} = x.{ms.col('workspace_id')})
        ), no_primary as materialized (
          select x.{uid}::text as user_id from {u.sql} x where x.{upw} is null
        )
        select
          (select count(*) from {u.sql}) as total_users,
          (select count(*) from {w.sql}) as total_workspaces,
          (select count(*) from {ms.sql}) as total_memberships,
          (select count(*) from no_primary) as users_without_primary_workspace,
          (select count(*) from invalid) as users_with_invalid_primary_workspace,
          (select count(*) from orphaned) as orphaned_memberships,
          (select coalesce(json_agg(s), '[]') from
             (select * from invalid order by 1 limit %(limit)s) s) as invalid_sample,
          (select coalesce(json_agg(s), '[]') from
             (select * from orphaned order by 3, 2, 1 limit %(limit)s) s) as orphaned_sample,
          (select coalesce(json_agg(s), '[]') from
             (select * from no_primary order by 1 limit %(limit)s) s) as no_primary_sample
    """
    row = reader.one(sql, {"limit": limit})
    samples = {
        "invalid_primary_workspace": list(row.pop("invalid_sample")),
        "orphaned_memberships": list(row.pop("orphaned_sample")),
        "users_without_primary_workspace": list(row.pop("no_primary_sample")),
    }
    return {k: int(v) for k, v in row.items()}, samples


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


def primary_workspace_foreign_keys(reader, m: SchemaMap) -> list[dict[str, Any]]:
    """The foreign keys from the mapped users' primary-workspace column to the mapped workspaces' id.

    From ``pg_constraint``: one row per such constraint (normally one), validated ones first,
    with its ``name``, whether it is ``validated``, and the physical table and column names a
    violation's message and ``Detail`` carry. The tables are passed as their quoted names
    (:attr:`~incidentkit.db.schema.Table.sql`), the columns as bound values; an absent table
    gives no row, never an error.
    """
    u, w = m.users, m.workspaces
    rows = reader.all(
        """
        select c.conname::text as name, c.convalidated as validated
        from pg_constraint c
        join pg_attribute a on a.attrelid = c.conrelid and a.attname = %(column)s and not a.attisdropped
        join pg_attribute r on r.attrelid = c.confrelid and r.attname = %(ref_column)s and not r.attisdropped
        where c.contype = 'f'
          and c.conrelid = to_regclass(%(users)s)
          and c.confrelid = to_regclass(%(workspaces)s)
          and c.conkey = array[a.attnum]
          and c.confkey = array[r.attnum]
        order by c.convalidated desc, c.conname
        """,
        {"users": u.sql, "workspaces": w.sql,
         "column": u.columns["primary_workspace_id"], "ref_column": w.columns["id"]},
    )
    for r in rows:
        r.update(table=u.name, column=u.columns["primary_workspace_id"], referenced_table=w.name,
                 referenced_column=w.columns["id"])
    return rows


def server_facts(reader) -> dict[str, Any]:
    """Server version, whether this transaction is read-only, and its WAL position (report header, run.json)."""
    return reader.one(
        "select current_setting('server_version') as server_version,"
        " current_setting('transaction_read_only') as read_only,"
        " current_setting('statement_timeout') as statement_timeout,"
        # The snapshot's place in the server's history: on a replica, the WAL replayed so far.
        " (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text"
        " as wal_lsn"
    )


# -- timelines and verdicts --
#
# The reads behind incidentkit.timeline and incidentkit.verdicts. Each takes the ids it needs
# (a user's, a workspace's, or the distinct ids of many log failures at once) and touches only
# those rows. Audit rows are matched on the mapped table's schema and *physical* name, and
# ``row_data ->> %(key)s`` binds the *physical* column name: with psycopg's unnamed statements
# PostgreSQL plans with the bound values, so the reference schema's expression index on
# ``(row_data ->> 'id')`` serves these predicates.
#
# Index use on the reference schema (the scale issue measures it):
#
# * workspaces by id, users by id, memberships by user_id / workspace_id: primary keys and the
#   two membership indexes.
# * audit rows of given workspaces or memberships: ``logged_actions_row_id_idx``.
# * the memberships a workspace deletion cascaded: ``logged_actions_table_action_idx`` on
#   (table_name, action, action_tstamp_clk), a range of +/- ``span`` around the deletion, then
#   the transaction id (no index of its own).
# * :func:`audit_membership_inserts` and :func:`audit_user_rows` can only use the
#   (table_name, action) prefix of ``logged_actions_table_action_idx``: they read every audit
#   row of memberships inserted (or of users) and filter on ``row_data ->> 'user_id'`` /
#   ``'workspace_id'`` / ``'privy_did'``. The reference schema has no index for that; at scale
#   they want ``create index on audit.logged_actions ((row_data ->> 'user_id')) where
#   table_name = 'workspace_members'`` (and likewise ``'workspace_id'``, and ``'privy_did'``
#   where ``table_name = 'users'``).

#: Array casts for id lists, by the column's type (anything else is compared as text).
_ARRAY_CASTS = {
    "uuid": "uuid[]",
    "text": "text[]",
    "character varying": "text[]",
    "bigint": "bigint[]",
    "integer": "integer[]",
}


def id_column_types(reader, m: SchemaMap) -> dict[str, str]:
    """The SQL type of each id-like column (``"workspaces.id"`` -> ``"uuid"``...), from the catalog."""
    wanted = [
        ("users", m.users, "id"),
        ("users", m.users, "primary_workspace_id"),
        ("workspaces", m.workspaces, "id"),
        ("memberships", m.memberships, "id"),
        ("memberships", m.memberships, "workspace_id"),
        ("memberships", m.memberships, "user_id"),
    ]
    rows = reader.all(
        """
        select t.k, format_type(a.atttypid, a.atttypmod) as type
        from unnest(%(keys)s::text[], %(schemas)s::text[], %(tables)s::text[], %(cols)s::text[])
             as t(k, s, n, c)
        join pg_namespace ns on ns.nspname = t.s
        join pg_class cl on cl.relnamespace = ns.oid and cl.relname = t.n
        join pg_attribute a on a.attrelid = cl.oid and a.attname = t.c and not a.attisdropped
        """,
        {
            "keys": [f"{e}.{c}" for e, _, c in wanted],
            "schemas": [t.schema for _, t, _ in wanted],
            "tables": [t.name for _, t, _ in wanted],
            "cols": [t.columns[c] for _, t, c in wanted],
        },
    )
    return {r["k"]: r["type"] for r in rows}


def _match_any(column_sql: str, param: str, sql_type: str | None) -> str:
    """``col = any(%(param)s::<type>[])``, index-friendly for the known id types."""
    cast = _ARRAY_CASTS.get(sql_type or "")
    if cast:
        return f"{column_sql} = any(%({param})s::{cast})"
    return f"{column_sql}::text = any(%({param})s::text[])"


def commit_timestamps_on(reader) -> bool:
    """Whether the server keeps commit timestamps (``track_commit_timestamp``), read once per reader."""
    cached = getattr(reader, "_commit_ts", None)
    if cached is None:
        cached = reader.scalar("select current_setting('track_commit_timestamp') = 'on'")
        reader._commit_ts = cached
    return bool(cached)


def _dated(reader, table, logical: str) -> tuple[str, str]:
    """The expression for a row's time column and its origin: the mapped column, else (no column
    mapped) the commit timestamp of the row's last write when the server keeps them, else NULL."""
    if table.has(logical):
        return f"x.{table.col(logical)}", "'column'"
    if commit_timestamps_on(reader):
        return "pg_xact_commit_timestamp(x.xmin)", "'commit_ts'"
    return "null::timestamptz", "null"


def current_workspaces(reader, m: SchemaMap, ids: list[str], types: dict[str, str]) -> list[dict[str, Any]]:
    """The workspaces among ``ids`` that have a row now (with ``deleted_at`` when soft-deleting).

    Without a mapped ``created_at`` the creation is the commit timestamp of the row's last write
    (``created_origin = 'commit_ts'``) where the server keeps commit timestamps.
    """
    if not ids:
        return []
    w = m.workspaces
    soft = m.deletion_source == "soft_delete" and w.has("deleted_at")
    deleted = f"x.{w.col('deleted_at')}" if soft else "null::timestamptz"
    created, origin = _dated(reader, w, "created_at")
    return reader.all(
        f"""
        select x.{w.col('id')}::text as id, {created} as created_at, {origin} as created_origin,
               {deleted} as deleted_at
        from {w.sql} x
        where {_match_any(f"x.{w.col('id')}", 'ids', types.get('workspaces.id'))}
        """,
        {"ids": list(ids)},
    )


def current_memberships(reader, m: SchemaMap, *, user_ids: list[str], workspace_ids: list[str],
                        types: dict[str, str]) -> list[dict[str, Any]]:
    """Memberships now of the given users, and in the given workspaces (one indexed read each)."""
    ms = m.memberships
    joined, origin = _dated(reader, ms, "joined_at")
    cols = (f"x.{ms.col('id')}::text as id, x.{ms.col('workspace_id')}::text as workspace_id,"
            f" x.{ms.col('user_id')}::text as user_id, x.{ms.col('is_primary')} as is_primary,"
            f" {joined} as joined_at, {origin} as joined_origin")
    parts, params = [], {}
    if user_ids:
        parts.append(f"select {cols} from {ms.sql} x where "
                     + _match_any(f"x.{ms.col('user_id')}", "uids", types.get("memberships.user_id")))
        params["uids"] = list(user_ids)
    if workspace_ids:
        parts.append(f"select {cols} from {ms.sql} x where "
                     + _match_any(f"x.{ms.col('workspace_id')}", "wids", types.get("memberships.workspace_id")))
        params["wids"] = list(workspace_ids)
    if not parts:
        return []
    return reader.all("\nunion\n".join(parts), params)


def users_near(reader, m: SchemaMap, variants: list[str], limit: int = 20) -> list[str]:
    """User ids that may be what was meant: equal to one of ``variants`` (with or without a prefix,
    lower-cased), or sharing all but the last two characters of one (an index range scan each,
    ``limit`` rows at most), for suggestions when a user is not found."""
    u = m.users
    col = f"x.{u.col('id')}::text"
    parts = [f"(select {col} as id from {u.sql} x where {col} = any(%(variants)s::text[]) limit {int(limit)})"]
    params: dict[str, Any] = {"variants": list(variants)}
    for i, v in enumerate(variants):
        if len(v) >= 8:
            params[f"lo{i}"] = v[:-2]
            parts.append(f"(select {col} as id from {u.sql} x where {col} >= %(lo{i})s and "
                         f"{col} < %(lo{i})s || chr(1114111) limit {int(limit)})")
    return [r["id"] for r in reader.all("\nunion\n".join(parts), params)]


def current_users(reader, m: SchemaMap, ids: list[str], types: dict[str, str]) -> list[dict[str, Any]]:
    """The users among ``ids`` that have a row now."""
    if not ids:
        return []
    u = m.users
    return reader.all(
        f"""
        select x.{u.col('id')}::text as id, x.{u.col('primary_workspace_id')}::text as primary_workspace_id,
               x.{u.col('created_at')} as created_at
        from {u.sql} x
        where {_match_any(f"x.{u.col('id')}", 'ids', types.get('users.id'))}
        """,
        {"ids": list(ids)},
    )


def _audit_cols(a) -> str:
    return (f"a.{a.col('action')}::text as action, a.{a.col('at')} as at,"
            f" a.{a.col('transaction_id')} as transaction_id, a.{a.col('row_data')} as row_data")


def audit_rows_by_id(reader, m: SchemaMap, entity: str, ids: list[str]) -> list[dict[str, Any]]:
    """Every audit row (I, U, D) of the ``entity`` rows (``workspaces``/``memberships``) whose id is in ``ids``.

    Uses the expression index on ``(row_data ->> 'id')`` when the entity's id column is ``id``.
    """
    if not ids:
        return []
    a, t = m.audit, getattr(m, entity)
    return reader.all(
        f"""
        select {_audit_cols(a)}
        from {a.sql} a
        where a.{a.col('row_data')} ->> %(key)s = any(%(ids)s::text[])
          and a.{a.col('table_name')} = %(table)s and a.{a.col('schema_name')} = %(schema)s
        order by 2, 3
        """,
        {"key": t.columns["id"], "ids": [str(i) for i in ids], "table": t.name, "schema": t.schema},
    )


def audit_cascade_rows(reader, m: SchemaMap, deletions: list[tuple[int, Any]], span_seconds: float
                       ) -> list[dict[str, Any]]:
    """The membership rows deleted by the given audit transactions ``(transaction_id, at)``.

    An ``ON DELETE CASCADE`` removes the memberships in the same statement as their workspace,
    so their rows lie within ``span_seconds`` of the workspace's: an index range on
    (table_name, action, at) per deletion, then the transaction id.
    """
    if not deletions:
        return []
    a, ms = m.audit, m.memberships
    return reader.all(
        f"""
        select {_audit_cols(a)}
        from unnest(%(txs)s::bigint[], %(ats)s::timestamptz[]) as d(tx, at)
        join {a.sql} a
          on a.{a.col('table_name')} = %(table)s and a.{a.col('action')} = 'D'
         and a.{a.col('at')} between d.at - make_interval(secs => %(span)s)
                                 and d.at + make_interval(secs => %(span)s)
         and a.{a.col('transaction_id')} = d.tx
        where a.{a.col('schema_name')} = %(schema)s
        order by 2, 3
        """,
        {"txs": [int(tx) for tx, _ in deletions], "ats": [at for _, at in deletions], "span": float(span_seconds),
         "table": ms.name, "schema": ms.schema},
    )


def audit_membership_inserts(reader, m: SchemaMap, *, user_ids: list[str], workspace_ids: list[str]
                             ) -> list[dict[str, Any]]:
    """Audit ``I`` rows of memberships of the given users or in the given workspaces.

    Finds memberships that no longer exist (and were not removed by a workspace's cascade).
    NEEDS AN INDEX AT SCALE: only the (table_name, action) prefix of the reference schema's
    index applies; see the note at the top of this section.
    """
    if not user_ids and not workspace_ids:
        return []
    a, ms = m.audit, m.memberships
    rd = f"a.{a.col('row_data')}"
    return reader.all(
        f"""
        select {_audit_cols(a)}
        from {a.sql} a
        where a.{a.col('table_name')} = %(table)s and a.{a.col('action')} = 'I'
          and a.{a.col('schema_name')} = %(schema)s
          and ({rd} ->> %(ukey)s = any(%(uids)s::text[]) or {rd} ->> %(wkey)s = any(%(wids)s::text[]))
        order by 2, 3
        """,
        {"table": ms.name, "schema": ms.schema, "ukey": ms.columns["user_id"], "wkey": ms.columns["workspace_id"],
         "uids": list(user_ids), "wids": list(workspace_ids)},
    )


def audit_user_rows(reader, m: SchemaMap, user_ids: list[str]) -> list[dict[str, Any]]:
    """Every audit row (I, U, D) of the given users.

    NEEDS AN INDEX AT SCALE: the users' key is ``row_data ->> 'privy_did'``, not ``'id'``, so
    only the table_name prefix of the reference schema's index applies (see above).
    """
    if not user_ids:
        return []
    a, u = m.audit, m.users
    return reader.all(
        f"""
        select {_audit_cols(a)}
        from {a.sql} a
        where a.{a.col('table_name')} = %(table)s and a.{a.col('schema_name')} = %(schema)s
          and a.{a.col('row_data')} ->> %(key)s = any(%(ids)s::text[])
        order by 2, 3
        """,
        {"table": u.name, "schema": u.schema, "key": u.columns["id"], "ids": list(user_ids)},
    )


def audit_first_workspace_insert(reader, m: SchemaMap):
    """When the audit log's earliest recorded workspace creation happened (None when it has none)."""
    a, w = m.audit, m.workspaces
    return reader.scalar(
        f"""
        select min(a.{a.col('at')}) as first_at from {a.sql} a
        where a.{a.col('table_name')} = %(table)s and a.{a.col('action')} = 'I'
          and a.{a.col('schema_name')} = %(schema)s
        """,
        {"table": w.name, "schema": w.schema},
    )


# -- indexes the kit relies on ------------------------------------------------------------------


def index_definitions(reader, tables: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every valid index on the given (schema, table)s: its definition and predicate, from the catalog."""
    return reader.all(
        """
        select n.nspname as schema, c.relname as "table", i.relname as name,
               pg_get_indexdef(x.indexrelid) as definition,
               pg_get_expr(x.indpred, x.indrelid) as predicate
        from pg_index x
        join pg_class c on c.oid = x.indrelid
        join pg_namespace n on n.oid = c.relnamespace
        join pg_class i on i.oid = x.indexrelid
        join unnest(%(schemas)s::text[], %(names)s::text[]) as t(s, r) on n.nspname = t.s and c.relname = t.r
        where x.indisvalid
        """,
        {"schemas": [s for s, _ in tables], "names": [n for _, n in tables]},
    )


def estimated_rows(reader, schema: str, table: str) -> int:
    """The planner's row estimate for a table (``pg_class.reltuples``; -1 when never analysed)."""
    value = reader.scalar(
        "select c.reltuples::bigint from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %(s)s and c.relname = %(t)s", {"s": schema, "t": table})
    return int(value) if value is not None else -1


def explain_cost(reader, sql: str, params: dict[str, Any]) -> tuple[float, str]:
    """The planner's total cost for ``sql`` and the scan it would use (``EXPLAIN``, nothing executed)."""
    plan = reader.scalar("explain (format json) " + sql, params)
    root = plan[0]["Plan"] if isinstance(plan, list) else plan["Plan"]
    node, scans = root, []
    stack = [root]
    while stack:
        node = stack.pop()
        if "Scan" in node.get("Node Type", ""):
            scans.append(f"{node['Node Type']}" + (f" using {node['Index Name']}" if node.get("Index Name") else ""))
        stack.extend(node.get("Plans", []))
    return float(root.get("Total Cost", 0.0)), ", ".join(scans)


# -- any foreign key ------------------------------------------------------------------------------
#
# The reads behind incidentkit.analysis.constraints: a foreign key found by name (and table,
# schema) in ``pg_constraint``, its definition, the other keys into its referenced table, and
# its figures. A constraint on a partitioned table has a clone on each partition (``conparentid``
# pointing at it); only the parent's row (``conparentid = 0``) is an answer, a clone found by
# name or by its partition's name leads to it. Identifiers in the figures' statement are quoted
# by ``psycopg.sql.Identifier``; column names that become JSON keys are bound values.

_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_FK_MATCH = {"s": "simple", "f": "full", "p": "partial"}


def foreign_key_candidates(reader, name: str | None = None, table: str | None = None,
                           schema: str | None = None) -> list[dict[str, Any]]:
    """The foreign keys (parents only, ``oid``) named ``name`` and/or on ``table`` in ``schema``.

    ``table`` may name the referencing table, one of its partitions (an insert into a
    partitioned table is reported on the partition), or, for a key whose referencing table is
    ``table``'s partition parent, the parent. Each row: ``oid``, ``name``, ``schema``, ``table``.
    """
    return reader.all(
        """
        with recursive hit as (
          select c.oid, c.conparentid, n.nspname::text as hit_schema, r.relname::text as hit_table
          from pg_constraint c
          join pg_class r on r.oid = c.conrelid
          join pg_namespace n on n.oid = r.relnamespace
          where c.contype = 'f'
            and (%(name)s::text is null or c.conname = %(name)s::text)
        ), up as (
          select h.oid, h.conparentid, h.hit_schema, h.hit_table from hit h
          union all
          select p.oid, p.conparentid, up.hit_schema, up.hit_table
          from up join pg_constraint p on p.oid = up.conparentid
          where up.conparentid <> 0
        )
        select distinct c.oid::bigint as oid, c.conname::text as name, n.nspname::text as schema,
               r.relname::text as "table"
        from up
        join pg_constraint c on c.oid = up.oid and c.conparentid = 0
        join pg_class r on r.oid = c.conrelid
        join pg_namespace n on n.oid = r.relnamespace
        where (%(table)s::text is null or %(table)s::text in (up.hit_table, r.relname::text))
          and (%(schema)s::text is null or %(schema)s::text in (up.hit_schema, n.nspname::text))
        order by 3, 4, 2
        """,
        {"name": name, "table": table, "schema": schema},
    )


def foreign_key_names(reader) -> list[dict[str, Any]]:
    """Every foreign key of the database (parents only): ``name``, ``schema``, ``table``."""
    return reader.all(
        """
        select c.conname::text as name, n.nspname::text as schema, r.relname::text as "table"
        from pg_constraint c
        join pg_class r on r.oid = c.conrelid
        join pg_namespace n on n.oid = r.relnamespace
        where c.contype = 'f' and c.conparentid = 0
        order by 2, 3, 1
        """
    )


def foreign_key_definitions(reader, oids: list[int]) -> list[dict[str, Any]]:
    """The definition of each foreign key in ``oids``, from ``pg_constraint`` and ``pg_class``.

    Columns in key order (``conkey``/``confkey`` with ordinality), MATCH type, actions,
    deferrability, ``validated``, whether either table is partitioned, the referencing table's
    primary key columns (empty when it has none) and ``pg_get_constraintdef``.
    """
    rows = reader.all(
        """
        select c.oid::bigint as oid, c.conname::text as name,
               n.nspname::text as schema, r.relname::text as "table",
               array(select a.attname::text from unnest(c.conkey) with ordinality k(attnum, i)
                     join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum order by k.i) as columns,
               fn.nspname::text as referenced_schema, f.relname::text as referenced_table,
               array(select a.attname::text from unnest(c.confkey) with ordinality k(attnum, i)
                     join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.attnum order by k.i)
                 as referenced_columns,
               c.confmatchtype::text as match, c.confdeltype::text as on_delete, c.confupdtype::text as on_update,
               c.condeferrable as deferrable, c.condeferred as initially_deferred, c.convalidated as validated,
               r.relkind = 'p' as partitioned, f.relkind = 'p' as referenced_partitioned,
               c.confrelid::bigint as referenced_oid,
               array(select a.attname::text
                     from pg_constraint pk, unnest(pk.conkey) with ordinality k(attnum, i)
                     join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
                     where pk.conrelid = c.conrelid and pk.contype = 'p' order by k.i) as primary_key,
               pg_get_constraintdef(c.oid) as definition
        from pg_constraint c
        join pg_class r on r.oid = c.conrelid
        join pg_namespace n on n.oid = r.relnamespace
        join pg_class f on f.oid = c.confrelid
        join pg_namespace fn on fn.oid = f.relnamespace
        where c.oid = any(%(oids)s::oid[]) and c.contype = 'f'
        order by 3, 4, 2
        """,
        {"oids": [int(o) for o in oids]},
    )
    for r in rows:
        r["match"] = _FK_MATCH.get(r["match"], r["match"])
        r["on_delete"] = _FK_ACTIONS.get(r["on_delete"], r["on_delete"])
        r["on_update"] = _FK_ACTIONS.get(r["on_update"], r["on_update"])
        for k in ("columns", "referenced_columns", "primary_key"):
            r[k] = list(r[k])
    return rows


def foreign_keys_into(reader, referenced_oid: int) -> list[int]:
    """The oids of every foreign key (parents only) into the table ``referenced_oid``."""
    rows = reader.all(
        "select c.oid::bigint as oid from pg_constraint c"
        " where c.contype = 'f' and c.conparentid = 0 and c.confrelid = %(rel)s::oid order by c.conname",
        {"rel": int(referenced_oid)},
    )
    return [r["oid"] for r in rows]


def foreign_key_figures(reader, *, schema: str, table: str, columns: list[str], referenced_schema: str,
                        referenced_table: str, referenced_columns: list[str], row_key: list[str],
                        limit: int) -> dict[str, Any]:
    """One foreign key's figures and capped sample of dangling keys, in ONE statement.

    ``referencing_rows``; ``any_null``/``all_null`` (rows with any / every key column NULL);
    ``dangling_keys`` (rows whose key has no NULL column and no referenced row); ``dangling``:
    up to ``limit`` of those as ``{"key": {column: value}, "row": {row_key column: value}}``,
    ordered by key then row. ``row_key`` names the referencing table's primary key columns;
    empty, the row is named by ``ctid`` (and ``tableoid`` for a partitioned table's partition).
    Each table is read once for the counts and once for the anti-join.
    """
    from psycopg import sql

    if not columns or len(columns) != len(referenced_columns):
        raise ValueError("a foreign key needs as many referencing as referenced columns")
    t = sql.Identifier(schema, table)
    rt = sql.Identifier(referenced_schema, referenced_table)
    x = [sql.SQL("x.{}").format(sql.Identifier(c)) for c in columns]
    y = [sql.SQL("y.{}").format(sql.Identifier(c)) for c in referenced_columns]
    params: dict[str, Any] = {"limit": limit}

    def obj(pairs: list[tuple[str, sql.Composable]], prefix: str) -> sql.Composable:
        args = []
        for i, (label, expr) in enumerate(pairs):
            params[f"{prefix}{i}"] = label
            args.append(sql.SQL(f"%({prefix}{i})s::text, ") + expr)
        return sql.SQL("json_build_object({})").format(sql.SQL(", ").join(args))

    key_obj = obj(list(zip(columns, x)), "k")
    if row_key:
        row_obj = obj([(c, sql.SQL("x.{}").format(sql.Identifier(c))) for c in row_key], "p")
        row_order = [sql.SQL("x.{}").format(sql.Identifier(c)) for c in row_key]
    else:
        row_obj = obj([("tableoid", sql.SQL("x.tableoid::regclass::text")), ("ctid", sql.SQL("x.ctid::text"))], "p")
        row_order = [sql.SQL("x.tableoid"), sql.SQL("x.ctid")]
    any_null = sql.SQL(" or ").join(sql.SQL("{} is null").format(e) for e in x)
    all_null = sql.SQL(" and ").join(sql.SQL("{} is null").format(e) for e in x)
    not_null = sql.SQL(" and ").join(sql.SQL("{} is not null").format(e) for e in x)
    joined = sql.SQL(" and ").join(sql.SQL("{} = {}").format(a, b) for a, b in zip(y, x))
    stmt = sql.SQL(
        """
        with counts as (
          select count(*) as referencing_rows,
                 count(*) filter (where {any_null}) as any_null,
                 count(*) filter (where {all_null}) as all_null
          from {t} x
        ), dangling as materialized (
          select {key_obj} as key, {row_obj} as row, row_number() over (order by {order}) as n
          from {t} x
          where {not_null} and not exists (select 1 from {rt} y where {joined})
        )
        select c.referencing_rows, c.any_null, c.all_null,
               (select count(*) from dangling) as dangling_keys,
               (select coalesce(json_agg(json_build_object('key', d.key, 'row', d.row) order by d.n), '[]')
                from dangling d where d.n <= %(limit)s) as dangling
        from counts c
        """
    ).format(any_null=any_null, all_null=all_null, t=t, rt=rt, key_obj=key_obj, row_obj=row_obj,
             order=sql.SQL(", ").join(x + row_order), not_null=not_null, joined=joined)
    row = reader.one(stmt.as_string(None), params)
    out = {k: int(row[k]) for k in ("referencing_rows", "any_null", "all_null", "dangling_keys")}
    out["dangling"] = list(row["dangling"])
    return out


def key_rows(reader, *, schema: str, table: str, columns: list[str], values: list[Any]) -> int:
    """How many rows of ``schema.table`` have ``columns`` equal to ``values``.

    The values are bound as text of unknown type, so PostgreSQL reads each as its column's type
    (an index on the columns serves the count).
    """
    from psycopg import sql

    params = {f"v{i}": None if v is None else str(v) for i, v in enumerate(values)}
    where = sql.SQL(" and ").join(sql.SQL("x.{} = ").format(sql.Identifier(c)) + sql.SQL(f"%(v{i})s")
                                  for i, c in enumerate(columns))
    stmt = sql.SQL("select count(*) as n from {} x where {}").format(sql.Identifier(schema, table), where)
    return int(reader.scalar(stmt.as_string(None), params))
