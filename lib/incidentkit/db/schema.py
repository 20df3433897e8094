"""The schema mapping: logical entities -> real, schema-qualified tables and columns.

Defaults are the reference schema (``sql/reference_schema.sql``). A TOML file given with
``--schema-map FILE``, or a ``[tool.incidentkit.schema]`` table in ``pyproject.toml`` in the
working directory, overrides any part of it::

    [users]
    table = "app.accounts"
    id = "did"
    primary_workspace_id = "home_workspace"

    [workspaces]
    table = "app.teams"
    deleted_at = "archived_at"     # a soft-delete column, optional

    [deletions]
    source = "soft_delete"         # "audit" (default), "soft_delete" or "none"

    [[deletions.log_events]]       # any number: deletions an application log records
    table = "workspaces"           # or "memberships"
    pattern = 'DELETE /api/teams/(?P<id>[0-9a-f-]{36}) 2[0-9][0-9]'

When the mapping names no audit table (no ``[deletions] table`` and no ``source = "audit"``)
and the default one does not exist, the database-side source is ``none`` and the kit goes on
with the other sources (the logs, point-in-time probes); only an audit table the mapping
names explicitly and that is missing is an error (:meth:`SchemaMap.check`).

Identifiers are always quoted with :func:`quote_ident`; nothing from the mapping is ever
pasted into SQL unquoted.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, SchemaMismatch
from ..text import one_line

#: The largest configuration file (schema map, pyproject.toml) the kit reads.
MAX_CONFIG_BYTES = 1024 * 1024


def read_config_text(path: str | Path, what: str = "schema map") -> str:
    """The text of a small configuration file: a regular file of at most 1 MiB, UTF-8.

    Devices (``/dev/zero``), FIFOs and directories are refused before anything is read, and
    never more than ``MAX_CONFIG_BYTES`` + 1 bytes are read whatever the file does meanwhile.
    """
    shown = one_line(path, 200)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(f"{what} {shown} is {kind}")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{what} {shown} is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped after the first look
                raise ConfigError(f"{what} {shown} is not a regular file")
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {shown}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {shown}: {e.strerror or type(e).__name__}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {shown} is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {shown} is not UTF-8 text") from None

ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "primary_workspace_id", "created_at"),
    "workspaces": ("id", "created_at"),
    "memberships": ("id", "workspace_id", "user_id", "is_primary", "joined_at"),
    "audit": ("schema_name", "table_name", "action", "row_data", "at", "transaction_id"),
}
#: Columns a mapping may leave empty (``created_at = ""``): without ``created_at``/``joined_at`` the
#: rows are dated by the commit timestamp of their last write where ``track_commit_timestamp`` is on.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"workspaces": ("deleted_at", "created_at"),
                                                "memberships": ("joined_at",)}
DELETION_SOURCES = ("audit", "soft_delete", "none")
#: The tables a ``[[deletions.log_events]]`` rule may name.
LOG_EVENT_TABLES = ("workspaces", "memberships")
#: The longest ``pattern`` of a log-event rule (a regular expression).
MAX_PATTERN_CHARS = 2000


@dataclass(frozen=True)
class LogEventRule:
    """One ``[[deletions.log_events]]`` rule: an application log's record of a deletion.

    ``pattern`` is a Python regular expression with a named group ``id`` (the deleted row's id),
    matched against each record's message (and, for JSON lines, the raw line too); an optional
    named group ``user`` is who did it.
    """

    table: str  # "workspaces" | "memberships"
    pattern: re.Pattern[str]

    @property
    def text(self) -> str:
        return self.pattern.pattern

    def describe(self) -> dict[str, str]:
        return {"table": self.table, "pattern": self.text}


def log_event_rules(entries: Any) -> tuple[LogEventRule, ...]:
    """``[[deletions.log_events]]`` checked and compiled: each needs a ``table`` (one of
    LOG_EVENT_TABLES) and a ``pattern`` that compiles and has a named group ``id``."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ConfigError(f"[deletions] log_events must be an array of tables ([[deletions.log_events]]), "
                          f"not {_toml_type(entries)}")
    out = []
    for n, entry in enumerate(entries, 1):
        where = f"[[deletions.log_events]] #{n}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table, not {_toml_type(entry)}")
        bad = set(entry) - {"table", "pattern"}
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(bad))} (allowed: pattern, table)")
        table, pattern = entry.get("table"), entry.get("pattern")
        if table not in LOG_EVENT_TABLES:
            raise ConfigError(f"{where}: table must be one of {', '.join(LOG_EVENT_TABLES)} "
                              f"(got {one_line(repr(table), 80)})")
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"{where}: pattern must be a non-empty string (a regular expression)")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ConfigError(f"{where}: pattern is longer than {MAX_PATTERN_CHARS} characters")
        try:
            rx = re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as e:
            raise ConfigError(f"{where}: pattern does not compile: {one_line(e, 160)}") from None
        if "id" not in rx.groupindex:
            raise ConfigError(f"{where}: pattern has no named group (?P<id>...) for the deleted row's id")
        out.append(LogEventRule(table, rx))
    return tuple(out)


