"""The scratch target: connecting to it, refusing what is not the lab's, preparing its schema.

By default the lab creates its own database on the kit's embedded server
(:func:`incidentkit.db.embedded.ensure_server`), named ``incidentkit_racelab_<pid>``, and
drops it when done. It never reads ``$DATABASE_URL``. ``scratch_url`` may name another
scratch database explicitly: the lab then refuses (:class:`~incidentkit.exceptions.UnsafeTarget`)
any database holding a table it did not create. It marks what it creates with a marker table
``incidentkit_racelab.marker`` (and a ``comment on database`` when allowed) and accepts only
an empty database or one holding exactly its own tables next to that marker.

**Schema.** The reference schema (``sql/reference_schema.sql``), except that its audit
schema is dropped and re-created from the remediation template ``03_audit_trigger.sql``,
so every run also exercises that template (each cell checks that a committed deletion of
the workspace was logged).

Whatever leaves this module as an error is one line with the URL's secrets scrubbed by the
kit's one scrubber (:func:`incidentkit.text.scrub_secrets`), naming the target as
``host/dbname`` only.
"""

from __future__ import annotations

from ..exceptions import ConfigError, ConnectionFailed, QueryFailed, UnsafeTarget
from ..text import conninfo_parts, describe_parts, describe_url, one_line, scrub_secrets
from .sql import (
    AUDIT_FILE,
    MARKER_SCHEMA,
    REFERENCE_SCHEMA,
    SQL_CREATE_MARKER,
    SQL_CURRENT_DATABASE,
    SQL_DROP_AUDIT,
    SQL_DROP_OWN_TABLES,
    SQL_INSERT_MARKER,
    SQL_READ_MARKER,
    SQL_USER_TABLES,
    template,
)

#: What the marker table (and the database's comment) says.
MARKER_TOKEN = "incidentkit racelab scratch database"
#: The only tables a database may hold for the lab to (re)use it.
_OWN_TABLES = frozenset({
    ("public", "workspaces"), ("public", "users"), ("public", "workspace_members"),
    ("audit", "logged_actions"), (MARKER_SCHEMA, "marker"),
})


# -- URLs and error lines -------------------------------------------------------------------

def _parts(url: str) -> dict[str, str]:
    """The URL's libpq parts; :class:`ConfigError` (quoting nothing of it) when libpq refuses it."""
    try:
        return conninfo_parts(url)
    except ValueError as exc:
        raise ConfigError(f"scratch_url is not usable: {exc}") from None


def _where(url: str) -> str:
    """``database host/dbname``: how the lab's errors name its target (no credentials)."""
    return f"database {describe_parts(_parts(url))}"


def _scrub(text: str, url: str) -> str:
    """``text`` as one line, with the URL, its password and any other credential hidden
    (the kit's one scrubber, :func:`incidentkit.text.scrub_secrets`)."""
    return one_line(scrub_secrets(text, [url, _parts(url).get("password", "")]))


def error_text(exc: BaseException) -> str:
    """The error as PostgreSQL gives it: message, then ``DETAIL:`` when there is one."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        return " ".join(str(exc).split()) or type(exc).__name__
    detail = getattr(diag, "message_detail", None)
    return f"{primary}\nDETAIL:  {detail}" if detail else primary


def lab_error(exc: Exception, url: str) -> Exception:
    """A driver error on the lab's own connections (not a cell's outcome) as one scrubbed line."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return exc
    text = _scrub(error_text(exc), url)
    if isinstance(exc, psycopg.OperationalError):
        return ConnectionFailed(f"the race lab lost its scratch {_where(url)}: {text}")
    return QueryFailed(f"the race lab failed on its scratch {_where(url)}: {text}")


def target_description(scratch_url: str | None = None) -> str:
    """Where the lab ran, as reports name databases (host/dbname, never credentials)."""
    if not scratch_url:
        return "a scratch database of its own on the kit's embedded server (dropped afterwards)"
    return f"`{describe_url(scratch_url)}` (scratch)"


# -- connecting and preparing ---------------------------------------------------------------

def connect(url: str, role: str):
    """An autocommit connection named ``incidentkit-racelab-<role>``; errors scrubbed."""
    import psycopg

    where = _where(url)  # checks the URL first (ConfigError)
    try:
        return psycopg.connect(url, autocommit=True, application_name=f"incidentkit-racelab-{role}",
                               connect_timeout=10)
    except psycopg.Error as exc:
        raise ConnectionFailed(f"cannot connect to the race lab's scratch {where}: {_scrub(str(exc), url)}") from None


def prepare_database(url: str) -> None:
    """Check the target is the lab's own (or empty), then (re)build the lab's schema in it."""
    where = _where(url)
    conn = connect(url, "setup")
    try:
        tables = [(r[0], r[1]) for r in conn.execute(SQL_USER_TABLES).fetchall()]
        foreign = [t for t in tables if t not in _OWN_TABLES]
        if foreign:
            shown = ", ".join(f"{s}.{t}" for s, t in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UnsafeTarget(f"refusing to run the race lab on {where}: it holds tables the lab did not "
                               f"create ({shown}); give it an empty scratch database")
        if tables:
            marked = (MARKER_SCHEMA, "marker") in tables and any(
                row[0] == MARKER_TOKEN for row in conn.execute(SQL_READ_MARKER).fetchall())
            if not marked:
                raise UnsafeTarget(f"refusing to run the race lab on {where}: it holds application tables "
                                   "the lab did not create (no race lab marker); give it an empty scratch database")
            conn.execute(SQL_DROP_OWN_TABLES)
        conn.execute(SQL_CREATE_MARKER)
        if not conn.execute(SQL_READ_MARKER).fetchall():
            conn.execute(SQL_INSERT_MARKER, {"token": MARKER_TOKEN})
        _comment_database(conn)
        conn.execute(REFERENCE_SCHEMA.read_text())
        conn.execute(SQL_DROP_AUDIT)
        conn.execute(template(AUDIT_FILE))
    except UnsafeTarget:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error becomes one scrubbed line
        import psycopg

        if isinstance(exc, psycopg.Error):
            raise QueryFailed(f"preparing the race lab's {where} failed: {_scrub(error_text(exc), url)}") from None
        raise
    finally:
        conn.close()


def _comment_database(conn) -> None:
    """Mark the database itself too, when the role may (it is not required)."""
    import psycopg
    from psycopg import sql

    name = conn.execute(SQL_CURRENT_DATABASE).fetchone()[0]
    try:
        conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(MARKER_TOKEN)))
    except psycopg.Error:
        pass
