"""The embedded server: initialised once, reused, started on demand, stopped cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from incidentkit.db import embedded

EXE = shutil.which("incidentkit")


@pytest.fixture
def cache_dir():
    """A private ``INCIDENTKIT_CACHE_DIR`` (outside pytest's own temporary tree, whose modes other
    pytest runs on the machine reset: the server's user must traverse it); its server stopped."""
    path = Path(tempfile.mkdtemp(prefix="ik-embedded-"))
    try:
        yield path
    finally:
        for data in path.glob("pg*"):
            if data.is_dir():
                embedded.EmbeddedServer(data).stop()
        shutil.rmtree(path, ignore_errors=True)


def _kit(cache: Path, *args: str, timeout: float = 300, **kwargs):
    env = {**os.environ, "INCIDENTKIT_CACHE_DIR": str(cache)}
    env.pop("DATABASE_URL", None)
    cmd = [EXE] if EXE else [sys.executable, "-m", "incidentkit"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)


def _server(cache: Path) -> embedded.EmbeddedServer:
    return embedded.EmbeddedServer(cache / f"pg{embedded.server_version(embedded.find_bin_dir())}")


@pytest.mark.slow
def test_server_lifecycle_and_reuse(cache_dir):
    data = cache_dir / "cluster"
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


@pytest.mark.slow
def test_a_command_stops_the_server_it_started_and_leaves_a_running_one(cache_dir):
    def run(*args):
        return _kit(cache_dir, *args, timeout=180)

    server = _server(cache_dir)
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


# -- issue 15, defect 4: one command never stops the server under another ---------------------------
@pytest.mark.slow
def test_race_lab_is_not_stopped_under_by_a_diagnosis_that_started_the_server(cache_dir):
    """``server stop; (diagnose --demo &); sleep 0.3; race``: the race ran into a refused
    connection when the diagnosis, which had started the server, stopped it on finishing."""
    server = _server(cache_dir)
    assert _kit(cache_dir, "server", "stop").returncode == 0
    env = {**os.environ, "INCIDENTKIT_CACHE_DIR": str(cache_dir)}
    env.pop("DATABASE_URL", None)
    diagnose = subprocess.Popen([EXE or sys.executable, *([] if EXE else ["-m", "incidentkit"]),
                                 "diagnose", "--demo"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        # Instead of sleep 0.3: until the diagnosis holds its lease (it is starting the server).
        leases = server.data_dir.parent / f".{server.data_dir.name}.leases"
        for _ in range(600):
            if list(leases.glob("*.lease")) or diagnose.poll() is not None:
                break
            time.sleep(0.05)
        race = _kit(cache_dir, "race")
    finally:
        out, err = diagnose.communicate(timeout=300)
    assert diagnose.returncode == 0, err
    assert race.returncode == 0, race.stderr
    assert "OperationalError" not in race.stderr and "refused" not in race.stderr
    # The last of them to finish stopped the server the diagnosis had started on demand.
    assert not server.is_running(), "a server started on demand was left running"
    server.start()
    try:
        with server.admin() as conn:
            left = conn.execute("select datname from pg_database where datname like 'incidentkit_racelab_%'").fetchall()
        assert left == []
    finally:
        server.stop()


@pytest.mark.slow
def test_the_last_process_using_a_server_started_on_demand_stops_it(cache_dir):
    """A command finishing while another kit process uses the server leaves it running; the
    last user stops it; ``server stop`` refuses while others use it, unless ``--force``."""
    server = _server(cache_dir)
    holder_code = textwrap.dedent(f"""
        import sys
        from incidentkit.db import embedded
        server = embedded.EmbeddedServer({str(server.data_dir)!r}).start()
        print(server.port, flush=True)
        sys.stdin.readline()
        embedded.stop_started_here()
        print("released", flush=True)
    """)
    env = {**os.environ, "INCIDENTKIT_CACHE_DIR": str(cache_dir)}
    holder = subprocess.Popen([sys.executable, "-c", holder_code], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline())
        assert server.is_running() and port
        p = _kit(cache_dir, "diagnose", "--demo", "--json")
        assert p.returncode == 0, p.stderr
        assert server.is_running(), "a command stopped the server under another process using it"
        p = _kit(cache_dir, "server", "stop")
        assert p.returncode == 2 and "in use by 1 other incidentkit process" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and server.is_running()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert not server.is_running(), "the last process using the server did not stop it"
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # A holder that dies without releasing does not block anyone: its lease is pruned.
    holder = subprocess.Popen([sys.executable, "-c", holder_code], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert int(holder.stdout.readline())
    holder.kill()
    holder.wait(timeout=30)
    p = _kit(cache_dir, "server", "stop")
    assert p.returncode == 0 and p.stdout.strip() == "stopped", p.stderr


# -- issue 15, defect 8: a stale postmaster.pid naming an unrelated live process -------------------
@pytest.mark.slow
def test_a_stale_pid_file_naming_another_process_is_recovered_from(cache_dir):
    server = _server(cache_dir)
    assert _kit(cache_dir, "server", "start").returncode == 0
    pid_file = server.data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    assert _kit(cache_dir, "server", "stop").stdout.strip() == "stopped"
    # As after a crash and a reboot: the file is back, its PID now an unrelated live process.
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        pid_file.write_text("\n".join([str(stranger.pid), *lines[1:]]) + "\n")
        p = _kit(cache_dir, "server", "status")
        assert p.returncode == 1 and p.stdout.startswith("stopped"), p.stdout
        p = _kit(cache_dir, "diagnose", "--demo", "--json")
        assert p.returncode == 0, p.stderr
        assert '"total_users": 179' in p.stdout
        assert _kit(cache_dir, "server", "status").returncode == 1  # started on demand, stopped again
        pid_file.write_text("\n".join([str(stranger.pid), *lines[1:]]) + "\n")
        p = _kit(cache_dir, "server", "start")
        assert p.returncode == 0 and p.stdout.startswith("running"), p.stderr
        assert _kit(cache_dir, "server", "status").returncode == 0
        assert int(pid_file.read_text().splitlines()[0]) != stranger.pid
        assert _kit(cache_dir, "server", "stop").stdout.strip() == "stopped"
        assert stranger.poll() is None, "the unrelated process was touched"
    finally:
        stranger.kill()
        stranger.wait()
