"""Any foreign key, from its name or from the error message an engineer pasted.

Three steps, each usable alone:

:func:`parse_error`
    The violation as a log or an alert shows it (PostgreSQL's message and ``DETAIL``, node-postgres'
    ``error: ...`` / ``Detail: ...``, psycopg's ``ForeignKeyViolation: ...``, JSON with ``\\"``)
    -> :class:`ParsedError`: constraint, table (and schema when the text carries it), direction
    and the key. :func:`from_diag` does the same from psycopg's ``e.diag``.
:func:`discover`
    The constraint's definition from ``pg_constraint`` (:class:`ForeignKeyDef`), with the other
    foreign keys into the same referenced table as its ``paths``.
:func:`diagnose_constraint`
    Its figures in one read-only snapshot, counted by PostgreSQL: referencing rows, rows with a
    NULL key column, dangling keys with capped samples; the same for each path
    (:class:`ConstraintDiagnosis`).

PostgreSQL writes the two directions of a violation so::

    insert or update on table "bins" violates foreign key constraint "bins_warehouse_fk"
    DETAIL:  Key (region, code)=(north, 9) is not present in table "warehouses".

    update or delete on table "warehouses" violates foreign key constraint "bins_warehouse_fk" on table "bins"
    DETAIL:  Key (region, code)=(north, 1) is still referenced from table "bins".

The ``table`` of a parsed error is always the referencing table (as psycopg's
``diag.table_name`` gives it; for a partitioned table, the partition the row went to); the key's
columns are the referencing table's on an insert and the referenced table's on a delete. The
``Key`` detail joins column names and values with ``", "`` and quotes neither: a value holding
``", "`` cannot be told apart from two values, so when the counts differ the values are kept whole.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import config
from ..db import queries
from ..exceptions import ConfigError
from ..text import iso_utc, one_line

DIRECTIONS = ("insert", "delete")
#: The figure names of ``ConstraintDiagnosis.to_dict()["figures"]``.
FIGURES = ("referencing_rows", "null_keys", "dangling_keys")


# -- 1. the error ---------------------------------------------------------------------------------
@dataclass
class ParsedError:
    """A foreign-key violation as its error message (or psycopg's ``diag``) tells it."""

    constraint: str
    #: The referencing table as the error names it (a partition's name for a partitioned table).
    table: str | None = None
    #: The referencing table's schema, when the text or ``diag`` carries it (the message never does).
    schema: str | None = None
    #: ``insert`` (insert or update of the referencing row: ``is not present in table``) or
    #: ``delete`` (update or delete of the referenced row: ``is still referenced from table``).
    direction: str | None = None
    #: The other table the error names: the referenced one on an insert, the referencing one on a delete.
    referenced_table: str | None = None
    #: ``{column: value}`` in the key's order, values as the Detail prints them (text).
    key: dict[str, str] = field(default_factory=dict)
    #: True when each column got its own value; False when there is no key, or the values were
    #: kept whole (``key`` is then ``{"a, b": "all, the, values"}``); ``key_note`` says why.
    key_exact: bool = False
    key_note: str = ""
    #: The Detail line as found (None without one).
    detail: str | None = None

    @property
    def key_columns(self) -> list[str]:
        return list(self.key) if self.key_exact else []

    def to_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint, "table": self.table, "schema": self.schema,
                "direction": self.direction, "referenced_table": self.referenced_table, "key": dict(self.key),
                "key_exact": self.key_exact, "key_note": self.key_note, "detail": self.detail}


# A name between double quotes, as PostgreSQL prints it (embedded quotes are not escaped there).
_Q = r'"(?P<{}>[^"\n]+)"'
_INSERT_RE = re.compile(r"insert or update on table " + _Q.format("table")
                        + r" violates foreign key constraint " + _Q.format("name"), re.I)
_DELETE_RE = re.compile(r"update or delete on table " + _Q.format("referenced")
                        + r" violates foreign key constraint " + _Q.format("name")
                        + r"(?: on table " + _Q.format("table") + ")?", re.I)
_KEY_RE = re.compile(r"Key \((?P<cols>.*?)\)=\((?P<vals>.*)\) (?P<verb>is not present in|is still referenced from) "
                     r"table " + _Q.format("table"))
