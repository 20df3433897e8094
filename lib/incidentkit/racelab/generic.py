"""The race lab for any foreign key: insert a referencing row while the referenced row is deleted.

The seed's lab (:mod:`.driver`) races the incident's own login against a workspace deletion.
This module runs the same race for any discovered constraint
(:func:`incidentkit.analysis.constraints.discover`):

1. **Definitions** (:func:`read_definitions`): from the source database, in ONE read-only
   snapshot, the foreign key and the two tables it joins (for a self-referencing key, one):
   columns, types (domains as their base type; types the scratch server lacks, such as enums or
   extension types, as ``text``), NOT NULLs, primary keys and unique constraints. No data.
2. **The scratch copy** (:func:`build_scratch`): a database of its own on the kit's embedded
   server (never the source), holding only those tables, their keys and the foreign key itself
   (MATCH type, ON DELETE / ON UPDATE actions, deferrability) with the lab's marker. Column
   defaults, CHECK constraints, triggers, other foreign keys and partitioning are left out: none
   of them is part of the race. A NOT VALID key is created validated (the copy holds no rows).
3. **The race** (:func:`run_generic_race_lab`): side A ("login" in :class:`~.cells.CellResult`,
   as in the seed's lab) inserts a referencing row with the parent's key; side B deletes the
   parent. Each cell starts from one parent row; values for every NOT NULL and key column are
   generated from the column's type (:func:`value_for`). Both sides run on two real connections
   stepped through the lab's interleavings (:data:`~.cells.INTERLEAVINGS`) by the seed's driver
   (its pause points ``start``, ``write``, ``commit`` and ``start``, ``end``, its lock-wait
   monitor and bounds). As in the seed's lab, side A's *read* is the app getting the key (from
   wherever it read it: no statement here), so its transaction begins, pauses at ``write``, and
   only then checks or locks the parent and inserts; ``delete_between_read_and_insert`` is the
   deletion committing after the app got the key and before it writes.

The strategies (:data:`GENERIC_STRATEGIES`): ``plain_insert``; ``check_then_insert`` (select the
parent, then insert); ``lock_parent_for_key_share`` (``select ... for key share``, then insert);
``single_statement_insert`` (``insert ... select ... from parent where ... for key share``, one
autocommitted statement, for drivers without interactive transactions); ``retry_on_23503`` (check
then insert, the transaction re-run on 23503); ``serializable_retry`` (check then insert in
SERIALIZABLE, re-run on 40001). A strategy that finds the parent gone inserts nothing and says so
(``detail["inserted"]`` False): the app's "not found" answer, not a failure.

:func:`generic_summary` and :func:`generic_conclusions` say which strategies never fail the
insert and never leave an orphan (a referencing row whose non-NULL key has no parent, counted by
PostgreSQL after each cell).
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..analysis.constraints import ForeignKeyDef, ParsedError, discover, parse_error
from ..exceptions import ConfigError, UnsafeTarget
from .cells import INTERLEAVINGS, CellResult, _statements, _waits
from .driver import _SCHEDULES, _Lab, _select, _Side, delete_program, failed_attempt, run_cells
from .safety import MARKER_TOKEN, connect, lab_error
from .sql import (
    SQL_BEGIN,
    SQL_COMMIT,
    SQL_CREATE_MARKER,
    SQL_GENERIC_ADD_FOREIGN_KEY,
    SQL_GENERIC_CHECK_PARENT,
    SQL_GENERIC_COLUMNS,
    SQL_GENERIC_CREATE_SCHEMA,
    SQL_GENERIC_CREATE_TABLE,
    SQL_GENERIC_DELETE_PARENT,
    SQL_GENERIC_FINAL_STATE,
    SQL_GENERIC_INSERT,
    SQL_GENERIC_INSERT_SELECT_LOCKED,
    SQL_GENERIC_KEYS,
    SQL_GENERIC_LOCK_PARENT,
    SQL_GENERIC_RESET,
    SQL_GENERIC_TABLE_OIDS,
    SQL_INSERT_MARKER,
    SQL_USER_TABLES,
)

#: Seeds of the generated rows: the parent (referenced) row and the inserted (referencing) row.
PARENT_SEED = 1
CHILD_SEED = 2
_counter = itertools.count()


# -- strategies --------------------------------------------------------------------------------

@dataclass(frozen=True)
class GenericStrategy:
    """One way of inserting the referencing row. ``check``: what side A does with the parent before
    the insert (None, ``"exists"`` or ``"key_share"``); ``single_statement``: one autocommitted
    ``insert ... select ... for key share`` instead; ``isolation``, ``retry_sqlstates`` and
    ``max_attempts``: how the transaction runs and when it is re-run from the start."""

    name: str
    description: str
    check: str | None = None
    single_statement: bool = False
    isolation: str = "read committed"
    retry_sqlstates: tuple[str, ...] = ()
    max_attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "check": self.check,
                "single_statement": self.single_statement, "isolation": self.isolation,
                "retry_sqlstates": list(self.retry_sqlstates), "max_attempts": self.max_attempts}


GENERIC_STRATEGIES: dict[str, GenericStrategy] = {s.name: s for s in (
    GenericStrategy("plain_insert", "insert the referencing row with the key the app holds"),
    GenericStrategy("check_then_insert", "select the referenced row, insert only when it is found", check="exists"),
    GenericStrategy("lock_parent_for_key_share",
                    "select the referenced row ... for key share, insert only when it comes back", check="key_share"),
    GenericStrategy("single_statement_insert",
                    "one autocommitted statement: insert ... select ... from the referenced table where key "
                    "... for key share (no interactive transaction: usable from an HTTP driver)",
                    single_statement=True),
    GenericStrategy("retry_on_23503",
                    "check then insert, the whole transaction re-run (re-reading the referenced row) on SQLSTATE "
                    "23503, at most 3 attempts", check="exists", retry_sqlstates=("23503",), max_attempts=3),
    GenericStrategy("serializable_retry",
                    "check then insert in a SERIALIZABLE transaction (the deletion unchanged), re-run on SQLSTATE "
                    "40001, at most 3 attempts", check="exists", isolation="serializable",
                    retry_sqlstates=("40001",), max_attempts=3),
)}


# -- definitions -------------------------------------------------------------------------------

@dataclass
class Column:
    """One column as the scratch copy declares it (``type``: the copy's type)."""

    name: str
    type: str
    not_null: bool
    category: str = "S"
    source_type: str = ""
    enum_labels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "not_null": self.not_null, "source_type": self.source_type}