def _pyproject_section(data: dict) -> Any:
    """``[tool.incidentkit.schema]`` of a parsed pyproject.toml (None when absent)."""
    for key in ("tool", "incidentkit", "schema"):
        if not isinstance(data, dict):
            raise ConfigError("[tool.incidentkit] in pyproject.toml must be a table")
        data = data.get(key)
        if data is None:
            return None
    return data


def _toml_type(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "a table"}
    return next((n for t, n in names.items() if isinstance(value, t)), f"a {type(value).__name__}")


def quote_ident(name: str) -> str:
    """A quoted identifier: ``users`` -> ``"users"``; embedded quotes doubled."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(f"not a valid identifier: {one_line(repr(name), 120)}")
    return '"' + name.replace('"', '""') + '"'


def split_qualified(name: str) -> tuple[str, str]:
    """``"audit.logged_actions"`` -> ``("audit", "logged_actions")``; no schema -> ``public``."""
    parts = [p.strip() for p in name.split(".")]
    if len(parts) == 1:
        return "public", parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise ConfigError(f"not a table name (schema.table): {one_line(repr(name), 120)}")


@dataclass(frozen=True)
class Table:
    """One mapped table: its qualified name and its logical -> physical columns."""

    entity: str
    schema: str
    name: str
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def sql(self) -> str:
        """The quoted, schema-qualified name for SQL."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    def col(self, logical: str) -> str:
        """The quoted physical column for a logical one."""
        try:
            return quote_ident(self.columns[logical])
        except KeyError:
            raise ConfigError(f"the mapping of {self.entity} has no column {logical!r}") from None

    def has(self, logical: str) -> bool:
        return bool(self.columns.get(logical))


_DEFAULTS: dict[str, dict[str, str]] = {
    "users": {"table": "public.users", "id": "privy_did", "primary_workspace_id": "primary_workspace_id",
              "created_at": "created_at"},
    "workspaces": {"table": "public.workspaces", "id": "id", "created_at": "created_at", "deleted_at": ""},
    "memberships": {"table": "public.workspace_members", "id": "id", "workspace_id": "workspace_id",
                    "user_id": "user_id", "is_primary": "is_primary", "joined_at": "joined_at"},
    "audit": {"table": "audit.logged_actions", "schema_name": "schema_name", "table_name": "table_name",
              "action": "action", "row_data": "row_data", "at": "action_tstamp_clk",
              "transaction_id": "transaction_id"},
}


