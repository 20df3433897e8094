"""The demo incident: a seeded, deterministic database that reproduces the 2025-10-08 report.

As of the diagnosis it holds exactly the report's figures: 179 users, 179 workspaces,
183 memberships, no user without or with an invalid primary workspace, no orphaned
membership. Its audit log holds six weeks of history before 2025-10-08, among it the
incident itself:

* workspace ``a7189b92-ba75-4160-8fa0-426bfe8fa33a`` created by an existing user;
* an invite membership in it for ``did:privy:cmgiqkpg0001wl40cqhofcvo4`` (no user row yet);
* the workspace deleted, its memberships removed by ``ON DELETE CASCADE`` in the same
  transaction;
* within the same second, that user's first login failing on
  ``users_primary_workspace_id_workspaces_id_fk`` (``data/demo-app.log``); the failed insert
  rolled back, so the database keeps no trace of it, exactly as in production.

Every row is written through the real schema, and every audit row through the real audit
trigger (so ``row_data``, ``relid``, ``transaction_id`` and the cascade's rows are genuine).
The one thing the trigger cannot do is record a time in the past: **the generator back-dates**
the trigger's three timestamps of each transaction with an UPDATE right after the trigger
wrote them (see :func:`_backdate`). ``created_at``/``joined_at`` are set explicitly.

The same incident "as production is" (no audit trail): :func:`ensure_production_demo` gives
``incidentkit_demo_prod``, the demo's rows without the audit schema, table or triggers; its
evidence is what such a production has: the PostgreSQL server log (``data/demo-server.log``,
written by a real server, see ``tools/make_demo_server_log.py``), the application's request log
(``data/demo-access.log``, read through :data:`DEMO_PRODUCTION_MAP`), and point-in-time
snapshots of the demo (:mod:`incidentkit.db.demo_asof`, whose as-of command is
``demo_as_of_command()``). Both kinds of copy are marked with the demo database they were made
from and dropped when the demo is rebuilt (:func:`ensure_demo`).
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import string
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import config

INCIDENT_USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"
INCIDENT_WORKSPACE = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"
#: The workspace's deletion (admin action) and, 46 ms later, the failed first login.
DELETED_AT = datetime(2025, 10, 8, 9, 41, 27, 118000, tzinfo=timezone.utc)
FAILED_AT = datetime(2025, 10, 8, 9, 41, 27, 164000, tzinfo=timezone.utc)
SEED = 20251008
DEMO_MARK = config.DEMO_MARK

N_USERS = 179
N_EXTRA_INVITES = 4
START = datetime(2025, 8, 25, 8, 0, tzinfo=timezone.utc)
LAST_SIGNUP = datetime(2025, 10, 7, 18, 0, tzinfo=timezone.utc)

EXPECTED = {
    "total_users": 179,
    "total_workspaces": 179,
    "total_memberships": 183,
    "users_without_primary_workspace": 0,
    "users_with_invalid_primary_workspace": 0,
    "orphaned_memberships": 0,
}

_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hugo", "Ines", "Jun", "Kira", "Liam", "Maya",
          "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Viktor", "Wen", "Yara", "Zoe")


@dataclass(frozen=True)
class _Signup:
    user_id: str
    workspace_id: str
    name: str
    at: datetime


def _did(rng: random.Random) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "did:privy:cm" + "".join(rng.choice(alphabet) for _ in range(23))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _backdate(cur, at: datetime) -> None:
    """BACK-DATING: the audit trigger stamped this transaction's rows with the real clock;
    move them to ``at`` (the historical moment), keeping their order 1 ms apart."""
    cur.execute(
        """
        update audit.logged_actions l
        set action_tstamp_tx = %(at)s, action_tstamp_stm = %(at)s,
            action_tstamp_clk = %(at)s + (o.n - 1) * interval '1 millisecond'
        from (select event_id, row_number() over (order by event_id) as n
              from audit.logged_actions where transaction_id = txid_current()) o
        where l.event_id = o.event_id
        """,
        {"at": at},
    )


def _tx(conn, at: datetime, app: str):
    """One historical transaction: ``application_name`` as the app had it, back-dated on exit."""

    @contextlib.contextmanager
    def scope():
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("select set_config('application_name', %s, true)", (app,))
            yield cur
            _backdate(cur, at)

    return scope()


def generate(conn) -> dict[str, object]:
    """Write the demo incident into an empty reference-schema database (psycopg connection)."""
    rng = random.Random(SEED)
    span = (LAST_SIGNUP - START).total_seconds()
    offsets = sorted(rng.uniform(0, span) for _ in range(N_USERS))
    signups = []
    for i, off in enumerate(offsets):
        first = _FIRST[i % len(_FIRST)]
        signups.append(_Signup(_did(rng), _uuid(rng), f"{first}'s workspace", START + timedelta(seconds=round(off, 3))))

    owner = signups[41]  # the user who later creates, and deletes, the team workspace
    sandbox_owner = signups[12]
    sandbox_id = _uuid(rng)
    sandbox_created = datetime(2025, 9, 12, 14, 5, 10, tzinfo=timezone.utc)
    sandbox_deleted = datetime(2025, 9, 20, 9, 30, 2, tzinfo=timezone.utc)
    incident_created = datetime(2025, 10, 6, 10, 12, 44, tzinfo=timezone.utc)
    invited_at = datetime(2025, 10, 7, 16, 48, 3, tzinfo=timezone.utc)

    events: list[tuple[datetime, str, tuple]] = [(s.at, "signup", (s,)) for s in signups]
    events.append((sandbox_created, "team", (sandbox_id, "Sandbox", sandbox_owner.user_id)))
    events.append((sandbox_deleted, "delete", (sandbox_id,)))
    events.append((incident_created, "team", (INCIDENT_WORKSPACE, "Design review", owner.user_id)))
    events.append((invited_at, "invite", (INCIDENT_WORKSPACE, INCIDENT_USER)))
    events.append((DELETED_AT, "delete", (INCIDENT_WORKSPACE,)))
    # Four invites between existing users (the 183 - 179 memberships that are not primary).
    invited = set()
    while len(invited) < N_EXTRA_INVITES:
        a, b = rng.sample(signups, 2)
        if (a.user_id, b.workspace_id) in invited:
            continue
        invited.add((a.user_id, b.workspace_id))
        at = max(a.at, b.at) + timedelta(hours=rng.uniform(1, 72))
        events.append((min(at, LAST_SIGNUP + timedelta(hours=6)), "invite", (b.workspace_id, a.user_id)))
    events.sort(key=lambda e: e[0])

    for at, kind, args in events:
        if kind == "signup":
            (s,) = args
            with _tx(conn, at, "web") as cur:
                cur.execute("insert into workspaces (id, name, created_at) values (%s, %s, %s)",
                            (s.workspace_id, s.name, at))
                cur.execute("insert into users (privy_did, primary_workspace_id, created_at) values (%s, %s, %s)",
                            (s.user_id, s.workspace_id, at))
                cur.execute("insert into workspace_members (id, workspace_id, user_id, is_primary, joined_at)"
                            " values (%s, %s, %s, true, %s)", (_uuid(rng), s.workspace_id, s.user_id, at))
        elif kind == "team":
            ws, name, by = args
            with _tx(conn, at, "web") as cur:
                cur.execute("insert into workspaces (id, name, created_at) values (%s, %s, %s)", (ws, name, at))
                cur.execute("insert into workspace_members (id, workspace_id, user_id, is_primary, joined_at)"
                            " values (%s, %s, %s, false, %s)", (_uuid(rng), ws, by, at))
        elif kind == "invite":
            ws, user = args
            with _tx(conn, at, "web") as cur:
                cur.execute("insert into workspace_members (id, workspace_id, user_id, is_primary, joined_at)"
                            " values (%s, %s, %s, false, %s)", (_uuid(rng), ws, user, at))
        elif kind == "delete":
            (ws,) = args
            # An admin deletes the workspace; ON DELETE CASCADE removes its memberships in the
            # same transaction, and the audit trigger records those rows with the same txid.
            with _tx(conn, at, "web-admin") as cur:
                cur.execute("delete from workspaces where id = %s", (ws,))
    return {"users": len(signups), "owner": owner.user_id, "sandbox_workspace": sandbox_id}


def load_demo(server, dbname: str = config.DEMO_DATABASE) -> str:
    """(Re)create ``dbname`` on ``server`` with the reference schema and the demo incident."""
    from psycopg import sql

    server.create_database(dbname, replace=True)
    with server.admin(dbname) as conn:
        conn.execute((config.SQL_DIR / "reference_schema.sql").read_text())
        generate(conn)  # autocommit connection: each event is its own transaction
        conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(dbname), sql.Literal(DEMO_MARK)))
        conn.execute("analyze")
    return server.url(dbname)


def is_loaded(server, dbname: str = config.DEMO_DATABASE) -> bool:
    with server.admin() as conn:
        row = conn.execute(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = %s", (dbname,)
        ).fetchone()
    return bool(row) and row[0] == DEMO_MARK


@contextlib.contextmanager
def demo_lock(server):
    """The demo's lock (a file beside the data directory): loading the demo, copying it (the
    production demo, the point-in-time snapshots) are done by one process at a time."""
    lock_path = server.data_dir.parent / ".demo.lock"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_demo_locked(server, dbname: str = config.DEMO_DATABASE) -> bool:
    """Load the demo if it is not loaded (the caller holds :func:`demo_lock`); True when it was.

    A rebuilt demo makes its copies stale: the production demo and the point-in-time snapshots
    of the default demo database are dropped with it (they are rebuilt on demand).
    """
    if is_loaded(server, dbname):
        return False
    load_demo(server, dbname)
    if dbname == config.DEMO_DATABASE:
        from .snapshots import drop_demo_snapshots

        server.drop_database(config.DEMO_PRODUCTION_DATABASE)
        drop_demo_snapshots(server)
    return True


def ensure_demo(server=None, dbname: str = config.DEMO_DATABASE) -> str:
    """Start the embedded server and load the demo if it is not loaded; return its URL."""
    from .embedded import ensure_server

    server = server or ensure_server()
    with demo_lock(server):
        ensure_demo_locked(server, dbname)
    return server.url(dbname)


# -- the same incident "as production is" ---------------------------------------------------------
#: The admin who created, and deleted, the incident's workspace (``user=`` of its DELETE request).
INCIDENT_ADMIN = "did:privy:cmepupsjwkkftpvfdaww49bkb"

#: The schema map of the production demo (:meth:`SchemaMap.from_dict`): no audit table; the
#: deletions the application's request log records (``data/demo-access.log``).
DEMO_PRODUCTION_MAP: dict = {
    "deletions": {
        "source": "none",
        "log_events": [
            {"table": "workspaces",
             "pattern": r"DELETE /api/workspaces/(?P<id>[0-9a-f-]{36}) 2[0-9][0-9] in \d+ms user=(?P<user>\S+)"},
        ],
    },
}


def _production_mark(conn) -> str:
    from .snapshots import demo_identity

    return f"{demo_identity(conn, config.DEMO_DATABASE)}; production"


def ensure_production_demo(server=None) -> str:
    """The demo incident "as production is" (``incidentkit_demo_prod``): the demo's rows, no audit
    schema, table or trigger. Made once from the demo with ``CREATE DATABASE ... TEMPLATE`` and
    rebuilt when the demo is; returns its URL."""
    from .snapshots import database_comment, make_copy
    from .embedded import ensure_server

    server = server or ensure_server()
    with demo_lock(server):
        ensure_demo_locked(server)
        with server.admin() as conn:
            mark = _production_mark(conn)
            fresh = database_comment(conn, config.DEMO_PRODUCTION_DATABASE) == mark
        if not fresh:
            make_copy(server, config.DEMO_PRODUCTION_DATABASE, None, mark)
    return server.url(config.DEMO_PRODUCTION_DATABASE)
