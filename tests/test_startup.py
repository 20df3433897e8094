"""The CLI's fixed start-up cost (issue 13), asserted by structure, never by the clock.

A verb imports only what it runs: ``import incidentkit`` imports neither SQLAlchemy nor pandas
nor the notebook machinery, a read goes straight through psycopg, and the warm path (the demo
server running and loaded) spawns no process (``postgres --version`` is asked once per binary).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import incidentkit
from incidentkit import cli, config
from incidentkit.db import embedded
from incidentkit.db.demo import INCIDENT_USER, ensure_demo

#: What no CLI read of the logs and the database needs (pandas and the notebooks do). numpy is not
#: among them: the log scan may count candidate bytes with it.
HEAVY = ("sqlalchemy", "pandas", "nbformat", "nbclient", "papermill", "IPython", "jinja2", "matplotlib")

#: The public names of the package root, as the notebooks and the README use them.
PUBLIC = ["__version__", "CheckResult", "ConfigError", "ConnectionFailed", "Database", "Diagnosis",
          "EmbeddedServerError", "IncidentKitError", "LogReadError", "QueryFailed", "ReportFailed", "SchemaMap",
          "SchemaMismatch", "Timeouts", "UnsafeTarget", "check", "diagnose", "indexes", "notebook", "postmortem"]


def _python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (nothing imported yet), with the session's environment."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


#: Runs ``cli.main(argv)`` and writes the modules then imported to the file named by argv[1].
_CLI_MODULES = """
    import json, sys
    from incidentkit.cli import main
    out, argv = sys.argv[1], sys.argv[2:]
    rc = main(argv)
    with open(out, "w") as fh:
        json.dump({"rc": rc, "modules": sorted(sys.modules)}, fh)
    sys.exit(rc)
"""


@pytest.fixture
def warm_demo(pg_server):
    """The demo loaded on the session's server, which runs (as after ``incidentkit server start``)."""
    ensure_demo(pg_server)
    return pg_server


@pytest.fixture
def tiny_log(tmp_path) -> Path:
    path = tmp_path / "tiny.log"
    shutil.copy(config.demo_log_path(), path)
    return path


# -- the package root -------------------------------------------------------------------------
def test_import_incidentkit_imports_no_heavy_module():
    p = _python("""
        import json, sys
        import incidentkit
        print(json.dumps(sorted(sys.modules)))
    """)
    assert p.returncode == 0, p.stderr
    modules = json.loads(p.stdout)
    assert _heavy(modules) == []
    assert "psycopg" not in modules  # nothing connects on import
    assert "incidentkit.report.notebook" not in modules and "incidentkit.analysis.indexes" not in modules


def test_the_public_names_still_resolve_in_a_fresh_process():
    p = _python("""
        import json, types
        import incidentkit as ik
        from incidentkit import Database, SchemaMap, diagnose
        from incidentkit import *  # noqa: F403
        out = {
            "all": ik.__all__,
            "dir_has_all": sorted(set(ik.__all__) - set(dir(ik))),
            "notebook": callable(ik.notebook.connect) and ik.notebook is __import__("incidentkit.report.notebook",
                                                                                     fromlist=["x"]),
            "postmortem": callable(ik.postmortem.gather),
            "indexes": callable(ik.indexes.index_advice),
            "same": Database is ik.Database and SchemaMap is ik.SchemaMap and diagnose is ik.diagnose,
            "modules": isinstance(ik.evidence, types.ModuleType) and isinstance(ik.db, types.ModuleType),
            "star": sorted(n for n in ik.__all__ if n not in globals()),
        }
        try:
            ik.no_such_name
        except AttributeError as e:
            out["missing"] = str(e)
        print(json.dumps(out))
    """)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["all"] == PUBLIC
    assert out["dir_has_all"] == [] and out["star"] == []
    assert out["notebook"] and out["postmortem"] and out["indexes"] and out["same"] and out["modules"]
    assert out["missing"] == "module 'incidentkit' has no attribute 'no_such_name'"


def test_the_public_names_in_this_process():
    for name in PUBLIC:
        assert getattr(incidentkit, name) is not None, name
    assert set(PUBLIC) <= set(dir(incidentkit))
    assert incidentkit.Database.__module__ == "incidentkit.db.connection"
    assert incidentkit.notebook.__name__ == "incidentkit.report.notebook"
    assert incidentkit.indexes.__name__ == "incidentkit.analysis.indexes"
    assert incidentkit.postmortem.__name__ == "incidentkit.report.postmortem"


# -- the CLI's reads ---------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["affected", "timeline"])
def test_a_cli_read_imports_no_heavy_module(verb, warm_demo, tiny_log, tmp_path):
    argv = (["affected", "--demo", "--logs", str(tiny_log), "--json"] if verb == "affected"
            else ["timeline", "--demo", INCIDENT_USER, "--logs", str(tiny_log)])
    out = tmp_path / "modules.json"
    p = _python(_CLI_MODULES, str(out), *argv)
    assert p.returncode == 0, p.stderr
    if verb == "affected":
        assert json.loads(p.stdout)["by_verdict"]["concurrent_deletion"] == 1
    else:
        assert INCIDENT_USER in p.stdout and "deleted" in p.stdout
    result = json.loads(out.read_text())
    assert result["rc"] == 0
    assert "psycopg" in result["modules"]  # it did read the database...
    assert _heavy(result["modules"]) == []  # ... without SQLAlchemy, pandas or the notebook machinery