_MATCH_FULL_RE = re.compile(r"MATCH FULL does not allow mixing of null and nonnull key values")
# Fields as node-postgres (``schema: 'public'``), JSON (``"schema_name": "public"``), psql's
# VERBOSITY verbose (``SCHEMA NAME:  public``) and psycopg's diag attributes print them.
_FIELD = r"""(?:^|[\s{{,(])["']?{}["']?\s*[:=]\s*(?:'(?P<q1>[^'\n]*)'|"(?P<q2>[^"\n]*)"|(?P<bare>[^\s,'"}}]+))"""
_FIELDS = {
    "schema": re.compile(_FIELD.format(r"(?:schema|schema_name|schema name)"), re.I | re.M),
    "table": re.compile(_FIELD.format(r"(?:table|table_name|table name)"), re.I | re.M),
    "constraint": re.compile(_FIELD.format(r"(?:constraint|constraint_name|constraint name)"), re.I | re.M),
}


def _field(text: str, name: str) -> str | None:
    m = _FIELDS[name].search(text)
    if not m:
        return None
    value = next((g for g in (m.group("q1"), m.group("q2"), m.group("bare")) if g is not None), "")
    return value if value and value not in ("undefined", "None", "null") else None


def _split_columns(text: str) -> list[str]:
    """``a, "B c", d`` -> ``["a", "B c", "d"]`` (PostgreSQL prints them unquoted; quoted ones are
    tolerated, with doubled quotes undone)."""
    out = []
    for m in re.finditer(r'\s*("(?:[^"]|"")*"|[^,]+)\s*(?:,|$)', text):
        token = m.group(1).strip()
        if token.startswith('"') and token.endswith('"') and len(token) >= 2:
            token = token[1:-1].replace('""', '"')
        out.append(token)
    return out


def _key(cols_text: str, vals_text: str) -> tuple[dict[str, str], bool, str]:
    columns = _split_columns(cols_text)
    values = vals_text.split(", ") if vals_text != "" else [""]
    if len(columns) == len(values):
        return dict(zip(columns, values)), True, ""
    note = (f"{len(values)} values for {len(columns)} column{'s' if len(columns) != 1 else ''}: a value holds ', ', "
            "which the Detail line does not quote; the values are kept whole")
    return {", ".join(columns): vals_text}, False, note


#: JSON string escapes (a surrogate pair first), as log drains write the error inside a record.
_ESCAPE_RE = re.compile(r'\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|["\\/bfnrt])')


def _unescape(text: str) -> str:
    """``text`` with JSON's backslash escapes undone (``\\"``, ``\\n``, ``\\u2192``...), in one pass."""
    def one(m: re.Match) -> str:
        try:
            return json.loads('"' + m.group(0) + '"')
        except ValueError:
            return m.group(0)

    return _ESCAPE_RE.sub(one, text) if "\\" in text else text


