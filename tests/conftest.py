"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from incidentkit.db import embedded
from incidentkit.text import iso_utc

REFERENCE_SQL = Path(__file__).resolve().parents[1] / "lib" / "incidentkit" / "sql" / "reference_schema.sql"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """The session's embedded server (in the session's temporary cache directory, fsync off).

    The notebooks' kernels find the same server through ``INCIDENTKIT_CACHE_DIR`` (set in the
    root conftest.py), which also stops it at the end of the session. Started ``persistent``
    (as ``incidentkit server start`` does): a CLI verb run in this process (``cli.main``)
    releases its lease when done, and must not stop the server the session's tests use."""
    return embedded.default_server(fast_unsafe=True).start(persistent=True)


@pytest.fixture(scope="session")
def reference_template(pg_server):
    """A template database holding the empty reference schema."""
    name = "ik_tpl_reference"
    pg_server.create_database(name, replace=True)
    with pg_server.admin(name) as conn:
        conn.execute(REFERENCE_SQL.read_text())
    return name


@pytest.fixture
def fresh_db(pg_server, reference_template):
    """A new database with the reference schema (no rows); its libpq URL. Dropped afterwards."""
    name = f"ik_test_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name, template=reference_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def demo_template(pg_server):
    """A template database holding the demo incident, loaded once per session."""
    from incidentkit.db.demo import load_demo

    load_demo(pg_server, "ik_tpl_demo")
    return "ik_tpl_demo"


