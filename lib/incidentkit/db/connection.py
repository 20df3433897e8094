"""Connections: read-only, time-limited, pooler-safe, and never leaking the URL's secret.

Every transaction the kit opens is ``REPEATABLE READ READ ONLY`` (one consistent snapshot)
and sets, per transaction (``SET LOCAL``, which transaction-mode poolers allow), a statement
timeout, a lock timeout, an idle-in-transaction timeout and ``application_name``. Nothing is
set per session and no startup ``options`` are sent, because PgBouncer in transaction mode
refuses them; server-side prepared statements are disabled (``prepare_threshold=None``).
URL parameters (``sslmode`` and the rest) pass through untouched.

The URL comes from an environment variable (``DATABASE_URL`` by default), never from a
command-line argument; notebooks receive the variable's *name*. Whatever text leaves this
module (errors, descriptions) has the password and the full URL scrubbed out.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from .. import config
from ..config import Timeouts
from ..exceptions import ConfigError, ConnectionFailed, QueryFailed, SchemaMismatch
from ..text import conninfo_parts, describe_parts, first_line, one_line, scrub_secrets

_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


@dataclass
class Database:
    """A target database: a URL (kept private), the schema mapping and the timeouts."""

    url: str = field(repr=False)
    schema: Any = None  # incidentkit.schema.SchemaMap; None means the reference schema
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: Extra strings that must never appear in output (e.g. the password).
    _secrets: list[str] = field(default_factory=list, repr=False)
    #: (schema mapping, {"workspaces.id": "uuid", ...}): the id columns' types, read once per mapping.
    id_types: tuple[Any, dict[str, str]] | None = field(default=None, init=False, repr=False, compare=False)
    #: The schema mapping last found to fit this database (``SchemaMap.check`` skips it next time).
    schema_checked: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = (self.url or "").strip() if isinstance(self.url, str) else ""
        if not raw:
            raise ConfigError("the database URL is empty")
        self._secrets = [raw]
        head = raw.split(None, 1)[0]
        if "://" in head and head.split("://", 1)[0].lower() not in _SCHEMES:
            scheme = head.split("://", 1)[0]
            raise ConfigError("the database URL must start with postgresql:// (got "
                              f"{one_line(scheme or 'no scheme', 40)!r})")
        try:
            parts = conninfo_parts(raw)
        except ValueError as e:
            raise ConfigError(f"the database URL is malformed: {e}") from None
        if parts.get("password"):
            self._secrets.append(parts["password"])
        if not parts.get("dbname"):
            raise ConfigError("the database URL names no database (postgresql://host/dbname)")
        self._parts = parts
        if self.schema is None:
            from .schema import SchemaMap

            self.schema = SchemaMap.default()
        self._engine = None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_env(cls, env_name: str = config.DEFAULT_URL_ENV, **kwargs) -> "Database":
        """The database named by environment variable ``env_name`` (``DATABASE_URL``)."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_name or ""):
            raise ConfigError(f"not a valid environment variable name: {env_name!r}")
        url = os.environ.get(env_name)
        if not url:
            raise ConfigError(f"${env_name} is not set: export it with the database URL, or use --demo")
        return cls(url, **kwargs)

    @classmethod
    def demo(cls, production: bool = False, **kwargs) -> "Database":
        """The demo incident on the embedded server (started and loaded on demand).

        ``production=True``: the same incident "as production is": no audit table, deletions
        in the server log and the access log, point-in-time snapshots (its schema map is
        :data:`incidentkit.db.demo.DEMO_PRODUCTION_MAP` unless ``schema`` is given)."""
        if production:
            from .demo import DEMO_PRODUCTION_MAP, ensure_production_demo
            from .schema import SchemaMap

            if kwargs.get("schema") is None or kwargs["schema"].origin == SchemaMap.default().origin:
                kwargs["schema"] = SchemaMap.from_dict(DEMO_PRODUCTION_MAP, origin="demo as production is")
            return cls(ensure_production_demo(), **kwargs)
        from .demo import ensure_demo

        return cls(ensure_demo(), **kwargs)

    # -- what may be shown ----------------------------------------------------------------
    @property
    def host(self) -> str:
        """The host (or hosts, comma-separated; a socket directory) libpq will connect to."""
        return self._parts.get("host") or self._parts.get("hostaddr") or "localhost"

    @property
    def dbname(self) -> str:
        return self._parts["dbname"]

    def describe(self) -> str:
        """``host/dbname``: how reports name the database (no user, password or port)."""
        return describe_parts(self._parts)

    def scrub(self, text: str) -> str:
        """``text`` with the URL, its password and any other credential replaced by ``***``."""
        return scrub_secrets(text, self._secrets)

    # -- connections ----------------------------------------------------------------------
    def _conninfo(self) -> str:
        """The libpq connection string the kit connects with (secret: never shown)."""
        from psycopg.conninfo import make_conninfo

        extra: dict[str, Any] = {}
        if "application_name" not in self._parts:
            extra["application_name"] = config.APPLICATION_NAME
        if "connect_timeout" not in self._parts:
            extra["connect_timeout"] = 10
        # libpq itself reads the connection string (multi-host, socket directories, every
        # parameter), exactly as psql would.
        return make_conninfo("", **self._parts, **extra)

    def _connect(self):
        """A new psycopg connection (server-side prepared statements off: pooler-safe)."""
        import psycopg

        return psycopg.connect(self._conninfo(), prepare_threshold=None)

    @property
    def engine(self):
        """A SQLAlchemy engine on the same connections (for pandas and the notebooks; the kit's
        own reads, :meth:`read`, go straight through psycopg and never import SQLAlchemy)."""
        if self._engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            self._engine = create_engine("postgresql+psycopg://", creator=self._connect, poolclass=NullPool,
                                         hide_parameters=True)
        return self._engine

    @contextlib.contextmanager
    def read(self) -> Iterator["Reader"]:
        """One read-only, repeatable-read transaction with the kit's timeouts."""
        with self.translate_errors():
            from psycopg import IsolationLevel

            conn = self._connect()
            try:
                conn.isolation_level = IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                with conn.transaction():  # BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; commit or rollback
                    reader = Reader(conn, self)
                    reader._set_locals()
                    yield reader
            finally:
                conn.close()

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn driver errors into the kit's one-line errors, secrets scrubbed."""
        try:
            yield
        except (ConfigError, ConnectionFailed, QueryFailed, SchemaMismatch):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised otherwise
            mapped = self._map_error(exc)
            if mapped is None:
                raise
            raise mapped from None

    def _map_error(self, exc: BaseException):
        import psycopg
        from psycopg import errors as pe

        # SQLAlchemy (the engine's users) wraps the driver's error; never imported just to check.
        sa_exc = getattr(sys.modules.get("sqlalchemy"), "exc", None)
        sa_dbapi = sa_exc.DBAPIError if sa_exc is not None else ()
        sa_operational = sa_exc.OperationalError if sa_exc is not None else ()
        orig = exc.orig if isinstance(exc, sa_dbapi) and exc.orig is not None else exc
        where = self.describe()
        if isinstance(orig, pe.QueryCanceled):
            return QueryFailed(f"a query on {where} hit the statement timeout "
                               f"({self.timeouts.statement_ms / 1000:g} s) and was cancelled")
        if isinstance(orig, pe.LockNotAvailable):
            return QueryFailed(f"a query on {where} waited longer than the lock timeout "
                               f"({self.timeouts.lock_ms / 1000:g} s)")
        if isinstance(orig, pe.IdleInTransactionSessionTimeout):
            return ConnectionFailed(f"{where} closed the transaction after the idle timeout")
        if isinstance(orig, (pe.AdminShutdown, pe.CrashShutdown)):
            return ConnectionFailed(f"the connection to {where} was terminated by the server")
        if isinstance(orig, (pe.UndefinedTable, pe.UndefinedColumn)):
            return SchemaMismatch(self.scrub(f"{where}: {first_line(orig)} (check the schema mapping)"))
        if isinstance(orig, pe.InsufficientPrivilege):
            return QueryFailed(self.scrub(f"{where}: {first_line(orig)} (the kit needs SELECT on the mapped tables)"))
        if isinstance(orig, pe.ReadOnlySqlTransaction):
            return QueryFailed(self.scrub(f"{where}: refused a write: {first_line(orig)}"))
        if isinstance(orig, psycopg.OperationalError) or isinstance(exc, sa_operational):
            return ConnectionFailed(self.scrub(f"cannot use {where}: {self._explain_connect(orig)}"))
        if isinstance(orig, psycopg.Error) or isinstance(exc, sa_dbapi):
            return QueryFailed(self.scrub(f"{where}: {first_line(orig)}"))
        return None

    @staticmethod
    def _explain_connect(orig: BaseException) -> str:
        text = str(orig)
        for pattern, message in (
            (r"password authentication failed", "password authentication failed"),
            (r"database \"[^\"]*\" does not exist", None),
            (r"Connection refused", "connection refused (is the server running and the port right?)"),
            (r"could not translate host name|Name or service not known|nodename nor servname",
             "the host name does not resolve"),
            (r"timeout expired", "the connection timed out"),
            (r"terminating connection due to administrator command|server closed the connection",
             "the connection was terminated by the server"),
            (r"consuming input failed|the connection is lost|connection is closed",
             "the connection was lost"),
        ):
            m = re.search(pattern, text)
            if m:
                return message or one_line(m.group(0))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        fatal = [ln for ln in lines if ln.startswith("FATAL") or "FATAL:" in ln]
        return one_line(fatal[-1] if fatal else (lines[-1] if lines else type(orig).__name__))


