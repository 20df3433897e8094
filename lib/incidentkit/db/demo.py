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

A second, unrelated incident shares the database (:func:`generate_second`, written after the
seed's so the seed's rows, audit rows and transaction ids are what they always were; its history
ends on 2025-10-07, before the seed's incident): a shop's
``orders`` and ``order_items`` (foreign key ``order_items_order_id_fkey``, audited by the same
trigger), where a cart sweeper's deletion of an empty order races the customer's first "add to
cart". Its application log, ``data/demo-second-app.log``, is generated from the server's own
error texts (:func:`write_second_log`). ``incidentkit report --demo --constraint
order_items_order_id_fkey`` renders its report: nothing in the kit is wired to the seed's tables.
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
#: The mark on a loaded demo database: the seed's incident and the second one (a demo loaded
#: before the second incident existed carries another mark, and is rebuilt on demand).
DEMO_MARK = f"{config.DEMO_MARK}; second incident v1"

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



# -- the second incident: an unrelated foreign key ------------------------------------------------
#: A small shop beside the seed's tables, audited by the same trigger. Nothing in it refers to
#: users or workspaces: it shows that the kit's generic investigation is wired to nothing.
SECOND_SCHEMA = """
create table orders (
    id             bigint primary key,
    customer_email text not null,
    status         text not null default 'open',
    created_at     timestamptz not null
);
create table order_items (
    id         bigint primary key,
    order_id   bigint not null,
    sku        text not null,
    quantity   integer not null check (quantity > 0),
    added_at   timestamptz not null,
    constraint order_items_order_id_fkey foreign key (order_id) references orders (id) on delete cascade
);
create index order_items_order_id_idx on order_items (order_id);
create trigger orders_audit
    after insert or update or delete on orders
    for each row execute function audit.if_modified_func();
create trigger order_items_audit
    after insert or update or delete on order_items
    for each row execute function audit.if_modified_func();
"""

SECOND_CONSTRAINT = "order_items_order_id_fkey"
SECOND_SEED = 20251009
N_ORDERS = 45
ORDERS_START = datetime(2025, 10, 3, 8, 0, tzinfo=timezone.utc)
#: The incident: the cart sweeper deletes open order 1042 (no item after an hour), and 31 ms later
#: the customer's "add to cart" inserts its first item, which fails on the foreign key.
SECOND_ORDER = 1042
SECOND_DELETED_AT = datetime(2025, 10, 7, 14, 2, 11, 500000, tzinfo=timezone.utc)
SECOND_FAILED_AT = datetime(2025, 10, 7, 14, 2, 11, 531000, tzinfo=timezone.utc)
#: A stale cart: order 1017 was swept the day before; a browser tab still held it.
STALE_ORDER = 1017
STALE_DELETED_AT = datetime(2025, 10, 6, 16, 30, 0, 250000, tzinfo=timezone.utc)
STALE_FAILED_AT = datetime(2025, 10, 7, 15, 12, 40, 877000, tzinfo=timezone.utc)
#: An order id no order ever had (a client sent a made-up id).
NEVER_ORDER = 9999
NEVER_FAILED_AT = datetime(2025, 10, 7, 16, 45, 3, 90000, tzinfo=timezone.utc)
#: What the second incident leaves in the database (orders, items), checked by the tests.
SECOND_EXPECTED = {"orders": 43, "order_items": 76}


def _second_events(rng: random.Random) -> list[tuple[datetime, str, tuple]]:
    """The shop's history, in time order: orders opened, items added, empty carts swept."""
    events: list[tuple[datetime, str, tuple]] = []
    item_id = 1
    for n in range(N_ORDERS):
        order = 1001 + n
        opened = ORDERS_START + timedelta(minutes=round(n * 105 + rng.uniform(0, 60), 3))
        if order == SECOND_ORDER:
            opened = SECOND_DELETED_AT - timedelta(hours=1, seconds=3)
        events.append((opened, "open", (order, f"customer{n + 1:02d}@example.com", opened)))
        if order in (SECOND_ORDER, STALE_ORDER):
            continue  # no item: the sweeper removes it
        for k in range(rng.randint(1, 3)):
            at = opened + timedelta(seconds=round(rng.uniform(20, 1800), 3) + k)
            events.append((at, "item", (item_id, order, f"SKU-{rng.randint(100, 999)}", rng.randint(1, 4), at)))
            item_id += 1
    events.append((STALE_DELETED_AT, "sweep", (STALE_ORDER,)))
    events.append((SECOND_DELETED_AT, "sweep", (SECOND_ORDER,)))
    events.sort(key=lambda e: e[0])
    return events


def generate_second(conn) -> dict[str, object]:
    """Write the second incident (the shop's orders) into a demo database (autocommit psycopg
    connection): every row through the real schema and audit trigger, back-dated as the seed is."""
    rng = random.Random(SECOND_SEED)
    for at, kind, args in _second_events(rng):
        if kind == "open":
            with _tx(conn, at, "shop") as cur:
                cur.execute("insert into orders (id, customer_email, created_at) values (%s, %s, %s)", args)
        elif kind == "item":
            with _tx(conn, at, "shop") as cur:
                cur.execute("insert into order_items (id, order_id, sku, quantity, added_at)"
                            " values (%s, %s, %s, %s, %s)", args)
        else:  # the cart sweeper deletes an open order that has no item
            with _tx(conn, at, "cart-sweeper") as cur:
                cur.execute("delete from orders where id = %s and status = 'open'"
                            " and not exists (select 1 from order_items i where i.order_id = orders.id)", args)
    return {"orders": N_ORDERS - 2}


#: The second incident's failures: when, which order, the request id (its application log line).
SECOND_FAILURES = (
    (SECOND_FAILED_AT, SECOND_ORDER, "req_51c0e2a7", "customer42@example.com"),
    (STALE_FAILED_AT, STALE_ORDER, "req_51c1f0b3", "customer17@example.com"),
    (NEVER_FAILED_AT, NEVER_ORDER, "req_51c3a96d", "unknown"),
)


def provoke_second_errors(conn) -> list[tuple[str, str]]:
    """The real error texts (message, Detail) of the second incident's failed inserts: each insert
    is sent to the server in a transaction that is rolled back, so the database is left unchanged."""
    import psycopg

    out = []
    for at, order, _req, _who in SECOND_FAILURES:
        try:
            with conn.transaction(force_rollback=True), conn.cursor() as cur:
                cur.execute("insert into order_items (id, order_id, sku, quantity, added_at)"
                            " values (%s, %s, %s, %s, %s)", (90000 + order, order, "SKU-404", 1, at))
        except psycopg.errors.ForeignKeyViolation as e:
            out.append((e.diag.message_primary or "", e.diag.message_detail or ""))
        else:
            raise RuntimeError(f"the insert for order {order} did not fail: is this the demo database?")
    return out


def second_log_text(conn) -> str:
    """``data/demo-second-app.log``: the shop's application log around its three failures, each
    error text exactly as the server gives it (:func:`provoke_second_errors`)."""
    def ts(at: datetime) -> str:
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"

    blocks: list[tuple[datetime, list[str]]] = [
        (SECOND_DELETED_AT - timedelta(milliseconds=40),
         ["info  [cart-sweeper] sweeping open orders without items, idle for 1h"]),
        (SECOND_DELETED_AT + timedelta(milliseconds=4), [f"info  [cart-sweeper] deleted order {SECOND_ORDER}"]),
    ]
    for (at, order, req, who), (message, detail) in zip(SECOND_FAILURES, provoke_second_errors(conn)):
        blocks += [
            (at - timedelta(milliseconds=97), [f"info  [shop] POST /api/cart/{order}/items start customer={who} "
                                               f"requestId={req}"]),
            (at, [f"error [shop] cart.addItem failed order={order} customer={who} requestId={req}",
                  f"error: {message}", f"Detail: {detail}",
                  "    at Connection.parseE (/srv/shop/node_modules/pg/lib/connection.js:614:13)",
                  "    at async addItem (/srv/shop/dist/cart/items.js:88:5)"]),
            (at + timedelta(milliseconds=2), [f"info  [shop] POST /api/cart/{order}/items 500 in 99ms "
                                              f"customer={who} requestId={req}"]),
        ]
    lines = []
    for at, block in sorted(blocks, key=lambda b: b[0]):
        lines += [f"{ts(at)} {block[0]}"] + block[1:]
    return "\n".join(lines) + "\n"


def second_log_path():
    """The second incident's application log (package data)."""
    return config.DATA_DIR / "demo-second-app.log"


def write_second_log(path=None) -> str:
    """Regenerate ``data/demo-second-app.log`` from the demo database (loaded if needed)."""
    import psycopg

    target = path or second_log_path()
    with psycopg.connect(ensure_demo(), autocommit=True) as conn:
        text = second_log_text(conn)
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(text)
    return str(target)


def load_demo(server, dbname: str = config.DEMO_DATABASE) -> str:
    """(Re)create ``dbname`` on ``server`` with the reference schema and the demo incident."""
    from psycopg import sql

    server.create_database(dbname, replace=True)
    with server.admin(dbname) as conn:
        conn.execute((config.SQL_DIR / "reference_schema.sql").read_text())
        generate(conn)  # autocommit connection: each event is its own transaction
        # The second incident after the seed's, so the seed's transaction ids stay what they were.
        conn.execute(SECOND_SCHEMA)
        generate_second(conn)
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


def app_logs():
    """The demo's application logs: the seed incident's and the second incident's."""
    return [config.demo_log_path(), second_log_path()]
