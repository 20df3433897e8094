"""Write ``lib/incidentkit/data/demo-server.log``: the demo incident as the PostgreSQL server logged it.

    python3 tools/make_demo_server_log.py [OUT]      # default: lib/incidentkit/data/demo-server.log

Needs libfaketime (Debian: ``apt-get install -y faketime``). Every line of the file is exactly
what a real server wrote; nothing is edited afterwards. How:

1. A throwaway embedded PostgreSQL (``EmbeddedServer`` in a temporary folder, stderr logging,
   ``log_line_prefix = '%m [%p] %q%u@%d/%a '``, UTC) is started with libfaketime preloaded into
   the server (``LD_PRELOAD``, ``FAKETIME_TIMESTAMP_FILE``, ``FAKETIME_NO_CACHE=1``,
   ``DONT_FAKE_MONOTONIC=1``). Before each step the script writes the planned moment
   (``@2025-10-08 09:41:27.118``) into the timestamp file; the server's clock starts there and
   runs on, so the log's timestamps are the incident's.
2. The demo incident is loaded (``db.demo.load_demo``) and ``incidentkit_demo_prod`` is made as
   the demo was 1 ms before the deletion, without its audit table (``db.demo_asof.make_copy``):
   the incident's workspace and its memberships are there, with the demo's real ids. Then a role
   ``app`` (the application's login) and ``ALTER DATABASE ... SET log_statement = 'mod'``.
3. The incident window, each step at its planned moment, each as the application sends it
   (psycopg, bound parameters, so the extended protocol: ``execute <unnamed>: ...`` followed by
   ``DETAIL:  parameters: ...``): two ordinary writes of other rows (a user re-saving their
   primary workspace, a workspace re-saving its name), the admin's deletion of the incident's
   workspace at ``DELETED_AT`` (application ``web-admin``), the incident user's first login
   inserting its ``users`` row at ``FAILED_AT`` and failing on the foreign key (``ERROR``,
   ``DETAIL``, ``CONTEXT`` with the parameters, ``STATEMENT``), one more ordinary write, and the
   server's shutdown at 09:42:30.
4. The server's stderr log is copied to OUT unchanged, and checked: it must hold the deletion's
   statement at 09:41:27.118 and the foreign-key error at 09:41:27.164.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from incidentkit import config
from incidentkit.db import demo
from incidentkit.db.demo_asof import make_copy
from incidentkit.db.embedded import EmbeddedServer

LIBFAKETIME = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
               "/usr/local/lib/faketime/libfaketime.so.1", "/usr/lib64/faketime/libfaketime.so.1")
DATABASE = config.DEMO_PRODUCTION_DATABASE
APP_ROLE, APP_PASSWORD = "app", "app-demo-password"


def at(hms: str) -> datetime:
    """``"09:41:27.118"`` on the incident's day, UTC."""
    return datetime.fromisoformat(f"{config.INCIDENT_DATE}T{hms}+00:00")


START = at("09:40:28.000")
SHUTDOWN = at("09:42:30.000")


def find_libfaketime() -> str:
    for path in LIBFAKETIME:
        if Path(path).exists():
            return path
    sys.exit("error: libfaketime not found (Debian: apt-get install -y faketime)")


class Clock:
    """The server's clock: a libfaketime timestamp file, re-read by the server on every call."""

    def __init__(self, path: Path):
        self.path = path

    def set(self, moment: datetime) -> None:
        # "@" + a moment: the clock starts there and runs on. libfaketime restarts it whenever
        # the file's text changes, so every moment set is a different text.
        moment = moment.astimezone(timezone.utc)
        self.path.write_text(f"@{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond:06d}\n")