@dataclass
class TableDef:
    """One table of the scratch copy: its columns, primary key and unique constraints."""

    schema: str
    name: str
    columns: list[Column]
    primary_key: list[str] = field(default_factory=list)
    primary_key_name: str | None = None
    unique: list[tuple[str, list[str]]] = field(default_factory=list)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ConfigError(f"column {name!r} is not in {self.schema}.{self.name}")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.name, "columns": [c.to_dict() for c in self.columns],
                "primary_key": list(self.primary_key),
                "unique": [{"name": n, "columns": list(cols)} for n, cols in self.unique]}


@dataclass
class RaceDefinitions:
    """What the scratch copy is built from: the foreign key and its two tables (one when self-referencing)."""

    constraint: ForeignKeyDef
    child: TableDef
    parent: TableDef
    #: What the copy does differently from the source (types mapped to text, columns left out...).
    notes: list[str] = field(default_factory=list)
    #: ``ON DELETE SET NULL (cols)`` / ``SET DEFAULT (cols)`` column list (PostgreSQL 15+), when the key has one.
    delete_set_columns: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def self_referencing(self) -> bool:
        return (self.child.schema, self.child.name) == (self.parent.schema, self.parent.name)

    def to_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint.to_dict(paths=False), "referencing": self.child.to_dict(),
                "referenced": self.parent.to_dict(), "self_referencing": self.self_referencing,
                "notes": list(self.notes), "source": self.source}


def _copy_type(row: dict[str, Any], table: str, notes: list[str]) -> tuple[str, str]:
    """The type the scratch copy gives a column (and its category): catalog types as they are
    (a domain as its base type), other types as ``text`` (``text[]`` for arrays)."""
    declared, base, category = row["declared_type"], row["type"], row["category"]
    if row["type_schema"] == "pg_catalog":
        if base != declared:
            notes.append(f"{table}.{row['name']}: the domain {declared} is copied as its base type {base}")
        return base, category
    mapped = "text[]" if category == "A" else "text"
    kind = "enum" if row["typtype"] == "e" else "type"
    notes.append(f"{table}.{row['name']}: the {kind} {declared} is copied as {mapped}")
    return mapped, ("A" if category == "A" else "S")