@dataclass(frozen=True)
class SchemaMap:
    """Where the users, workspaces, memberships and the deletion source are."""

    users: Table
    workspaces: Table
    memberships: Table
    audit: Table
    deletion_source: str = "audit"  # "audit" | "soft_delete" | "none"
    origin: str = "reference schema (default)"
    #: ``[[deletions.log_events]]``: deletions as the application's logs record them.
    log_events: tuple[LogEventRule, ...] = ()
    #: The mapping asks for the audit table (``[deletions] table`` or ``source = "audit"``): a
    #: missing one is an error. Otherwise a missing default audit table means source "none".
    audit_explicit: bool = False

    @classmethod
    def default(cls) -> "SchemaMap":
        return cls.from_dict({})

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "reference schema (default)") -> "SchemaMap":
        if not isinstance(data, dict):
            raise ConfigError("the schema mapping must be a TOML table")
        unknown = set(data) - {"users", "workspaces", "memberships", "deletions", "audit"}
        if unknown:
            raise ConfigError(f"unknown section(s) in the schema mapping: {', '.join(sorted(unknown))}")
        for section in ("users", "workspaces", "memberships", "deletions", "audit"):
            if section in data and not isinstance(data[section], dict):
                raise ConfigError(f"[{section}] in the schema mapping must be a table, not "
                                  f"{_toml_type(data[section])}")
        deletions = dict(data.get("deletions") or {})
        source = deletions.pop("source", None)
        log_events = log_event_rules(deletions.pop("log_events", None))
        audit_explicit = source == "audit" or "table" in deletions or "table" in (data.get("audit") or {})
        if source is not None and not isinstance(source, str):
            raise ConfigError(f"[deletions] source must be a string, not {_toml_type(source)}")
        audit_over = {**(data.get("audit") or {}), **deletions}
        tables = {}
        for entity in ("users", "workspaces", "memberships", "audit"):
            over = audit_over if entity == "audit" else (data.get(entity) or {})
            if not isinstance(over, dict):
                raise ConfigError(f"[{entity}] in the schema mapping must be a table")
            allowed = {"table", *ENTITY_COLUMNS[entity], *OPTIONAL_COLUMNS.get(entity, ())}
            bad = set(over) - allowed
            if bad:
                raise ConfigError(f"unknown key(s) in [{entity if entity != 'audit' else 'deletions'}]: "
                                  f"{', '.join(sorted(bad))} (allowed: {', '.join(sorted(allowed))})")
            section = entity if entity != "audit" else "deletions"
            for key, value in over.items():
                if not isinstance(value, str):
                    raise ConfigError(f"[{section}] {key} must be a string (a table or column name), "
                                      f"not {_toml_type(value)}")
                if not value.strip() and key not in OPTIONAL_COLUMNS.get(entity, ()):
                    raise ConfigError(f"[{section}] {key} is empty")
                if "\x00" in value:
                    raise ConfigError(f"[{section}] {key} holds a NUL character")
            merged = {**_DEFAULTS[entity], **over}
            schema, name = split_qualified(merged.pop("table"))
            tables[entity] = Table(entity, schema, name, merged)
        if source is None:
            source = "soft_delete" if tables["workspaces"].has("deleted_at") else "audit"
        if source not in DELETION_SOURCES:
            raise ConfigError(f"[deletions] source must be one of {', '.join(DELETION_SOURCES)} "
                              f"(got {one_line(repr(source), 80)})")
        if source == "soft_delete" and not tables["workspaces"].has("deleted_at"):
            raise ConfigError("[deletions] source = \"soft_delete\" needs [workspaces] deleted_at = \"<column>\"")
        return cls(tables["users"], tables["workspaces"], tables["memberships"], tables["audit"], source, origin,
                   log_events, audit_explicit)

    @classmethod
    def from_toml(cls, path: str | Path) -> "SchemaMap":
        path = Path(path)
        text = read_config_text(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"schema map {one_line(path, 200)} is not valid TOML: {one_line(e, 200)}") from None
        if path.name == "pyproject.toml":
            data = _pyproject_section(data) or {}
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def load(cls, schema_map: str | Path | None = None, cwd: str | Path = ".") -> "SchemaMap":
        """``--schema-map FILE`` if given, else ``[tool.incidentkit.schema]`` in ./pyproject.toml, else defaults."""
        if schema_map:
            return cls.from_toml(schema_map)
        pyproject = Path(cwd) / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(read_config_text(pyproject, "pyproject.toml"))
            except (ConfigError, tomllib.TOMLDecodeError):
                return cls.default()
            section = _pyproject_section(data)
            if section:
                return cls.from_dict(section, origin=f"{pyproject} [tool.incidentkit.schema]")
        return cls.default()

    def with_deletion_source(self, source: str) -> "SchemaMap":
        return replace(self, deletion_source=source)

    @property
    def tables(self) -> list[Table]:
        out = [self.users, self.workspaces, self.memberships]
        if self.deletion_source == "audit":
            out.append(self.audit)
        return out

    def describe(self) -> dict[str, Any]:
        """The mapping as plain data, for reports."""
        return {
            "origin": self.origin,
            "deletion_source": self.deletion_source,
            **({"log_events": [r.describe() for r in self.log_events]} if self.log_events else {}),
            **{t.entity: {"table": t.qualified, **{k: v for k, v in t.columns.items() if v}} for t in self.tables},
        }

    def missing(self, reader) -> list[str]:
        """Every mapped table or column the database lacks (empty when the mapping fits)."""
        from . import queries

        wanted = []
        for t in self.tables:
            for logical, col in t.columns.items():
                if col:
                    wanted.append((t.schema, t.name, col))
        found = queries.existing_columns(reader, [(t.schema, t.name) for t in self.tables])
        problems: list[str] = []
        for t in self.tables:
            if (t.schema, t.name) not in found:
                problems.append(f"table {t.qualified} ({t.entity})")
                continue
            for logical, col in t.columns.items():
                if col and col not in found[(t.schema, t.name)]:
                    problems.append(f"column {t.qualified}.{col} ({t.entity}.{logical})")
        return problems

    def check(self, reader) -> "SchemaMap":
        """The mapping as this database can serve it; raise :class:`SchemaMismatch` naming
        everything missing, in one message.

        An audit table the mapping does not ask for (the default one) that the database lacks is
        not an error: the mapping returned has deletion source ``none`` and the other sources
        (logs, probes) do the work. A mapping that fitted once is not checked again for the same
        :class:`Database` object: per-user reads (timelines) would otherwise pay a catalog read each.
        """
        db = reader.db
        cached = db.schema_checked
        if isinstance(cached, tuple) and cached[0] is self:
            return cached[1]
        problems = self.missing(reader)
        effective = self
        if self.deletion_source == "audit" and not self.audit_explicit:
            audit_missing = [p for p in problems if p.endswith("(audit)") or "(audit." in p]
            if audit_missing:
                problems = [p for p in problems if p not in audit_missing]
                effective = replace(self, deletion_source="none")
        if problems:
            raise SchemaMismatch(f"{db.describe()} does not match the schema mapping ({self.origin}): "
                                 f"missing {'; '.join(problems)}")
        db.schema_checked = (self, effective)
        return effective