def parse_error(text: str) -> ParsedError:
    """The foreign-key violation in ``text`` (the first one, if it holds several).

    ``text`` is the error as pasted: with or without its ``DETAIL:``/``Detail:`` line, with or
    without an ``ERROR:`` / ``error:`` / ``psycopg.errors.ForeignKeyViolation:`` prefix, inside a
    JSON log record (``\\"`` unescaped) or node-postgres' printed error object (its ``schema:``,
    ``table:`` and ``constraint:`` properties are read too). Raises :class:`ConfigError` (one
    line) when no foreign-key violation is found in it.
    """
    if isinstance(text, ParsedError):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("the error text is empty: paste the foreign-key violation (its message and Detail line)")
    raw = _unescape(text)
    ins, dele = _INSERT_RE.search(raw), _DELETE_RE.search(raw)
    key = _KEY_RE.search(raw)
    full = _MATCH_FULL_RE.search(raw)
    if ins and dele:  # both shapes in one paste: the first one wins
        ins, dele = (ins, None) if ins.start() < dele.start() else (None, dele)
    if ins:
        parsed = ParsedError(ins.group("name"), table=ins.group("table"), direction="insert")
    elif dele:
        parsed = ParsedError(dele.group("name"), table=dele.group("table"), direction="delete",
                             referenced_table=dele.group("referenced"))
    else:
        name = _field(raw, "constraint")
        if not name or not (key or full or "23503" in raw or "foreign key" in raw.lower()):
            raise ConfigError("not a foreign-key violation: expected 'violates foreign key constraint \"NAME\"' "
                              f"(and its Detail line) in the error text, got {one_line(text, 80)!r}")
        parsed = ParsedError(name, table=_field(raw, "table"))
    parsed.schema = _field(raw, "schema")
    if parsed.table is None:
        parsed.table = _field(raw, "table")
    if key:
        parsed.detail = one_line(key.group(0) + ".", 2000)
        parsed.key, parsed.key_exact, parsed.key_note = _key(key.group("cols"), key.group("vals"))
        verb_direction = "insert" if key.group("verb").startswith("is not") else "delete"
        if parsed.direction is None:
            parsed.direction = verb_direction
        if verb_direction == "insert":
            parsed.referenced_table = parsed.referenced_table or key.group("table")
        elif parsed.table is None:
            parsed.table = key.group("table")
    elif full:
        parsed.detail = full.group(0) + "."
        parsed.direction = parsed.direction or "insert"
        parsed.key_note = "MATCH FULL: the key mixes NULL and non-NULL columns; the Detail gives no values"
    else:
        parsed.key_note = "no Detail line: the key is unknown"
    return parsed


def from_diag(diag: Any) -> ParsedError:
    """The violation from psycopg's ``e.diag`` (or the exception itself): ``constraint_name``,
    ``table_name``, ``schema_name``, ``message_primary`` and ``message_detail``."""
    diag = getattr(diag, "diag", diag)
    name = getattr(diag, "constraint_name", None)
    sqlstate = getattr(diag, "sqlstate", None)
    if not name or (sqlstate and sqlstate != "23503"):
        raise ConfigError(f"not a foreign-key violation (SQLSTATE {sqlstate or 'unknown'}, "
                          f"constraint {name or 'not named'})")
    primary = getattr(diag, "message_primary", None) or ""
    detail = getattr(diag, "message_detail", None) or ""
    text = "\n".join(p for p in (primary, detail) if p)
    try:
        parsed = parse_error(text) if text else ParsedError(name)
    except ConfigError:
        parsed = ParsedError(name)
    parsed.constraint = name
    parsed.table = getattr(diag, "table_name", None) or parsed.table
    parsed.schema = getattr(diag, "schema_name", None) or parsed.schema
    if parsed.detail is None and not parsed.key_note:
        parsed.key_note = "no Detail: the key is unknown"
    return parsed


# -- 2. the catalog -------------------------------------------------------------------------------
def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