def other_rows(conn) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two rows of the seeded data for the ordinary writes: (user, its primary workspace), and
    (a workspace, its name)."""
    user = conn.execute("select privy_did, primary_workspace_id::text from users order by created_at desc"
                        " limit 1 offset 3").fetchone()
    ws = conn.execute("select id::text, name from workspaces order by created_at desc limit 1 offset 7").fetchone()
    return (user[0], user[1]), (ws[0], ws[1])


def incident(server: EmbeddedServer, clock: Clock) -> None:
    """The incident window, as the application sent it: each statement on its own (autocommit,
    as the ORM's pool sends a lone statement), the clock set right before it."""
    url = server.url(DATABASE, user=APP_ROLE, password=APP_PASSWORD)
    web = psycopg.connect(url + "?application_name=web", autocommit=True)
    admin = psycopg.connect(url + "?application_name=web-admin", autocommit=True)
    login = psycopg.connect(url + "?application_name=web", autocommit=True)
    try:
        (user, user_ws), (ws, ws_name) = other_rows(web)

        clock.set(at("09:40:41.507"))  # a user re-saves their primary workspace (a no-op write)
        web.execute('update "users" set "primary_workspace_id" = %s where "users"."privy_did" = %s',
                    (user_ws, user))

        clock.set(at("09:41:02.233"))  # a workspace's settings saved with its name unchanged
        web.execute('update "workspaces" set "name" = %s where "workspaces"."id" = %s', (ws_name, ws))

        clock.set(demo.DELETED_AT)  # the admin deletes the workspace; memberships go by cascade
        admin.execute('delete from "workspaces" where "workspaces"."id" = %s', (demo.INCIDENT_WORKSPACE,))

        clock.set(demo.FAILED_AT)  # the invited user's first login: its users row, pointing at it
        try:
            login.execute('insert into "users" ("privy_did", "primary_workspace_id", "created_at")'
                          ' values (%s, %s, default)', (demo.INCIDENT_USER, demo.INCIDENT_WORKSPACE))
        except psycopg.errors.ForeignKeyViolation:
            pass
        else:
            raise SystemExit("error: the incident user's insert did not fail")

        clock.set(at("09:42:04.871"))  # the same user re-saves again
        web.execute('update "users" set "primary_workspace_id" = %s where "users"."privy_did" = %s',
                    (user_ws, user))
    finally:
        for conn in (web, admin, login):
            conn.close()


def run(out: Path) -> str | None:
    """One attempt: None when OUT was written, else what was wrong."""
    lib = find_libfaketime()
    tmp = Path(tempfile.mkdtemp(prefix="ik-demo-srvlog-"))
    clock = Clock(tmp / "faketime")
    clock.set(START)
    os.chmod(tmp, 0o755)
    os.chmod(clock.path, 0o644)
    fake_env = {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(clock.path), "FAKETIME_NO_CACHE": "1",
                "DONT_FAKE_MONOTONIC": "1"}
    saved = {k: os.environ.get(k) for k in fake_env}
    server = EmbeddedServer(tmp / "pg", fast_unsafe=True)
    os.environ.update(fake_env)  # inherited by pg_ctl, hence by the postmaster and every backend
    try:
        server.start(persistent=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        demo.load_demo(server, config.DEMO_DATABASE)
        make_copy(server, DATABASE, demo.DELETED_AT - timedelta(milliseconds=1), "incidentkit demo server log")
        with server.admin() as c:
            c.execute(f"create role {APP_ROLE} login password '{APP_PASSWORD}'")
        with server.admin(DATABASE) as c:
            c.execute(f"grant select, insert, update, delete on users, workspaces, workspace_members to {APP_ROLE}")
        with server.admin() as c:
            c.execute(f"alter database {DATABASE} set log_statement = 'mod'")
        incident(server, clock)
        clock.set(SHUTDOWN)
    finally:
        server.stop()
    log = (tmp / "pg" / "log" / "postgresql").read_text()
    shutil.rmtree(tmp, ignore_errors=True)
    want = ("2025-10-08 09:41:27.118 UTC", 'execute <unnamed>: delete from "workspaces" where "workspaces"."id" = $1',
            f"parameters: $1 = '{demo.INCIDENT_WORKSPACE}'", "2025-10-08 09:41:27.164 UTC",
            'ERROR:  insert or update on table "users" violates foreign key constraint '
            '"users_primary_workspace_id_workspaces_id_fk"')
    missing = [w for w in want if w not in log]
    if missing:  # the machine was too busy: a statement ran more than 1 ms after its moment
        return f"the server log lacks {missing!r}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(log)
    print(f"{out}: {len(log.splitlines())} lines")
    return None


def main(out: Path, attempts: int = 3) -> int:
    for _ in range(attempts):
        problem = run(out)
        if problem is None:
            return 0
        print(f"retrying: {problem}", file=sys.stderr)
    print(f"error: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else config.demo_server_log_path()))