@pytest.mark.parametrize("verb", ["affected", "timeline"])
def test_the_warm_path_spawns_no_process(verb, warm_demo, tiny_log, monkeypatch, capsys):
    """The server running and the demo loaded: no ``postgres --version``, no ``pg_ctl``, nothing."""
    spawned: list = []

    class NoPopen(subprocess.Popen):
        def __init__(self, args, *a, **kw):  # noqa: D401 - records, then refuses
            spawned.append(args)
            raise AssertionError(f"a process was spawned on the warm path: {args!r}")

    embedded.default_server()  # the binary's version is known (asked once, kept in the cache directory)
    monkeypatch.setattr(embedded, "_VERSIONS", {})  # ... and read back from there, as a new process does
    monkeypatch.setattr(subprocess, "Popen", NoPopen)
    argv = (["affected", "--demo", "--logs", str(tiny_log), "--json"] if verb == "affected"
            else ["timeline", "--demo", INCIDENT_USER, "--logs", str(tiny_log)])
    rc = cli.main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert spawned == []
    assert warm_demo.is_running()  # released, not stopped: it was started as `server start` does


def test_a_read_through_psycopg_keeps_the_snapshot_the_limits_and_the_errors(demo_db):
    """``Database.read`` without SQLAlchemy: the same transaction, the same limits, the same errors."""
    from incidentkit import Database, QueryFailed, Timeouts

    db = Database(demo_db, timeouts=Timeouts(statement_ms=300, lock_ms=150, idle_in_transaction_ms=7000))
    with db.read() as r:
        assert r.scalar("show transaction_isolation") == "repeatable read"
        assert r.scalar("show transaction_read_only") == "on"
        assert [r.scalar(f"show {name}") for name in ("statement_timeout", "lock_timeout",
                                                      "idle_in_transaction_session_timeout")] == ["300ms", "150ms", "7s"]
        assert r.scalar("select current_setting('application_name')") == "incidentkit"
        assert r.all("select 1 as a, %(b)s as b", {"b": "x"}) == [{"a": 1, "b": "x"}]
        assert r.all("select 1 as a where false") == [] and r.one("select 1 as a where false") is None
        first = r.snapshot_at
        assert r.snapshot_at == first and r.scalar("select now()") == first  # one snapshot
    assert r._conn.closed
    with pytest.raises(QueryFailed, match="hit the statement timeout"):
        with db.read() as r:
            r.scalar("select pg_sleep(5)")
    assert r._conn.closed
    with pytest.raises(QueryFailed, match="refused a write"):
        with db.read() as r:
            r.all("create table startup_probe (x int)")
    with pytest.raises(incidentkit.SchemaMismatch, match="check the schema mapping"):
        with db.read() as r:
            r.all("select no_such_column from users")


# -- postgres --version, once per binary --------------------------------------------------------
def _fake_bin(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "postgres"
    exe.write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n")
    exe.chmod(0o755)
    return folder


def test_server_version_is_asked_once_per_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("INCIDENTKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "_VERSIONS", {})
    calls: list = []
    real_run = subprocess.run

    def counting_run(args, *a, **kw):
        calls.append(args)
        return real_run(args, *a, **kw)

    monkeypatch.setattr(embedded.subprocess, "run", counting_run)
    bin_dir = _fake_bin(tmp_path / "bin", "15.3")
    assert embedded.server_version(bin_dir) == 15 and len(calls) == 1
    assert embedded.server_version(bin_dir) == 15 and len(calls) == 1  # this process remembers
    monkeypatch.setattr(embedded, "_VERSIONS", {})
    assert embedded.server_version(bin_dir) == 15 and len(calls) == 1  # a new process reads the cache file
    assert (tmp_path / "cache" / ".pg-versions.json").is_file()

    # An upgraded binary (another size and modification time) is asked again.
    exe = bin_dir / "postgres"
    exe.write_text(exe.read_text().replace("15.3", "16.10"))
    os.utime(exe, ns=(exe.stat().st_atime_ns, exe.stat().st_mtime_ns + 1_000_000_000))
    assert embedded.server_version(bin_dir) == 16 and len(calls) == 2


def test_a_damaged_version_cache_is_asked_again(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("INCIDENTKIT_CACHE_DIR", str(cache))
    monkeypatch.setattr(embedded, "_VERSIONS", {})
    bin_dir = _fake_bin(tmp_path / "bin", "14.1")
    key = embedded._binary_key(bin_dir / "postgres")
    for damaged in ("{not json", json.dumps([1, 2]), json.dumps({key: "16"}), json.dumps({key: -3})):
        (cache / ".pg-versions.json").write_text(damaged)
        monkeypatch.setattr(embedded, "_VERSIONS", {})
        assert embedded.server_version(bin_dir) == 14
        assert json.loads((cache / ".pg-versions.json").read_text())[key] == 14  # repaired


def test_a_version_the_binary_does_not_print_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("INCIDENTKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "_VERSIONS", {})
    bin_dir = _fake_bin(tmp_path / "bin", "")
    (bin_dir / "postgres").write_text("#!/bin/sh\necho 'no version here'\n")
    with pytest.raises(incidentkit.EmbeddedServerError, match="cannot read the PostgreSQL version"):
        embedded.server_version(bin_dir)
    assert not (tmp_path / "cache" / ".pg-versions.json").exists()