@dataclass
class ForeignKeyDef:
    """One foreign key as ``pg_constraint`` defines it (the partitioned parent's, never a clone)."""

    name: str
    schema: str
    table: str
    columns: list[str]
    referenced_schema: str
    referenced_table: str
    referenced_columns: list[str]
    match: str = "simple"  # simple | full | partial
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"
    deferrable: bool = False
    initially_deferred: bool = False
    validated: bool = True
    #: The referencing table is partitioned (the constraint is on the parent, cloned onto each partition).
    partitioned: bool = False
    referenced_partitioned: bool = False
    #: The referencing table's primary key columns (empty when it has none).
    primary_key: list[str] = field(default_factory=list)
    definition: str = ""
    oid: int = field(default=0, repr=False, compare=False)
    referenced_oid: int = field(default=0, repr=False, compare=False)
    #: The OTHER foreign keys into the same referenced table (each without paths of its own).
    paths: list["ForeignKeyDef"] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ForeignKeyDef":
        return cls(**{k: row[k] for k in (
            "name", "schema", "table", "columns", "referenced_schema", "referenced_table", "referenced_columns",
            "match", "on_delete", "on_update", "deferrable", "initially_deferred", "validated", "partitioned",
            "referenced_partitioned", "primary_key", "definition", "oid", "referenced_oid")})

    @property
    def qualified_table(self) -> str:
        return f"{_ident(self.schema)}.{_ident(self.table)}"

    @property
    def qualified_referenced_table(self) -> str:
        return f"{_ident(self.referenced_schema)}.{_ident(self.referenced_table)}"

    def describe(self) -> str:
        """``shop.bins (region, code) -> shop.warehouses (region, code)``."""
        return (f"{self.qualified_table} ({', '.join(map(_ident, self.columns))}) -> "
                f"{self.qualified_referenced_table} ({', '.join(map(_ident, self.referenced_columns))})")

    def properties(self) -> str:
        """``MATCH SIMPLE, ON DELETE CASCADE, ON UPDATE NO ACTION, DEFERRABLE INITIALLY DEFERRED, NOT VALID``."""
        parts = [f"MATCH {self.match.upper()}", f"ON DELETE {self.on_delete}", f"ON UPDATE {self.on_update}"]
        if self.deferrable:
            parts.append("DEFERRABLE INITIALLY " + ("DEFERRED" if self.initially_deferred else "IMMEDIATE"))
        else:
            parts.append("NOT DEFERRABLE")
        parts.append("validated" if self.validated else "NOT VALID (stored rows were never checked)")
        if self.partitioned:
            parts.append("on a partitioned table")
        return ", ".join(parts)

    def to_dict(self, paths: bool = True) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (
            "name", "schema", "table", "columns", "referenced_schema", "referenced_table", "referenced_columns",
            "match", "on_delete", "on_update", "deferrable", "initially_deferred", "validated", "partitioned",
            "referenced_partitioned", "primary_key", "definition")}
        out["columns"] = list(self.columns)
        out["referenced_columns"] = list(self.referenced_columns)
        out["primary_key"] = list(self.primary_key)
        if paths:
            out["paths"] = [p.to_dict(paths=False) for p in self.paths]
        return out


def _where(name: str | None, table: str | None, schema: str | None) -> str:
    parts = []
    if name:
        parts.append(f"named {name!r}")
    if table:
        parts.append(f"on table {schema + '.' if schema else ''}{table}")
    elif schema:
        parts.append(f"in schema {schema}")
    return " ".join(parts) or "at all"


