"""Write the server-log samples in this folder with a real embedded PostgreSQL (run by hand).

    python3 tests/samples/logs/server/produce.py OUTDIR

Starts a throwaway cluster (``incidentkit.db.embedded.EmbeddedServer`` in a temporary folder:
stderr + csvlog + jsonlog, ``log_line_prefix = '%m [%p] %q%u@%d/%a '``), turns on
``log_statement = 'mod'`` for two databases (``ALTER DATABASE ... SET``), runs the statements
below by simple query (literals) and by the extended protocol (psycopg bound parameters), then
changes ``log_line_prefix`` to ``'%t [%p] %c %x %d '`` (``ALTER SYSTEM`` + reload) and runs a
few more. The server's three log files are copied to OUTDIR unchanged.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from incidentkit.db.embedded import EmbeddedServer

REFERENCE_SQL = Path(__file__).resolve().parents[4] / "lib" / "incidentkit" / "sql" / "reference_schema.sql"


def ws(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def scenario(url: str, other_url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("insert into workspaces (id, name) values (%s, %s)", (ws(1), "one"))  # extended, insert
        c.execute(f"insert into workspaces (id, name) values ('{ws(2)}', 'two'), ('{ws(3)}', 'three')")  # simple
        for n in range(4, 14):
            c.execute("insert into workspaces (id, name) values (%s, %s)", (ws(n), f"w{n}"))
        c.execute("insert into users (privy_did, primary_workspace_id) values (%s, %s)", ("did:privy:keep", ws(10)))
        c.execute("insert into workspace_members (workspace_id, user_id) values (%s, %s)", (ws(3), "did:privy:m"))
        c.execute(f"delete from workspaces where id = '{ws(1)}'")  # by hand, simple query
        c.execute('delete from "public"."workspaces" where "workspaces"."id" = %s', (ws(2),))  # ORM, extended
        c.execute("delete from workspace_members where workspace_id = %s and user_id = %s", (ws(3), "did:privy:m"))
        c.execute("DELETE FROM public.workspaces WHERE id IN (%s, %s)", (ws(4), ws(5)))
        c.execute(f"delete from workspaces where id in ('{ws(6)}', '{ws(7)}')")
        c.execute("delete from workspaces where id = any(%s::uuid[])", ([ws(8), ws(9)],))
        try:
            c.execute("delete from workspaces where id = %s", (ws(10),))  # the user still points at it: fails
        except psycopg.errors.ForeignKeyViolation:
            pass
        try:
            with c.transaction():
                c.execute("delete from workspaces where id = %s", (ws(11),))
                c.execute("select 1 / 0")  # the transaction fails after the delete
        except psycopg.errors.DivisionByZero:
            pass
        c.execute(f"delete from workspaces\n  where id = '{ws(12)}'")  # multi-line literal
        c.execute('delete from "app"."teams" where "teams"."id" = %s', (ws(20),))
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as c:
        c.execute("delete from workspaces where id = %s", (ws(13),))  # a named prepared statement
    with psycopg.connect(other_url, autocommit=True) as c:
        c.execute(f"delete from workspaces where id = '{ws(30)}'")  # another database: ignored


def main(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ik-srvlog-"))
    server = EmbeddedServer(tmp / "pg", fast_unsafe=True).start(persistent=True)
    try:
        for name in ("ik_app", "ik_other"):
            server.create_database(name)
            with server.admin(name) as c:
                c.execute(REFERENCE_SQL.read_text())
                c.execute("create schema app; create table app.teams (id uuid primary key, name text)")
                c.execute("insert into app.teams values (%s, 'team')", (ws(20),))
            with server.admin() as c:
                c.execute(f"alter database {name} set log_statement = 'mod'")
        scenario(server.url("ik_app"), server.url("ik_other"))
        with server.admin() as c:
            c.execute("alter system set log_line_prefix = '%t [%p] %c %x %d '")
            c.execute("select pg_reload_conf()")
        time.sleep(1)
        with psycopg.connect(server.url("ik_app"), autocommit=True) as c:
            c.execute("insert into workspaces (id, name) values (%s, 'late')", (ws(40),))
            c.execute(f"delete from workspaces where id = '{ws(40)}'")
            try:
                with c.transaction():
                    c.execute("delete from workspaces where id = %s", (ws(6),))
                    c.execute("select 1 / 0")
            except psycopg.errors.DivisionByZero:
                pass
        time.sleep(1)
    finally:
        server.stop()
    out.mkdir(parents=True, exist_ok=True)
    for f in (tmp / "pg" / "log").iterdir():
        shutil.copy(f, out / f.name)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