def read_definitions(reader, constraint: "str | ForeignKeyDef | ParsedError", *, table: str | None = None,
                     schema: str | None = None) -> RaceDefinitions:
    """The foreign key (discovered unless given) and its tables' definitions, from ``reader``'s snapshot."""
    if isinstance(constraint, ParsedError):
        fk = discover(reader, constraint.constraint, table=table or constraint.table,
                      schema=schema or constraint.schema)
    elif isinstance(constraint, ForeignKeyDef):
        fk = constraint
    else:
        fk = discover(reader, constraint, table=table, schema=schema)
    oids = reader.one(SQL_GENERIC_TABLE_OIDS, {"table": fk.qualified_table,
                                               "referenced": fk.qualified_referenced_table})
    if not oids or oids["table_oid"] is None or oids["referenced_oid"] is None:
        raise ConfigError(f"the tables of {fk.name} ({fk.describe()}) are not in the database")
    rel_ids = [oids["table_oid"], oids["referenced_oid"]]
    columns = reader.all(SQL_GENERIC_COLUMNS, {"oids": rel_ids})
    keys = reader.all(SQL_GENERIC_KEYS, {"oids": rel_ids})
    notes: list[str] = []

    def table_def(relid: int, schema_name: str, name: str) -> TableDef:
        cols = []
        for r in (c for c in columns if c["relid"] == relid):
            if r["generated"]:
                notes.append(f"{name}.{r['name']}: a generated column, left out of the copy")
                continue
            copy_type, category = _copy_type(r, name, notes)
            cols.append(Column(r["name"], copy_type, bool(r["not_null"]), category, r["declared_type"],
                               list(r["enum_labels"] or [])))
        t = TableDef(schema_name, name, cols)
        kept = {c.name for c in cols}
        for k in (k for k in keys if k["relid"] == relid):
            if not set(k["columns"]) <= kept:
                notes.append(f"{name}: the key {k['name']} is on a generated column; left out")
            elif k["kind"] == "p":
                t.primary_key, t.primary_key_name = list(k["columns"]), k["name"]
            else:
                t.unique.append((k["name"], list(k["columns"])))
        return t

    child = table_def(oids["table_oid"], fk.schema, fk.table)
    parent = child if oids["table_oid"] == oids["referenced_oid"] else table_def(
        oids["referenced_oid"], fk.referenced_schema, fk.referenced_table)
    for c in fk.columns:
        child.column(c)
    for c in fk.referenced_columns:
        parent.column(c)
    # The key must point at a unique set of columns (a unique index may back it without a constraint).
    if sorted(parent.primary_key) != sorted(fk.referenced_columns) and not any(
            sorted(cols) == sorted(fk.referenced_columns) for _, cols in parent.unique):
        parent.unique.append((f"{parent.name}_{'_'.join(fk.referenced_columns)}_ik_key", list(fk.referenced_columns)))
        notes.append(f"{parent.name}: a unique constraint on ({', '.join(fk.referenced_columns)}) stands in for the "
                     "unique index the key references")
    if not fk.validated:
        notes.append(f"{fk.name} is NOT VALID in the source; the copy holds no rows, so it is created validated")
    if fk.partitioned or fk.referenced_partitioned:
        notes.append("partitioned tables are copied as plain tables (the race is the same on each partition)")
    set_columns: list[str] = []
    m = re.search(r"ON DELETE SET (?:NULL|DEFAULT) \(([^)]*)\)", fk.definition or "")
    if m:
        set_columns = [c.strip().strip('"') for c in m.group(1).split(",")]
    return RaceDefinitions(fk, child, parent, notes, set_columns, source=getattr(reader.db, "describe", lambda: "")())


# -- values ------------------------------------------------------------------------------------

def value_for(column: Column, seed: int) -> str:
    """A text value for ``column`` (cast to its type in SQL), different for each ``seed``."""
    t = column.type.lower()
    limit = re.search(r"\((\d+)\)", t)
    if t == "uuid":
        return f"00000000-0000-4000-8000-{seed:012d}"
    if t == "boolean":
        return "true" if seed % 2 else "false"
    if t == "date":
        return f"2025-10-{seed % 28 + 1:02d}"
    if t.startswith("time ") or t == "time" or t.startswith("time("):
        return f"12:00:{seed % 60:02d}"
    if t.startswith("timestamp"):
        return f"2025-10-08 12:00:{seed % 60:02d}+00"
    if t == "interval":
        return f"{seed} seconds"
    if t in ("json", "jsonb"):
        return f'{{"incidentkit": {seed}}}'
    if t == "bytea":
        return f"\\x{seed:02x}"
    if t in ("inet", "cidr"):
        return f"10.0.0.{seed % 250 + 1}"
    if t == "macaddr":
        return f"08:00:2b:01:02:{seed % 256:02x}"
    if column.category == "A":
        return f'{{"{seed}"}}'
    if column.category == "N":
        return str(seed)
    if column.enum_labels:
        return column.enum_labels[seed % len(column.enum_labels)]
    text = f"ik-{seed}"
    if limit and int(limit.group(1)) < len(text):
        text = str(seed)[-int(limit.group(1)):]
    return text


def _row_values(table: TableDef, seed: int, fixed: dict[str, str | None]) -> dict[str, str | None]:
    """Values for every NOT NULL and key column of ``table`` (``fixed`` ones as given)."""
    keyed = set(table.primary_key) | {c for _, cols in table.unique for c in cols}
    out: dict[str, str | None] = {}
    for c in table.columns:
        if c.name in fixed:
            out[c.name] = fixed[c.name]
        elif c.not_null or c.name in keyed:
            out[c.name] = value_for(c, seed)
    return out


