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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from .. import config
from ..config import Timeouts
from ..exceptions import ConfigError, ConnectionFailed, QueryFailed, SchemaMismatch

_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return str(text).strip()


@dataclass
class Database:
    """A target database: a URL (kept private), the schema mapping and the timeouts."""

    url: str = field(repr=False)
    schema: Any = None  # incidentkit.schema.SchemaMap; None means the reference schema
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: Extra strings that must never appear in output (e.g. the password).
    _secrets: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        raw = (self.url or "").strip()
        if not raw:
            raise ConfigError("the database URL is empty")
        self._secrets = [s for s in {raw} if s]
        scheme = raw.split("://", 1)[0] if "://" in raw else ""
        if scheme not in _SCHEMES:
            raise ConfigError("the database URL must start with postgresql:// (got "
                              f"{(scheme or 'no scheme')!r})")
        try:
            parsed = make_url(raw)
        except (ArgumentError, ValueError):
            raise ConfigError("the database URL is malformed (expected postgresql://host:port/dbname, with user and password before the host)") from None
        if parsed.password:
            self._secrets.append(str(parsed.password))
        try:
            port = parsed.port
        except ValueError:
            raise ConfigError("the database URL has an invalid port") from None
        if not parsed.database:
            raise ConfigError("the database URL names no database (postgresql://host/dbname)")
        self._parsed = parsed.set(drivername="postgresql+psycopg")
        self._port = port
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
    def demo(cls, **kwargs) -> "Database":
        """The demo incident on the embedded server (started and loaded on demand)."""
        from .demo import ensure_demo

        return cls(ensure_demo(), **kwargs)

    # -- what may be shown ----------------------------------------------------------------
    @property
    def host(self) -> str:
        h = self._parsed.host or self._parsed.query.get("host") or "localhost"
        if isinstance(h, tuple):
            h = h[0]
        return str(h)

    @property
    def dbname(self) -> str:
        return str(self._parsed.database)

    def describe(self) -> str:
        """``host/dbname``: how reports name the database (no user, password or port)."""
        return f"{self.host}/{self.dbname}"

    def scrub(self, text: str) -> str:
        """``text`` with the URL and its password replaced by ``***``."""
        out = str(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret:
                out = out.replace(secret, "***")
        return out

    # -- engine -------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            connect_args: dict[str, Any] = {"prepare_threshold": None}
            if "application_name" not in self._parsed.query:
                connect_args["application_name"] = config.APPLICATION_NAME
            if "connect_timeout" not in self._parsed.query:
                connect_args["connect_timeout"] = 10
            self._engine = create_engine(self._parsed, poolclass=NullPool, connect_args=connect_args,
                                         hide_parameters=True)
        return self._engine

    @contextlib.contextmanager
    def read(self) -> Iterator["Reader"]:
        """One read-only, repeatable-read transaction with the kit's timeouts."""
        with self.translate_errors():
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                with conn.begin():
                    reader = Reader(conn, self)
                    reader._set_locals()
                    yield reader

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
        from sqlalchemy import exc as sa_exc

        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
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
            return SchemaMismatch(self.scrub(f"{where}: {_first_line(orig)} (check the schema mapping)"))
        if isinstance(orig, pe.InsufficientPrivilege):
            return QueryFailed(self.scrub(f"{where}: {_first_line(orig)} (the kit needs SELECT on the mapped tables)"))
        if isinstance(orig, pe.ReadOnlySqlTransaction):
            return QueryFailed(self.scrub(f"{where}: refused a write: {_first_line(orig)}"))
        if isinstance(orig, psycopg.OperationalError) or isinstance(exc, sa_exc.OperationalError):
            return ConnectionFailed(self.scrub(f"cannot use {where}: {self._explain_connect(orig)}"))
        if isinstance(orig, psycopg.Error) or isinstance(exc, sa_exc.DBAPIError):
            return QueryFailed(self.scrub(f"{where}: {_first_line(orig)}"))
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
                return message or m.group(0)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        fatal = [ln for ln in lines if ln.startswith("FATAL") or "FATAL:" in ln]
        return (fatal[-1] if fatal else (lines[-1] if lines else type(orig).__name__))[:300]


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
        self._conn.exec_driver_sql(
            "select set_config('statement_timeout', %(s)s, true),"
            " set_config('lock_timeout', %(l)s, true),"
            " set_config('idle_in_transaction_session_timeout', %(i)s, true),"
            " set_config('application_name', %(a)s, true)",
            {"s": f"{int(t.statement_ms)}ms", "l": f"{int(t.lock_ms)}ms",
             "i": f"{int(t.idle_in_transaction_ms)}ms", "a": config.APPLICATION_NAME},
        )

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        """Run ``sql`` (psycopg ``%(name)s`` placeholders, values bound) and return its rows."""
        result = self._conn.exec_driver_sql(sql, dict(params or {}))
        if not result.returns_rows:
            return []
        keys = list(result.keys())
        return [dict(zip(keys, row)) for row in result.fetchall()]

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