def discover(reader, name: str | None = None, *, table: str | None = None, schema: str | None = None
             ) -> ForeignKeyDef:
    """The foreign key ``name`` (on ``table`` in ``schema``, when given) from the catalog, with its paths.

    ``reader`` is a :class:`incidentkit.db.connection.Reader` (``with db.read() as r``). Without
    a name, ``table``'s only foreign key. ``table`` may be a partition (as an insert error names
    it): the answer is the parent's constraint. Raises :class:`ConfigError` when the name is
    unknown (listing the nearest names) or ambiguous (asking for the table or schema).
    """
    if not name and not table:
        raise ConfigError("name a foreign key: give the constraint name (or the error text that names it)")
    rows = queries.foreign_key_candidates(reader, name or None, table or None, schema or None)
    if not rows:
        if name and (table or schema) and queries.foreign_key_candidates(reader, name, None, None):
            others = queries.foreign_key_candidates(reader, name, None, None)
            shown = ", ".join(f"{r['schema']}.{r['table']}" for r in others[:10])
            raise ConfigError(f"no foreign key {_where(name, table, schema)}; a foreign key {name!r} exists on "
                              f"{shown}")
        names = queries.foreign_key_names(reader)
        if name:
            near = difflib.get_close_matches(name, sorted({r["name"] for r in names}), n=5, cutoff=0.5)
            hint = (f"; the nearest: {', '.join(near)}" if near
                    else f"; the database has {len(names)} foreign key{'s' if len(names) != 1 else ''}")
        else:
            hint = ""
        raise ConfigError(f"no foreign key {_where(name, table, schema)}{hint}")
    if len(rows) > 1:
        shown = ", ".join(f"{r['name']} on {r['schema']}.{r['table']}" for r in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        what = ("give its table as well (--table SCHEMA.TABLE; in Python table= and schema=)" if name
                else "give the constraint name")
        raise ConfigError(f"{len(rows)} foreign keys match {_where(name, table, schema)}: {shown}{more}; {what}")
    oid = rows[0]["oid"]
    defs = {r["oid"]: ForeignKeyDef.from_row(r) for r in queries.foreign_key_definitions(reader, [oid])}
    fk = defs[oid]
    others = [o for o in queries.foreign_keys_into(reader, fk.referenced_oid) if o != oid]
    if others:
        fk.paths = [ForeignKeyDef.from_row(r) for r in queries.foreign_key_definitions(reader, others)]
    return fk


# -- 3. the figures -------------------------------------------------------------------------------
def _figures(reader, fk: ForeignKeyDef, limit: int) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    raw = queries.foreign_key_figures(
        reader, schema=fk.schema, table=fk.table, columns=fk.columns, referenced_schema=fk.referenced_schema,
        referenced_table=fk.referenced_table, referenced_columns=fk.referenced_columns, row_key=fk.primary_key,
        limit=limit)
    any_null, all_null = raw["any_null"], raw["all_null"]
    # MATCH SIMPLE checks no row with a NULL column; MATCH FULL only lets an all-NULL key through
    # (a mix of NULL and non-NULL is a violation, stored only if NOT VALID or triggers were off).
    unchecked = all_null if fk.match == "full" else any_null
    figures = {
        "referencing_rows": raw["referencing_rows"],
        "null_keys": {"any_null": any_null, "all_null": all_null, "match": fk.match, "not_checked": unchecked,
                      "violating": any_null - all_null if fk.match == "full" else 0},
        "dangling_keys": raw["dangling_keys"],
    }
    return figures, {"dangling": raw["dangling"]}


@dataclass
class PathFigures:
    """Another foreign key into the same referenced table, with its figures."""

    constraint: ForeignKeyDef
    figures: dict[str, Any]
    samples: dict[str, list[dict[str, Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint.to_dict(paths=False), "figures": self.figures, "samples": self.samples}


@dataclass
class ConstraintDiagnosis:
    """One foreign key's figures and those of its paths, from one read-only snapshot."""

    constraint: ForeignKeyDef
    figures: dict[str, Any]
    samples: dict[str, list[dict[str, Any]]]
    paths: list[PathFigures]
    snapshot_at: datetime
    database: str = ""
    sample_limit: int = config.DEFAULT_SAMPLE_LIMIT
    #: The error the diagnosis started from, when it started from one.
    error: ParsedError | None = None
    #: For an error with an exact key: rows now holding it in the referenced table (``referenced_rows``)
    #: and in the referencing table (``referencing_rows``); None otherwise.
    error_key: dict[str, Any] | None = None

    @property
    def clean(self) -> bool:
        """No stored row breaks the constraint (no dangling key, no NULL mix under MATCH FULL)."""
        return not self.figures["dangling_keys"] and not self.figures["null_keys"]["violating"]

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``incidentkit diagnose --constraint NAME --json``."""
        out: dict[str, Any] = {
            "constraint": self.constraint.to_dict(paths=False),
            "figures": self.figures,
            "samples": self.samples,
            "paths": [p.to_dict() for p in self.paths],
            "snapshot_at": iso_utc(self.snapshot_at),
            "database": self.database,
            "sample_limit": self.sample_limit,
        }
        if self.error is not None:
            out["error"] = self.error.to_dict()
            out["error_key"] = self.error_key
        return out

    def text(self) -> str:
        """A one-screen summary for the terminal."""
        fk = self.constraint
        lines = [f"foreign key {fk.name}: {fk.describe()}", f"  {fk.properties()}",
                 f"database: {self.database}   snapshot: {iso_utc(self.snapshot_at)}"]
        if self.error is not None:
            key = ", ".join(f"{k}={v}" for k, v in self.error.key.items()) or "unknown"
            lines.append(f"error: {self.error.direction or 'unknown direction'}, key {key}"
                         + (f" ({self.error.key_note})" if self.error.key_note else ""))
            if self.error_key is not None:
                lines.append(f"  that key now: {self.error_key['referenced_rows']:,} row(s) in "
                             f"{fk.qualified_referenced_table}, {self.error_key['referencing_rows']:,} in "
                             f"{fk.qualified_table}")
        lines += _figure_lines(self.figures, "  ")
        lines += _sample_lines(self.samples, "    ")
        if self.paths:
            lines.append(f"other foreign keys into {fk.qualified_referenced_table}:")
            for p in self.paths:
                lines.append(f"  {p.constraint.name}: {p.constraint.describe()} ({p.constraint.properties()})")
                lines += _figure_lines(p.figures, "    ")
                lines += _sample_lines(p.samples, "      ")
        else:
            lines.append(f"no other foreign key into {fk.qualified_referenced_table}")
        return "\n".join(lines)


def _figure_lines(f: dict[str, Any], indent: str) -> list[str]:
    n = f["null_keys"]
    null_text = f"{n['any_null']:,} with a NULL column, {n['all_null']:,} all NULL"
    if n["match"] == "full":
        null_text += f" ({n['violating']:,} mixing NULL and non-NULL: violations under MATCH FULL)"
    else:
        null_text += f" (not checked under MATCH {n['match'].upper()})"
    return [f"{indent}referencing rows  {f['referencing_rows']:,}",
            f"{indent}null keys         {null_text}",
            f"{indent}dangling keys     {f['dangling_keys']:,}"]


def _sample_lines(samples: dict[str, list[dict[str, Any]]], indent: str) -> list[str]:
    out = []
    for s in samples.get("dangling", [])[:5]:
        key = ", ".join(f"{k}={v}" for k, v in s["key"].items())
        row = ", ".join(f"{k}={v}" for k, v in s["row"].items())
        out.append(f"{indent}e.g. key ({key}) in row ({row})")
    return out


def diagnose_constraint(db, name: str | None = None, *, error: str | ParsedError | None = None,
                        sample_limit: int = config.DEFAULT_SAMPLE_LIMIT, table: str | None = None,
                        schema: str | None = None) -> ConstraintDiagnosis:
    """The figures of foreign key ``name`` (or the one ``error`` names) and of its paths, in one snapshot.

    ``db`` is an :class:`incidentkit.Database`. ``error`` is the error text as pasted (or a
    :class:`ParsedError`); its table and schema settle a name used in several schemas. With both
    ``name`` and ``error``, they must name the same constraint.
    """
    if not isinstance(sample_limit, int) or isinstance(sample_limit, bool) or not 0 <= sample_limit <= 10_000:
        raise ConfigError("the sample limit must be a whole number from 0 to 10000")
    parsed = None
    if error is not None:
        parsed = parse_error(error)
        if name and name != parsed.constraint:
            raise ConfigError(f"the constraint {name!r} is not the one the error names ({parsed.constraint!r})")
        name = parsed.constraint
        table = table or parsed.table
        schema = schema or parsed.schema
    if not name and not table:
        raise ConfigError("name a foreign key: --constraint NAME or --error TEXT")
    with db.read() as r:
        snapshot_at = r.snapshot_at
        fk = discover(r, name, table=table, schema=schema)
        figures, samples = _figures(r, fk, sample_limit)
        paths = []
        for p in fk.paths:
            pf, ps = _figures(r, p, sample_limit)
            paths.append(PathFigures(p, pf, ps))
        error_key = None
        if parsed is not None and parsed.key_exact:
            error_key = _error_key(r, fk, parsed)
    return ConstraintDiagnosis(fk, figures, samples, paths, snapshot_at, database=db.describe(),
                               sample_limit=sample_limit, error=parsed, error_key=error_key)


def _error_key(reader, fk: ForeignKeyDef, parsed: ParsedError) -> dict[str, Any] | None:
    """Rows holding the error's key now, on both sides (None when its columns are not the key's)."""
    cols = parsed.key_columns
    if cols == fk.columns:
        ref_cols, own_cols = fk.referenced_columns, fk.columns
    elif cols == fk.referenced_columns:
        ref_cols, own_cols = fk.referenced_columns, fk.columns
    else:
        return None
    values = [parsed.key[c] for c in cols]
    return {
        "key": dict(parsed.key),
        "referenced_rows": queries.key_rows(reader, schema=fk.referenced_schema, table=fk.referenced_table,
                                            columns=ref_cols, values=values),
        "referencing_rows": queries.key_rows(reader, schema=fk.schema, table=fk.table, columns=own_cols,
                                             values=values),
    }