@dataclass
class _Rows:
    """The cell's rows: the parent's key (referenced columns), the parent row, the inserted row."""

    parent_key: dict[str, str]
    parent: dict[str, str | None]
    child: dict[str, str | None]
    child_identity: dict[str, str]


def _rows(d: RaceDefinitions) -> _Rows:
    fk = d.constraint
    parent_key = {c: value_for(d.parent.column(c), PARENT_SEED) for c in fk.referenced_columns}
    fixed: dict[str, str | None] = dict(parent_key)
    if d.self_referencing:  # the parent row's own key: NULL when it may be, else itself (a root)
        for col, ref in zip(fk.columns, fk.referenced_columns):
            if col not in fixed:
                fixed[col] = None if not d.parent.column(col).not_null else parent_key[ref]
    parent = _row_values(d.parent, PARENT_SEED, fixed)
    child_fixed = {col: parent_key[ref] for col, ref in zip(fk.columns, fk.referenced_columns)}
    child = _row_values(d.child, CHILD_SEED, child_fixed)
    identity_cols = d.child.primary_key or [c for c in child if c not in fk.columns]
    identity = {c: child[c] for c in identity_cols if child.get(c) is not None}
    return _Rows(parent_key, parent, child, identity)


# -- SQL composition ---------------------------------------------------------------------------

def _sql():
    from psycopg import sql

    return sql


def _qualified(schema: str, name: str):
    sql = _sql()
    return sql.Identifier(schema, name)


def _cast(param: str, type_text: str):
    sql = _sql()
    return sql.SQL("{}::{}").format(sql.Placeholder(param), sql.SQL(type_text))


def _match(table: TableDef, values: dict[str, str], prefix: str, alias: str | None = None):
    """``col = %(prefix_i)s::type and ...`` and its parameters."""
    sql = _sql()
    parts, params = [], {}
    for i, (col, val) in enumerate(values.items()):
        name = f"{prefix}{i}"
        ident = sql.Identifier(alias, col) if alias else sql.Identifier(col)
        parts.append(sql.SQL("{} = {}").format(ident, _cast(name, table.column(col).type)))
        params[name] = val
    return (sql.SQL(" and ").join(parts) if parts else sql.SQL("true")), params


def _insert_parts(table: TableDef, row: dict[str, str | None], prefix: str):
    sql = _sql()
    cols = [c for c in row]
    params = {f"{prefix}{i}": row[c] for i, c in enumerate(cols)}
    values = sql.SQL(", ").join(_cast(f"{prefix}{i}", table.column(c).type) for i, c in enumerate(cols))
    return sql.SQL(", ").join(sql.Identifier(c) for c in cols), values, params


class _Statements:
    """The cell's statements for one set of definitions, composed once."""

    def __init__(self, d: RaceDefinitions):
        sql = _sql()
        self.d = d
        fk = d.constraint
        self.rows = rows = _rows(d)
        parent_t, child_t = _qualified(d.parent.schema, d.parent.name), _qualified(d.child.schema, d.child.name)
        tables = [child_t] if d.self_referencing else [child_t, parent_t]
        self.reset = sql.SQL(SQL_GENERIC_RESET).format(tables=sql.SQL(", ").join(tables))
        cols, vals, self.parent_params = _insert_parts(d.parent, rows.parent, "p")
        self.seed_parent = sql.SQL(SQL_GENERIC_INSERT).format(table=parent_t, columns=cols, values=vals)
        match, self.key_params = _match(d.parent, rows.parent_key, "k")
        self.check = sql.SQL(SQL_GENERIC_CHECK_PARENT).format(parent=parent_t, match=match)
        self.lock = sql.SQL(SQL_GENERIC_LOCK_PARENT).format(parent=parent_t, match=match)
        self.delete = sql.SQL(SQL_GENERIC_DELETE_PARENT).format(parent=parent_t, match=match)
        cols, vals, child_params = _insert_parts(d.child, rows.child, "c")
        self.insert = sql.SQL(SQL_GENERIC_INSERT).format(table=child_t, columns=cols, values=vals)
        self.insert_params = child_params
        self.insert_locked = sql.SQL(SQL_GENERIC_INSERT_SELECT_LOCKED).format(
            table=child_t, columns=cols, values=vals, parent=parent_t, match=match)
        self.insert_locked_params = {**child_params, **self.key_params}
        child_match, child_ident_params = _match(d.child, rows.child_identity, "i")
        expected = {c: rows.parent_key[r] for c, r in zip(fk.columns, fk.referenced_columns)}
        key_is_parents, expected_params = _match(d.child, expected, "e")
        self.final = sql.SQL(SQL_GENERIC_FINAL_STATE).format(
            parent=parent_t, child=child_t, parent_match=match, child_match=child_match,
            child_key_is_parents=key_is_parents,
            child_key=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in fk.columns),
            child_key_not_null=sql.SQL(" and ").join(
                sql.SQL("{} is not null").format(sql.Identifier("c", c)) for c in fk.columns),
            join=sql.SQL(" and ").join(sql.SQL("{} = {}").format(sql.Identifier("p", r), sql.Identifier("c", c))
                                       for c, r in zip(fk.columns, fk.referenced_columns)))
        self.final_params = {**self.key_params, **child_ident_params, **expected_params}

    def text(self, stmt) -> str:
        """A statement as text (for the report; parameters stay placeholders)."""
        try:
            return stmt.as_string(None)
        except Exception:  # noqa: BLE001 - older psycopg needs a connection
            return repr(stmt)


