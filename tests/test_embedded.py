"""The embedded server: initialised once, reused, started on demand, stopped cleanly."""

from __future__ import annotations

import psycopg

from incidentkit.db import embedded


def test_server_lifecycle_and_reuse(tmp_path):
    data = tmp_path / "cluster"
    first = embedded.EmbeddedServer(data, fast_unsafe=True).start()
    try:
        assert first.started_here and first.is_running()
        port = first.port
        # A second handle (another process would do the same) finds the running server.
        second = embedded.EmbeddedServer(data).start()
        assert second.port == port and not second.started_here
        with psycopg.connect(second.url()) as conn:
            assert conn.execute("select current_setting('server_version_num')::int >= 130000").fetchone()[0]
            assert conn.execute("show listen_addresses").fetchone()[0] == "127.0.0.1"
        assert first.stop() is True
        assert not first.is_running()
        assert first.stop() is False
        # Started again on demand, the data directory is reused (no new initdb) and the port kept.
        (data / "reuse-marker").write_text("x")
        again = embedded.EmbeddedServer(data).start()
        assert again.started_here and again.port == port and (data / "reuse-marker").exists()
    finally:
        embedded.EmbeddedServer(data).stop()


def test_server_writes_the_log_formats_the_kit_reads(pg_server):
    with psycopg.connect(pg_server.url()) as conn:
        assert conn.execute("show log_parameter_max_length_on_error").fetchone()[0] == "-1"
        dest = conn.execute("show log_destination").fetchone()[0]
    assert "csvlog" in dest and "stderr" in dest
    if pg_server.major >= 15:
        assert "jsonlog" in dest


def test_other_roles_need_their_password(pg_server):
    with pg_server.admin() as conn:
        conn.execute("drop role if exists ik_pw_test")
        conn.execute("create role ik_pw_test login password 'right-one'")
    try:
        with psycopg.connect(pg_server.url(user="ik_pw_test", password="right-one")) as conn:
            assert conn.execute("select current_user").fetchone()[0] == "ik_pw_test"
        try:
            psycopg.connect(pg_server.url(user="ik_pw_test", password="wrong"))
        except psycopg.OperationalError as e:
            assert "password authentication failed" in str(e)
        else:
            raise AssertionError("a wrong password was accepted")
    finally:
        with pg_server.admin() as conn:
            conn.execute("drop role if exists ik_pw_test")


def test_a_command_stops_the_server_it_started_and_leaves_a_running_one(tmp_path):
    import os
    import shutil
    import subprocess

    env = {**os.environ, "INCIDENTKIT_CACHE_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    exe = shutil.which("incidentkit")

    def run(*args):
        return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=180)

    server = embedded.EmbeddedServer(tmp_path / f"pg{embedded.server_version(embedded.find_bin_dir())}")
    try:
        assert run("diagnose", "--demo", "--json").returncode == 0
        assert not server.is_running(), "the server started on demand was left running"
        assert run("server", "start").returncode == 0 and server.is_running()
        assert run("check", "--demo").returncode == 0
        assert server.is_running(), "a server the command did not start was stopped"
        assert run("server", "status").returncode == 0
        assert run("server", "stop").stdout.strip() == "stopped" and not server.is_running()
        assert run("server", "status").returncode == 1
    finally:
        server.stop()
