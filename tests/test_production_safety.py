"""Safe against production: read-only, pooler-compatible, secret-free, clear errors.

Runs against the session's embedded PostgreSQL and a real PgBouncer in transaction mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import nbformat
import psycopg
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import incidentkit as ik
from incidentkit.report import render as reports


EXE = shutil.which("incidentkit")


def cli(*args, env=None, timeout=300, cwd=None):
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([EXE or sys.executable, *([] if EXE else ["-m", "incidentkit"]), *args],
                          capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def one_error_line(p) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def fingerprint(url: str) -> str:
    """Every row of every table, hashed: to prove a database was not touched."""
    h = hashlib.sha256()
    with psycopg.connect(url) as conn:
        tables = conn.execute("select format('%I.%I', schemaname, tablename) from pg_tables "
                              "where schemaname not in ('pg_catalog', 'information_schema') order by 1").fetchall()
        for (t,) in tables:
            h.update(t.encode())
            for row in conn.execute(f"select * from {t} order by 1"):
                h.update(repr(row).encode())
    return h.hexdigest()


def dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture(params=["direct", "pgbouncer"])
def target(request, demo_db, pgbouncer):
    """The demo database reached directly or through PgBouncer (transaction mode)."""
    if request.param == "direct":
        return demo_db
    return pgbouncer.url(dbname(demo_db))


# -- 1. connection -----------------------------------------------------------------------------
@pytest.mark.parametrize("statement", [
    "insert into workspaces (name) values ('intruder')",
    "update users set created_at = now()",
    "delete from workspace_members",
    "create table intruder (x int)",
    "drop table audit.logged_actions",
])
def test_writes_are_refused(target, demo_db, statement):
    before = fingerprint(demo_db)
    db = ik.Database(target)
    with pytest.raises(ik.QueryFailed) as e:
        with db.read() as r:
            r.all(statement)
    assert "read-only" in str(e.value)
    assert fingerprint(demo_db) == before


def test_transaction_settings_hold_through_the_pooler(target, pg_server):
    db = ik.Database(target, timeouts=ik.Timeouts(statement_ms=12_000, lock_ms=1_500, idle_in_transaction_ms=45_000))
    for _ in range(3):  # several transactions, possibly on different server connections
        with db.read() as r:
            assert r.scalar("show transaction_read_only") == "on"
            assert r.scalar("show transaction_isolation") == "repeatable read"
            assert r.scalar("show statement_timeout") == "12s"
            assert r.scalar("show lock_timeout") == "1500ms"
            assert r.scalar("show idle_in_transaction_session_timeout") == "45s"
            pid = r.scalar("select pg_backend_pid()")
            with pg_server.admin() as admin:
                app = admin.execute("select application_name from pg_stat_activity where pid = %s", (pid,)).fetchone()
            assert app[0] == "incidentkit"
            # No server-side prepared statement is left behind for the next client of this connection.
            assert r.scalar("select count(*) from pg_prepared_statements") == 0


def test_diagnosis_through_the_pooler_many_times(pgbouncer, demo_db):
    db = ik.Database(pgbouncer.url(dbname(demo_db)))
    results = [ik.diagnose(db).figures() for _ in range(5)]
    assert all(r == results[0] for r in results) and results[0]["total_users"] == 179


def test_url_parameters_pass_through(demo_db):
    assert ik.diagnose(ik.Database(demo_db + "?sslmode=disable")).total_users == 179
    with pytest.raises(ik.ConnectionFailed) as e:  # the embedded server has no SSL: sslmode reached libpq
        ik.diagnose(ik.Database(demo_db + "?sslmode=require"))
    assert "SSL" in str(e.value)


def test_url_comes_from_a_named_variable_only(demo_db):
    p = cli("diagnose", "--json", "--database-url-env", "MY_DB", env={"MY_DB": demo_db})
    assert p.returncode == 0 and '"total_users": 179' in p.stdout
    line = one_error_line(cli("diagnose", "--database-url-env", "NOT_SET_ANYWHERE"))
    assert "NOT_SET_ANYWHERE is not set" in line
    line = one_error_line(cli("diagnose", "--database-url-env", "bad name; rm -rf /"))
    assert "not a valid environment variable name" in line


# -- 2. through a real pooler: the full report ----------------------------------------------------
@pytest.mark.slow
def test_full_report_through_pgbouncer_as_a_select_only_role(pgbouncer, demo_db, tmp_path, reader_role, grant_select):
    grant_select(demo_db)
    url = pgbouncer.url(dbname(demo_db), "ik_reader")
    p = cli("report", "--out", str(tmp_path), "--date", "2025-10-08", "--no-race-lab", env={"DATABASE_URL": url})
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "2025-10-08" / "01-diagnosis.md").read_text()
    assert "| Total users | 179 |" in md
    assert f"127.0.0.1/{dbname(demo_db)}" in md
    assert_no_secret(tmp_path, p, secret=reader_role[1])


# -- 3. no secret in any artifact -----------------------------------------------------------------
def assert_no_secret(folder, *procs, secret: str) -> None:
    needle = secret.encode()
    checked = 0
    for path in folder.rglob("*"):
        if path.is_file():
            checked += 1
            assert needle not in path.read_bytes(), f"the password leaked into {path}"
            assert b"postgresql://" not in path.read_bytes() or path.suffix == ".png", path
    assert checked > 0
    for p in procs:
        assert secret not in p.stdout and secret not in p.stderr


@pytest.mark.slow
def test_failed_report_leaks_no_secret(pg_server, reader_role, tmp_path):
    """A database that lacks a mapped column: the report fails half-way, in the kernel, with a traceback."""
    READER_PASSWORD = reader_role[1]
    name = "ik_secret_fail"
    url = pg_server.create_database(name, replace=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table workspaces (id uuid primary key, created_at timestamptz)")
        conn.execute("create table users (privy_did text primary key, primary_workspace_id uuid, created_at timestamptz)")
        conn.execute("create table workspace_members (id uuid primary key, workspace_id uuid, user_id text, "
                     "joined_at timestamptz)")  # no is_primary column
        conn.execute("grant select on all tables in schema public to ik_reader")
    try:
        secret_url = pg_server.url(name, user="ik_reader", password=READER_PASSWORD)
        p = cli("report", "--out", str(tmp_path), "--date", "2025-10-08", "--no-race-lab",
                env={"DATABASE_URL": secret_url})
        line = one_error_line(p)
        assert "workspace_members.is_primary" in line
        assert not (tmp_path / "2025-10-08").exists()
        failed = list((tmp_path / "failed").iterdir())
        assert len(failed) == 1 and str(failed[0]) in line
        kept = list(failed[0].glob("*.ipynb"))
        assert kept and any("SchemaMismatch" in p.read_text() for p in kept)  # the error is marked
        assert_no_secret(tmp_path, p, secret=READER_PASSWORD)
    finally:
        pg_server.drop_database(name)


def test_connection_errors_never_show_the_password(pg_server, demo_db, reader_role):
    READER_PASSWORD = reader_role[1]
    wrong = pg_server.url(dbname(demo_db), user="ik_reader", password="wrong-" + READER_PASSWORD)
    line = one_error_line(cli("diagnose", env={"DATABASE_URL": wrong}))
    assert "password authentication failed" in line and READER_PASSWORD not in line
    missing = pg_server.url("no_such_db", user="ik_reader", password=READER_PASSWORD)
    line = one_error_line(cli("diagnose", env={"DATABASE_URL": missing}))
    assert 'database "no_such_db" does not exist' in line and READER_PASSWORD not in line
    unreachable = f"postgresql://ik_reader:{READER_PASSWORD}@127.0.0.1:1/x"
    line = one_error_line(cli("check", env={"DATABASE_URL": unreachable}))
    assert READER_PASSWORD not in line and "127.0.0.1/x" in line
    nohost = f"postgresql://ik_reader:{READER_PASSWORD}@no-such-host.invalid:5432/x"
    line = one_error_line(cli("diagnose", env={"DATABASE_URL": nohost}))
    assert READER_PASSWORD not in line


# -- 4. schema mapping ------------------------------------------------------------------------------
def test_schema_map_file_and_pyproject(demo_db, tmp_path):
    mapping = tmp_path / "map.toml"
    mapping.write_text('[users]\ntable = "public.users"\nid = "privy_did"\n\n[deletions]\nsource = "none"\n')
    p = cli("diagnose", "--json", "--schema-map", str(mapping), env={"DATABASE_URL": demo_db})
    assert p.returncode == 0 and '"total_users": 179' in p.stdout
    (tmp_path / "pyproject.toml").write_text('[tool.incidentkit.schema.users]\ntable = "public.nope"\n'
                                             'created_at = "born"\n')
    line = one_error_line(cli("diagnose", env={"DATABASE_URL": demo_db}, cwd=tmp_path))
    assert "table public.nope (users)" in line


def test_every_missing_table_and_column_in_one_message(demo_db, tmp_path):
    mapping = tmp_path / "map.toml"
    mapping.write_text('[users]\nprimary_workspace_id = "home"\ncreated_at = "born"\n'
                       '[memberships]\ntable = "public.seats"\n')
    line = one_error_line(cli("diagnose", "--schema-map", str(mapping), env={"DATABASE_URL": demo_db}))
    for part in ("column public.users.home", "column public.users.born", "table public.seats"):
        assert part in line


def test_bad_schema_map_files(tmp_path, demo_db):
    cases = {"notoml.toml": "[users\n", "unknown.toml": "[teams]\ntable = 'x'\n",
             "badkey.toml": "[users]\nemail = 'x'\n", "badtable.toml": "[users]\ntable = 'a.b.c'\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        one_error_line(cli("diagnose", "--schema-map", str(tmp_path / name), env={"DATABASE_URL": demo_db}))
    one_error_line(cli("diagnose", "--schema-map", str(tmp_path / "absent.toml"), env={"DATABASE_URL": demo_db}))


# -- 5. bad input: one clear line, exit 2 ----------------------------------------------------------------
INJECTIONS = ["x'; drop table users; --", 'users"; drop table workspaces; --', "1; delete from users",
              "$$; truncate workspaces; $$"]


@pytest.mark.slow
@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_attempts_leave_the_database_untouched(demo_db, tmp_path, payload):
    before = fingerprint(demo_db)
    env = {"DATABASE_URL": demo_db}
    mapping = tmp_path / "inj.toml"
    mapping.write_text(f"[users]\ntable = {json.dumps('public.' + payload)}\nid = {json.dumps(payload)}\n")
    for args in (["diagnose", "--schema-map", str(mapping)], ["diagnose", "--sample-limit", payload],
                 ["report", "--date", payload, "--out", str(tmp_path)], ["diagnose", "--database-url-env", payload],
                 ["check", "--max-orphaned-memberships", payload], ["timeline", "x", "--window", payload],
                 ["affected", "--logs", str(tmp_path / payload)]):
        p = cli(*args, env=env, timeout=120)
        one_error_line(p)
    # A user id is data: bound, never pasted into SQL. Either refused as malformed or simply unknown.
    p = cli("timeline", payload, "--json", env=env, timeout=120)
    assert p.returncode in (0, 2), p.stderr
    if p.returncode == 0:
        assert '"events": []' in p.stdout
    else:
        one_error_line(p)
    assert fingerprint(demo_db) == before


def test_empty_database_is_figures_of_zero(fresh_db):
    p = cli("diagnose", "--json", env={"DATABASE_URL": fresh_db})
    assert p.returncode == 0, p.stderr
    assert '"total_users": 0' in p.stdout and '"orphaned_memberships": 0' in p.stdout
    assert cli("check", env={"DATABASE_URL": fresh_db}).returncode == 0


def _hold_lock(url: str, table: str, ready: threading.Event, release: threading.Event) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(f"lock table {table} in access exclusive mode")
        ready.set()
        release.wait(30)
        conn.rollback()


@pytest.mark.parametrize("args, expected", [
    (["--lock-timeout", "0.3"], "lock timeout"),
    (["--lock-timeout", "20", "--statement-timeout", "0.5"], "statement timeout"),
])
def test_timeouts_hit_are_clear_errors(demo_db, args, expected):
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(demo_db, "workspace_members", ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        line = one_error_line(cli("diagnose", *args, env={"DATABASE_URL": demo_db}, timeout=60))
        assert expected in line  # the limit asked for is the one that fired, named
    finally:
        release.set()
        holder.join()


def test_connection_killed_mid_run(demo_db, pg_server):
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(demo_db, "workspace_members", ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        proc = subprocess.Popen([EXE, "diagnose", "--lock-timeout", "30"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "DATABASE_URL": demo_db})
        killed = 0
        deadline = time.monotonic() + 20
        with pg_server.admin() as admin:
            while not killed and time.monotonic() < deadline:
                killed = admin.execute("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                                       "where application_name = 'incidentkit' and wait_event_type = 'Lock'"
                                       ).fetchone()[0]
                time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
        assert killed == 1
        p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        assert "terminated" in one_error_line(p)
    finally:
        release.set()
        holder.join()


@pytest.mark.slow
def test_kernel_death_fails_the_report_cleanly(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell("import os\nos._exit(1)")],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src = tmp_path / "98-dies.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "out"
    with pytest.raises(ik.ReportFailed) as e:
        reports.render_report([reports.NotebookRun(src, "98-dies")], out, date="2025-10-08", progress=lambda _: None)
    assert "98-dies failed" in str(e.value) and e.value.failed_dir.is_dir()
    assert not (out / "2025-10-08").exists()


def test_unwritable_reports_directory(tmp_path, demo_db):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "reports").write_text("a file where the directory should be")
    line = one_error_line(cli("report", "--demo", "--out", str(locked / "reports" / "x")))
    assert "cannot create the reports directory" in line


def test_timeline_and_affected_through_the_pooler(pgbouncer, demo_db):
    from incidentkit.config import demo_log_path
    from incidentkit.evidence.timeline import user_timeline
    from incidentkit.evidence import affected

    db = ik.Database(pgbouncer.url(dbname(demo_db)))
    t = user_timeline(db, "did:privy:cmgiqkpg0001wl40cqhofcvo4", logs=[demo_log_path()])
    assert [f.verdict for f in t.failures] == ["concurrent_deletion"]
    assert affected(db, [demo_log_path()]).by_verdict()["concurrent_deletion"] == 1


def test_bad_log_files_from_the_command_line(demo_db, tmp_path):
    env = {"DATABASE_URL": demo_db}
    line = one_error_line(cli("affected", "--logs", str(tmp_path / "missing.log"), env=env))
    assert "missing.log" in line
    line = one_error_line(cli("affected", "--logs", str(tmp_path / "*.nothing"), env=env))
    assert "nothing" in line
    binary = tmp_path / "binary.log"
    binary.write_bytes(bytes(range(256)) * 40 + b"\n\xff\xfe not utf-8 \xc3\x28\n")
    p = cli("affected", "--logs", str(binary), "--json", env=env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["failures"] == [] and data["skipped_lines"] >= 1
    unreadable = tmp_path / "locked.log"
    unreadable.write_text("x\n")
    unreadable.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make it a directory with no logs instead
        unreadable.chmod(0o644)
        unreadable = tmp_path / "emptydir"
        unreadable.mkdir()
    one_error_line(cli("affected", "--logs", str(unreadable), env=env))


def test_diagnose_does_not_import_what_it_does_not_use(demo_db):
    """``incidentkit diagnose`` stays light: no pandas, matplotlib, nbconvert or papermill."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "incidentkit", "diagnose", "--json"],
                       capture_output=True, text=True, env={**os.environ, "DATABASE_URL": demo_db}, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in p.stderr.splitlines() if "|" in line}
    assert "psycopg" in imported
    assert not imported & {"pandas", "matplotlib", "nbconvert", "papermill", "nbformat", "IPython"}, imported