# -- the scratch copy --------------------------------------------------------------------------

def _create_table(t: TableDef):
    sql = _sql()
    elements = []
    for c in t.columns:
        elements.append(sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(c.type),
                                                  sql.SQL(" not null" if c.not_null else "")))
    if t.primary_key:
        elements.append(sql.SQL("constraint {} primary key ({})").format(
            sql.Identifier(t.primary_key_name or f"{t.name}_pkey"),
            sql.SQL(", ").join(map(sql.Identifier, t.primary_key))))
    for name, cols in t.unique:
        elements.append(sql.SQL("constraint {} unique ({})").format(
            sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, cols))))
    return sql.SQL(SQL_GENERIC_CREATE_TABLE).format(table=_qualified(t.schema, t.name),
                                                    elements=sql.SQL(", ").join(elements))


_ACTIONS = {"NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"}


def _foreign_key(d: RaceDefinitions):
    sql = _sql()
    fk = d.constraint
    if fk.match not in ("simple", "full"):
        raise ConfigError(f"{fk.name}: MATCH {fk.match.upper()} is not something PostgreSQL enforces")
    for action in (fk.on_delete, fk.on_update):
        if action not in _ACTIONS:
            raise ConfigError(f"{fk.name}: unknown referential action {action!r}")
    on_delete = sql.SQL(fk.on_delete)
    if d.delete_set_columns:
        on_delete = sql.SQL("{} ({})").format(on_delete, sql.SQL(", ").join(map(sql.Identifier, d.delete_set_columns)))
    properties = sql.SQL("match {} on delete {} on update {} {}").format(
        sql.SQL(fk.match), on_delete, sql.SQL(fk.on_update),
        sql.SQL(("deferrable initially " + ("deferred" if fk.initially_deferred else "immediate"))
                if fk.deferrable else "not deferrable"))
    return sql.SQL(SQL_GENERIC_ADD_FOREIGN_KEY).format(
        table=_qualified(fk.schema, fk.table), name=sql.Identifier(fk.name),
        columns=sql.SQL(", ").join(map(sql.Identifier, fk.columns)),
        referenced=_qualified(fk.referenced_schema, fk.referenced_table),
        referenced_columns=sql.SQL(", ").join(map(sql.Identifier, fk.referenced_columns)),
        properties=properties)


def build_scratch(d: RaceDefinitions, url: str) -> None:
    """Build the copy in the scratch database ``url``, which must hold no table (else
    :class:`UnsafeTarget`): the lab's marker, the schemas, the tables and the foreign key."""
    import psycopg

    sql = _sql()
    conn = connect(url, "setup")
    try:
        tables = [(r[0], r[1]) for r in conn.execute(SQL_USER_TABLES).fetchall()]
        if tables:
            shown = ", ".join(f"{s}.{t}" for s, t in tables[:3])
            raise UnsafeTarget(f"refusing to build the race lab's copy of {d.constraint.name}: the scratch database "
                               f"already holds tables ({shown}); it must be empty")
        conn.execute(SQL_CREATE_MARKER)
        conn.execute(SQL_INSERT_MARKER, {"token": MARKER_TOKEN})
        tables_to_make = [d.parent] if d.self_referencing else [d.parent, d.child]
        for schema in dict.fromkeys(t.schema for t in tables_to_make):
            conn.execute(sql.SQL(SQL_GENERIC_CREATE_SCHEMA).format(schema=sql.Identifier(schema)))
        for t in tables_to_make:
            conn.execute(_create_table(t))
        conn.execute(_foreign_key(d))
    except UnsafeTarget:
        raise
    except psycopg.Error as exc:
        raise lab_error(exc, url) from None
    finally:
        conn.close()


# -- the two programs --------------------------------------------------------------------------