class Reader:
    """The queries of one read-only transaction; results come back as lists of dicts."""

    def __init__(self, conn, db: Database):
        self._conn = conn
        self.db = db
        self.schema = db.schema
        self._snapshot_at: datetime | None = None

    def _set_locals(self) -> None:
        t = self.db.timeouts
        # set_config(..., true) is SET LOCAL with bound values: per transaction, pooler-safe.
        self._conn.execute(
            "select set_config('statement_timeout', %(s)s, true),"
            " set_config('lock_timeout', %(l)s, true),"
            " set_config('idle_in_transaction_session_timeout', %(i)s, true),"
            " set_config('application_name', %(a)s, true)",
            {"s": f"{int(t.statement_ms)}ms", "l": f"{int(t.lock_ms)}ms",
             "i": f"{int(t.idle_in_transaction_ms)}ms", "a": config.APPLICATION_NAME},
        )

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        """Run ``sql`` (psycopg ``%(name)s`` placeholders, values bound) and return its rows."""
        with self._conn.cursor() as cur:
            cur.execute(sql, dict(params or {}))
            if cur.description is None:
                return []
            keys = [c.name for c in cur.description]
            return [dict(zip(keys, row)) for row in cur.fetchall()]

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> dict | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None):
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))

    @property
    def snapshot_at(self) -> datetime:
        """When this transaction's snapshot began (``now()``), in UTC."""
        if self._snapshot_at is None:
            value = self.scalar("select now() as now")
            self._snapshot_at = value.astimezone(timezone.utc)
        return self._snapshot_at