@pytest.fixture
def demo_db(pg_server, demo_template):
    """A fresh copy of the demo incident; its libpq URL."""
    name = f"ik_demo_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name, template=demo_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def empty_db(pg_server):
    """A new database with no tables at all; its libpq URL."""
    name = f"ik_empty_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def broken_db(fresh_db):
    """Rows a restore with --disable-triggers could leave: 2 invalid users, 3 orphaned memberships."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("insert into workspaces (id, name) values ('11111111-1111-4111-8111-111111111111', 'ok')")
        conn.execute("insert into users (privy_did, primary_workspace_id) values "
                     "('did:privy:good', '11111111-1111-4111-8111-111111111111')")
        conn.execute("set session_replication_role = replica")  # FK triggers off, as pg_restore --disable-triggers
        conn.execute("insert into users (privy_did, primary_workspace_id) values "
                     "('did:privy:bad1', '22222222-2222-4222-8222-222222222222'),"
                     "('did:privy:bad2', '33333333-3333-4333-8333-333333333333')")
        conn.execute("insert into workspace_members (id, workspace_id, user_id) values "
                     "('aaaaaaaa-0000-4000-8000-000000000001', '22222222-2222-4222-8222-222222222222', 'did:privy:bad1'),"
                     "('aaaaaaaa-0000-4000-8000-000000000002', '44444444-4444-4444-8444-444444444444', 'did:privy:x'),"
                     "('aaaaaaaa-0000-4000-8000-000000000003', '44444444-4444-4444-8444-444444444444', 'did:privy:y')")
    return fresh_db


class PgBouncer:
    """A real PgBouncer in transaction mode in front of the session's embedded server."""

    def __init__(self, workdir, server, users: dict[str, str]):
        import shutil
        import socket
        import subprocess
        import time

        from incidentkit.db.embedded import SERVER_USER, _ensure_system_user

        exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(exe):
            pytest.fail("pgbouncer is not installed (.ci/run installs Debian's pgbouncer package)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "userlist.txt").write_text("".join(f'"{u}" "{p}"\n' for u, p in users.items()))
        (workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 100\ndefault_pool_size = 10\n"
            f"logfile = {workdir / 'pgbouncer.log'}\n"
            f"pidfile = {workdir / 'pgbouncer.pid'}\n"
            "admin_users = postgres\n"
        )
        cmd = [exe, str(workdir / "pgbouncer.ini")]
        user = _ensure_system_user()
        if user:
            os.chmod(workdir, 0o755)
            for f in workdir.iterdir():
                os.chown(f, *_ids(SERVER_USER))
            os.chown(workdir, *_ids(SERVER_USER))
            workdir_parent = workdir
            for parent in workdir_parent.parents:
                try:
                    parent.chmod(parent.stat().st_mode | 0o001)
                except OSError:
                    pass
            cmd = [exe, "-u", user, str(workdir / "pgbouncer.ini")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (workdir / "pgbouncer.log").read_text() if (workdir / "pgbouncer.log").exists() else ""
                pytest.fail(f"pgbouncer exited: {self.proc.stderr.read().decode()} {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        self.users = users
        self.workdir = workdir

    def url(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}:{self.users[user]}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()


def _ids(user: str) -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


READER_PASSWORD = "pw-CANARY-5e1f9d-secret"


@pytest.fixture(scope="session")
def reader_role(pg_server):
    """A login role with a recognisable password and SELECT only: what production should give the kit."""
    with pg_server.admin() as conn:
        conn.execute("drop role if exists ik_reader")
        conn.execute(f"create role ik_reader login password '{READER_PASSWORD}'")
    return "ik_reader", READER_PASSWORD


@pytest.fixture(scope="session")
def grant_select():
    """:func:`grant_reader` as a fixture: tests take it as an argument instead of importing conftest
    (the password is ``reader_role[1]``)."""
    return grant_reader


@pytest.fixture(scope="session")
def pgbouncer(tmp_path_factory, pg_server, reader_role):
    bouncer = PgBouncer(tmp_path_factory.mktemp("pgbouncer"), pg_server,
                        {"postgres": "bouncer-admin-pw", reader_role[0]: reader_role[1]})
    yield bouncer
    bouncer.stop()


def grant_reader(url: str, role: str = "ik_reader") -> None:
    """GRANT SELECT on the kit's tables, as the README's production recipe does."""
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in ("public", "audit"):
            conn.execute(f"grant usage on schema {schema} to {role}")
            conn.execute(f"grant select on all tables in schema {schema} to {role}")


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory, pg_server):
    """``incidentkit demo --out DIR`` run once, as a user runs it; (run folder, reports dir, process)."""
    import datetime as dt
    import shutil
    import subprocess

    out = tmp_path_factory.mktemp("demo-reports")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.run([shutil.which("incidentkit"), "demo", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    folder = out / dt.datetime.now(dt.timezone.utc).date().isoformat()
    return folder, out, proc


class Rows:
    """Rows written as the application writes them, through the reference schema (its real audit
    trigger records them): the ``rows`` fixture. Shared by the timeline and verdict tests."""

    _request = itertools.count()

    @staticmethod
    def uid() -> str:
        return f"did:privy:t{uuid.uuid4().hex[:22]}"

    @staticmethod
    def admin(url: str):
        return psycopg.connect(url, autocommit=True)

    @staticmethod
    def new_workspace(conn, name: str = "team") -> str:
        return str(conn.execute("insert into workspaces (name) values (%s) returning id", (name,)).fetchone()[0])

    @staticmethod
    def add_member(conn, ws: str, user: str, primary: bool = False) -> str:
        return str(conn.execute("insert into workspace_members (workspace_id, user_id, is_primary) values (%s, %s, %s)"
                                " returning id", (ws, user, primary)).fetchone()[0])

    @classmethod
    def signup(cls, conn, user: str) -> str:
        """A user who signed up normally: own workspace, user row, primary membership (one transaction)."""
        with conn.transaction():
            ws = cls.new_workspace(conn, f"{user}'s workspace")
            conn.execute("insert into users (privy_did, primary_workspace_id) values (%s, %s)", (user, ws))
            cls.add_member(conn, ws, user, True)
        return ws

    @staticmethod
    def db_now(conn) -> datetime:
        return conn.execute("select clock_timestamp()").fetchone()[0].astimezone(timezone.utc)

    @classmethod
    def app_log(cls, path: Path, at: datetime, user: str | None, ws: str) -> Path:
        """The application's log of one failed first login (the format of the incident's logs)."""
        who = f" user={user}" if user else ""
        n = cls._request
        path.write_text(
            f"{iso_utc(at)} info  [web] POST /api/trpc/workspace.getOrCreateWorkspaceV2 start{who} requestId=req_{next(n)}\n"
            f"{iso_utc(at)} error [web] tRPC failed on workspace.getOrCreateWorkspaceV2{who} requestId=req_{next(n)}\n"
            'error: insert or update on table "users" violates foreign key constraint '
            '"users_primary_workspace_id_workspaces_id_fk"\n'
            f'Detail: Key (primary_workspace_id)=({ws}) is not present in table "workspaces".\n'
            "    at /var/task/node_modules/pg-pool/index.js:45:11\n"
        )
        return path


@pytest.fixture
def rows() -> type[Rows]:
    """Helpers that write users, workspaces and memberships as the app does, and its failure log."""
    return Rows


# -- log scans read two ways (issue 13) -----------------------------------------------------------
class ScanPair:
    """A log scan skimmed (as the kit reads) and in full (``SKIM = False``, every line parsed), and
    the comparison of two scans: failures, skipped lines and each file's read record."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def both_ways(self, paths):
        from incidentkit.evidence import logs

        skimmed = logs.scan_logs(paths)
        with self.monkeypatch.context() as m:
            m.setattr(logs, "SKIM", False)
            full = logs.scan_logs(paths)
        return skimmed, full

    @staticmethod
    def same(skimmed, full) -> None:
        assert [f.to_dict() for f in skimmed.failures] == [f.to_dict() for f in full.failures]
        assert skimmed.skipped_lines == full.skipped_lines
        assert [r.to_dict() for r in skimmed.file_reads] == [r.to_dict() for r in full.file_reads]


@pytest.fixture
def scans(monkeypatch) -> ScanPair:
    return ScanPair(monkeypatch)