def _insert_attempt(strategy: GenericStrategy, st: _Statements, side: _Side) -> tuple[bool, str]:
    """One attempt of side A: (inserted, path)."""
    if strategy.single_statement:
        side.pause("write")
        rows = side.execute("insert ... select ... for key share", st.insert_locked, st.insert_locked_params).rowcount
        side.pause("commit")
        return (rows > 0, "one statement: inserted" if rows > 0 else "one statement: parent gone, nothing inserted")
    side.execute("begin", SQL_BEGIN[strategy.isolation])
    side.pause("write")
    found: Any = True
    if strategy.check == "exists":
        found = side.execute("check parent exists", st.check, st.key_params).fetchone()
    elif strategy.check == "key_share":
        found = side.execute("lock parent for key share", st.lock, st.key_params).fetchone()
    if found:
        side.execute("insert referencing row", st.insert, st.insert_params)
        inserted, path = True, "inserted with the parent's key"
    else:
        inserted, path = False, "parent gone: nothing inserted"
    side.pause("commit")
    side.execute("commit", SQL_COMMIT)
    return inserted, path


def _insert_program(strategy: GenericStrategy, st: _Statements, side: _Side) -> dict[str, Any]:
    side.pause("start")
    attempts: list[dict[str, Any]] = []
    for attempt in range(1, strategy.max_attempts + 1):
        side.attempt = attempt
        try:
            inserted, path = _insert_attempt(strategy, st, side)
        except Exception as exc:  # noqa: BLE001 - every failure is an observed outcome
            entry = failed_attempt(exc, side, attempt)
            if not strategy.single_statement:
                side.rollback()
            attempts.append(entry)
            if entry["sqlstate"] in strategy.retry_sqlstates and attempt < strategy.max_attempts:
                continue
            return {"outcome": entry["outcome"], "error": entry["error"], "sqlstate": entry["sqlstate"],
                    "constraint": entry["constraint"], "inserted": False, "path": None, "attempts": attempts}
        attempts.append({"attempt": attempt, "outcome": "ok", "path": path})
        return {"outcome": "ok", "error": None, "sqlstate": None, "constraint": None, "inserted": inserted,
                "path": path, "attempts": attempts}
    raise AssertionError("unreachable: the loop returns")  # pragma: no cover


def _delete_program(st: _Statements, side: _Side, end: str) -> dict[str, Any]:
    return delete_program(side, end, "delete parent", st.delete, st.key_params)


# -- the lab -----------------------------------------------------------------------------------

class _GenericLab(_Lab):
    """The seed lab's three connections and stepping, with the generic cell."""

    def __init__(self, url: str, d: RaceDefinitions):
        self.statements = _Statements(d)
        super().__init__(url)

    def reset_rows(self) -> None:
        st = self.statements
        self.monitor.execute(st.reset)
        self.monitor.execute(st.seed_parent, st.parent_params)

    def run_generic_cell(self, strategy: GenericStrategy, interleaving: str) -> CellResult:
        st = self.statements
        self.reset_rows()
        schedule, _ = _SCHEDULES[interleaving]
        login, delete, t0, elapsed = self.race(lambda side: _insert_program(strategy, st, side),
                                               lambda side, end: _delete_program(st, side, end), interleaving,
                                               name="racelab-generic")
        final = self.monitor.execute(st.final, st.final_params).fetchone()
        return _make_result(strategy, interleaving, login, delete, final, schedule, t0, elapsed, self.server, st)


def _make_result(strategy: GenericStrategy, interleaving: str, login: _Side, delete: _Side, final,
                 schedule, t0: float, elapsed: float, server: str, st: _Statements) -> CellResult:
    lr, dr = login.result, delete.result
    fk = st.d.constraint
    parent_rows, child_rows, child_key, key_is_parents, orphans = final
    key_after = None if child_key is None else dict(zip(fk.columns, child_key))
    if not child_rows:
        key_state = "no row"
    elif all(v is None for v in key_after.values()):
        key_state = "null"
    elif key_is_parents:
        key_state = "the parent's key"
    else:
        key_state = "changed"
    delete_end = dr.get("end")
    committed = dr.get("outcome") == "ok" and delete_end == "commit" and (dr.get("rows") or 0) > 0
    detail: dict[str, Any] = {
        "constraint": fk.name,
        "inserted": bool(lr.get("inserted")),
        "login_path": lr.get("path"),
        "login_attempts": lr.get("attempts", []),
        "login_sqlstate": lr.get("sqlstate"),
        "login_constraint": lr.get("constraint"),
        "login_statements": len(login.statements),
        "delete_end": delete_end,
        "delete_rows": dr.get("rows"),
        "delete_sqlstate": dr.get("sqlstate"),
        "delete_constraint": dr.get("constraint"),
        "waits": _waits((login, delete)),
        "final_state": {
            "parent_exists": int(parent_rows) > 0,
            "referencing_row_exists": int(child_rows) > 0,
            "referencing_key": key_after,
            "referencing_key_state": key_state,
            "orphans": int(orphans),
        },
        "orphans": int(orphans),
        "lost_deletion": bool(committed and int(parent_rows) > 0),
        "parent_key": dict(st.rows.parent_key),
        "copy_notes": list(st.d.notes),
        "schedule": [f"{side}:{phase}" for side, phase in schedule],
        "statements": _statements((login, delete), t0),
        "elapsed_seconds": round(elapsed, 4),
        "server": server,
    }
    detail["summary"] = _cell_summary(lr, dr, detail)
    return CellResult(strategy.name, interleaving, lr.get("outcome", "error"), dr.get("outcome", "error"),
                      lr.get("error"), dr.get("error"), detail)


def _cell_summary(lr: dict, dr: dict, detail: dict) -> str:
    outcome = lr.get("outcome", "error")
    attempts = detail["login_attempts"]
    if outcome == "ok":
        insert = "insert ok" if detail["inserted"] else "insert skipped (the parent was gone)"
        if len(attempts) > 1:
            insert += f" on attempt {len(attempts)}"
    else:
        insert = f"insert {outcome}" + (f" after {len(attempts)} attempts" if len(attempts) > 1 else "")
    waited = [w for w in detail["waits"] if w["waiter"] == "login"]
    if waited:
        insert += f"; waited {sum(w['seconds'] for w in waited):.3f} s on the deletion"
    d_out = dr.get("outcome", "error")
    if d_out == "ok":
        delete = f"delete ok ({detail['delete_rows']} row(s), {detail['delete_end']})"
    elif d_out == "fk_violation":
        delete = "delete refused (fk_violation)"
    else:
        delete = f"delete {d_out}"
    if any(w["waiter"] == "delete" for w in detail["waits"]):
        delete += ", after waiting on the insert"
    fs = detail["final_state"]
    state = ("parent " + ("exists" if fs["parent_exists"] else "gone") + ", referencing row: "
             + fs["referencing_key_state"] + (f", {fs['orphans']} orphan(s)" if fs["orphans"] else ", no orphan"))
    return f"{insert}. {delete}. Afterwards {state}."


def _definitions(constraint, source, table: str | None, schema: str | None) -> RaceDefinitions:
    if isinstance(constraint, RaceDefinitions):
        return constraint
    if isinstance(constraint, str) and "violates foreign key constraint" in constraint:
        constraint = parse_error(constraint)
    if source is None:
        raise ConfigError("the race lab for a named constraint needs its source database (source_url) to read the "
                          "definitions from; it only reads there, and races on a scratch copy")
    from ..db.connection import Database

    db = source if isinstance(source, Database) else Database(source)
    with db.read() as r:
        d = read_definitions(r, constraint, table=table, schema=schema)
    d.source = db.describe()
    return d


def run_generic_race_lab(constraint_def_or_name, source_url=None, *, strategies=None, interleavings=None,
                         table: str | None = None, schema: str | None = None) -> list[CellResult]:
    """Race "insert a referencing row" against "delete the referenced row" for any foreign key.

    ``constraint_def_or_name``: a constraint name, an error text or :class:`ParsedError`, a
    :class:`ForeignKeyDef` (its tables are read from the source) or :class:`RaceDefinitions`
    (already read: no source needed). ``source_url`` (a URL or a :class:`~incidentkit.Database`)
    is only READ, in one read-only snapshot; the race runs on a scratch database of its own on the
    embedded server, dropped afterwards. ``strategies``/``interleavings`` narrow the matrix
    (names from :data:`GENERIC_STRATEGIES` / :data:`~.cells.INTERLEAVINGS`).
    """
    strategy_names = _select(strategies, list(GENERIC_STRATEGIES), "strategy")
    interleaving_names = _select(interleavings, INTERLEAVINGS, "interleaving")
    d = _definitions(constraint_def_or_name, source_url, table, schema)
    from ..db import embedded

    server = embedded.ensure_server()
    dbname = f"incidentkit_racelab_fk_{os.getpid()}_{next(_counter)}"
    if d.source and d.source.rsplit("/", 1)[-1] == dbname:
        raise UnsafeTarget(f"refusing to race on {d.source}: it is the source database")
    url = server.create_database(dbname, replace=True)
    try:
        build_scratch(d, url)
        lab = _GenericLab(url, d)
        try:
            return run_cells(lambda s, i: lab.run_generic_cell(GENERIC_STRATEGIES[s], i), strategy_names,
                             interleaving_names)
        except Exception as exc:  # noqa: BLE001 - the lab's own connections failing, scrubbed
            raise lab_error(exc, url) from None
        finally:
            lab.close()
    finally:
        server.drop_database(dbname)


# -- reading the results -----------------------------------------------------------------------

def _by_strategy(results: Iterable[CellResult]) -> dict[str, list[CellResult]]:
    order = {n: i for i, n in enumerate(INTERLEAVINGS)}
    known = list(GENERIC_STRATEGIES)
    out: dict[str, list[CellResult]] = {}
    for r in results:
        out.setdefault(r.strategy, []).append(r)
    for cells in out.values():
        cells.sort(key=lambda c: order.get(c.interleaving, 99))
    return dict(sorted(out.items(), key=lambda kv: known.index(kv[0]) if kv[0] in known else 99))


def generic_summary(results: Sequence[CellResult]) -> dict[str, Any]:
    """Per strategy: where the insert failed, where it was skipped (parent gone), where an orphan
    was left or a deletion lost; and which strategies never fail the insert and never leave an orphan."""
    results = list(results)
    per: dict[str, Any] = {}
    for name, cells in _by_strategy(results).items():
        failed = {c.interleaving: c.login_outcome for c in cells if c.login_outcome != "ok"}
        per[name] = {
            "cells": len(cells),
            "insert_failures": failed,
            "inserted": [c.interleaving for c in cells if c.login_outcome == "ok" and c.detail.get("inserted")],
            "skipped_parent_gone": [c.interleaving for c in cells
                                    if c.login_outcome == "ok" and not c.detail.get("inserted")],
            "orphans": [c.interleaving for c in cells if c.detail.get("orphans")],
            "lost_deletions": [c.interleaving for c in cells if c.detail.get("lost_deletion")],
            "delete_refused": [c.interleaving for c in cells if c.delete_outcome == "fk_violation"],
            "delete_waited": [c.interleaving for c in cells if any(w["waiter"] == "delete"
                                                                   for w in c.detail.get("waits", []))],
            "insert_waited": [c.interleaving for c in cells if any(w["waiter"] == "login"
                                                                   for w in c.detail.get("waits", []))],
            "attempts_thrown_away": sum(max(0, len(c.detail.get("login_attempts", [])) - 1) for c in cells),
        }
    safe = [n for n, s in per.items() if not s["insert_failures"] and not s["orphans"] and not s["lost_deletions"]]
    return {
        "constraint": results[0].detail.get("constraint") if results else None,
        "cells": len(results),
        "interleavings": [i for i in INTERLEAVINGS if any(r.interleaving == i for r in results)],
        "strategies": per,
        "never_fail_and_no_orphan": safe,
        "fail_the_insert": [n for n, s in per.items() if s["insert_failures"]],
        "leave_an_orphan": [n for n, s in per.items() if s["orphans"]],
    }


def generic_conclusions(results: Sequence[CellResult]) -> list[str]:
    """Plain sentences from :func:`generic_summary`."""
    s = generic_summary(results)
    if not s["cells"]:
        return ["The race lab produced no results."]
    server = results[0].detail.get("server", "PostgreSQL")
    out = [f"The race lab for {s['constraint']} ran {len(s['strategies'])} strategies under "
           f"{len(s['interleavings'])} interleavings on {server}, on a scratch copy of its tables; every cell "
           "was observed on two real connections."]
    for name, v in s["strategies"].items():
        if v["insert_failures"]:
            text = f"{name} fails the insert: " + ", ".join(f"{k}: {o}" for k, o in v["insert_failures"].items())
        else:
            text = f"{name} never fails the insert"
            if v["skipped_parent_gone"]:
                text += f" (it found the parent gone and inserted nothing in {', '.join(v['skipped_parent_gone'])})"
        text += "; " + (f"orphans left in {', '.join(v['orphans'])}" if v["orphans"] else "no orphan left")
        if v["lost_deletions"]:
            text += f"; a committed deletion was lost in {', '.join(v['lost_deletions'])}"
        if v["delete_waited"]:
            text += f"; the deletion waited on the insert in {', '.join(v['delete_waited'])}"
        if v["attempts_thrown_away"]:
            text += f"; {v['attempts_thrown_away']} attempt(s) thrown away"
        out.append(text + ".")
    if s["never_fail_and_no_orphan"]:
        out.append("Never fail the insert and never leave an orphan: " + ", ".join(s["never_fail_and_no_orphan"]) + ".")
    else:
        out.append("None of the strategies run both never fails the insert and never leaves an orphan.")
    return out


def generic_text(results: Sequence[CellResult]) -> str:
    """The matrix (one line per cell) and the conclusions, for the terminal."""
    lines = []
    for name, cells in _by_strategy(results).items():
        for c in cells:
            lines.append(f"{name:<26} {c.interleaving:<32} {c.detail.get('summary', '')}")
    return "\n".join(lines + [""] + generic_conclusions(results))


__all__ = [
    "GENERIC_STRATEGIES", "GenericStrategy", "RaceDefinitions", "TableDef", "Column",
    "read_definitions", "build_scratch", "value_for", "run_generic_race_lab",
    "generic_summary", "generic_conclusions", "generic_text",
]
