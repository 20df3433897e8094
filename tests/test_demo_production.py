"""The demo incident "as production is": no audit table, a server log written by a real server,
an access log, and point-in-time snapshots handed out by an as-of command (issue 10, item 10)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from datetime import timedelta

import psycopg
import pytest

from incidentkit import config
from incidentkit.db import demo, demo_asof
from incidentkit.db.schema import SchemaMap
from incidentkit.evidence.logs import scan_logs
from incidentkit.evidence.server_log import scan_server_logs
from incidentkit.text import iso_utc

MS = timedelta(milliseconds=1)
COUNTS_SQL = ("select (select count(*) from users), (select count(*) from workspaces),"
              " (select count(*) from workspace_members)")


def _one(url: str, query: str, params: tuple = ()):
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()


def _oid(server, name: str) -> int | None:
    with server.admin() as conn:
        row = conn.execute("select oid from pg_database where datname = %s", (name,)).fetchone()
    return row[0] if row else None


def _as_of(at, timeout: float = 300) -> subprocess.CompletedProcess:
    """The as-of command, run as the kit runs it: its template filled in, split like a shell."""
    argv = shlex.split(demo_asof.demo_as_of_command().format(at=at if isinstance(at, str) else iso_utc(at)))
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})


def _url_of(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def _workspace_exists(url: str, workspace: str) -> bool:
    return _one(url, "select exists (select 1 from workspaces where id = %s)", (workspace,))[0]


# -- the production-shaped database ---------------------------------------------------------------
@pytest.mark.slow
def test_production_demo_has_no_audit_and_the_demos_rows(pg_server):
    prod = demo.ensure_production_demo(pg_server)
    assert prod.endswith("/" + config.DEMO_PRODUCTION_DATABASE)
    audited = demo.ensure_demo(pg_server)
    assert _one(prod, COUNTS_SQL) == _one(audited, COUNTS_SQL) == (
        demo.EXPECTED["total_users"], demo.EXPECTED["total_workspaces"], demo.EXPECTED["total_memberships"])
    assert _one(prod, "select to_regnamespace('audit'), to_regclass('audit.logged_actions')") == (None, None)
    assert _one(prod, "select count(*) from pg_trigger where not tgisinternal")[0] == 0
    assert _one(prod, "select count(*) from pg_proc where proname = 'if_modified_func'")[0] == 0
    # The foreign keys are the reference schema's: the incident can happen here.
    assert _one(prod, "select count(*) from pg_constraint where conname = %s",
                ("users_primary_workspace_id_workspaces_id_fk",))[0] == 1
    # Same rows, not just the same counts.
    ids = "select string_agg(id::text, ',' order by id) from workspaces"
    assert _one(prod, ids) == _one(audited, ids)
    # Made once: asked again, the same database is reused.
    oid = _oid(pg_server, config.DEMO_PRODUCTION_DATABASE)
    assert demo.ensure_production_demo(pg_server) == prod
    assert _oid(pg_server, config.DEMO_PRODUCTION_DATABASE) == oid


@pytest.mark.slow
def test_a_rebuilt_demo_rebuilds_the_production_demo_and_drops_the_snapshots(pg_server):
    demo.ensure_production_demo(pg_server)
    demo_asof.demo_snapshot(demo.DELETED_AT - MS, pg_server)
    assert demo_asof.list_demo_snapshots(pg_server)
    old = _oid(pg_server, config.DEMO_PRODUCTION_DATABASE)
    with pg_server.admin() as conn:  # the demo no longer carries its mark: ensure_demo rebuilds it
        conn.execute(f"comment on database {config.DEMO_DATABASE} is 'stale'")
    demo.ensure_demo(pg_server)
    assert _oid(pg_server, config.DEMO_PRODUCTION_DATABASE) is None
    assert demo_asof.list_demo_snapshots(pg_server) == []
    assert _oid(pg_server, demo_asof.BASE_DATABASE) is None
    prod = demo.ensure_production_demo(pg_server)
    assert _oid(pg_server, config.DEMO_PRODUCTION_DATABASE) not in (None, old)
    assert _one(prod, COUNTS_SQL) == (179, 179, 183)


# -- the server log ---------------------------------------------------------------------------------
def test_server_log_holds_the_incidents_deletion():
    scan = scan_server_logs(config.demo_server_log_path(), SchemaMap.from_dict(demo.DEMO_PRODUCTION_MAP),
                            database=config.DEMO_PRODUCTION_DATABASE)
    assert scan.skipped_lines == 0
    assert [(e.kind, e.table, e.ids, e.logged_at, e.via, e.failed) for e in scan.events] == [
        ("delete", "workspaces", (demo.INCIDENT_WORKSPACE,), demo.DELETED_AT, "execute", False)]
    event = scan.events[0]
    assert event.database == config.DEMO_PRODUCTION_DATABASE
    assert event.statement.startswith('delete from "workspaces" where "workspaces"."id" = $1')
    # Another database's statements would be ignored: none of these is.
    assert scan_server_logs(config.demo_server_log_path(), SchemaMap.from_dict(demo.DEMO_PRODUCTION_MAP),
                            database="some_other_db").events == []


def test_server_log_holds_the_failed_login():
    scan = scan_logs(config.demo_server_log_path())
    assert [(f.user_id, f.workspace_id, f.at, f.kind, f.format) for f in scan.failures] == [
        (demo.INCIDENT_USER, demo.INCIDENT_WORKSPACE, demo.FAILED_AT, "insert", "pg_stderr")]
    assert scan.failures[0].at - demo.DELETED_AT == timedelta(milliseconds=46)


def test_server_log_is_the_servers_own_text():
    """The embedded server's prefix on every line, the ORM's statement with its parameters, the
    application names, and the error as PostgreSQL words it."""
    lines = config.demo_server_log_path().read_text().splitlines()
    prefix = re.compile(r"2025-10-08 09:4[0-2]:\d\d\.\d{3} UTC \[\d+\] (\S+@\S+/\S+ )?"
                        r"(LOG|DETAIL|ERROR|CONTEXT|STATEMENT):  ")
    assert lines and all(prefix.match(line) for line in lines)
    text = "\n".join(lines)
    assert ("2025-10-08 09:41:27.118 UTC" in text and "app@incidentkit_demo_prod/web-admin LOG:  execute <unnamed>: "
            'delete from "workspaces" where "workspaces"."id" = $1' in text)
    assert f"DETAIL:  parameters: $1 = '{demo.INCIDENT_WORKSPACE}'" in text
    assert ('ERROR:  insert or update on table "users" violates foreign key constraint '
            '"users_primary_workspace_id_workspaces_id_fk"') in text
    assert (f'DETAIL:  Key (primary_workspace_id)=({demo.INCIDENT_WORKSPACE}) is not present in table '
            '"workspaces".') in text
    assert "STATEMENT:  insert into \"users\"" in text
    stamps = [line[:23] for line in lines]
    assert stamps[0] >= "2025-10-08 09:40:00" and stamps[-1] <= "2025-10-08 09:43:00"


# -- the access log and its schema map --------------------------------------------------------------
def test_production_map_rule_matches_exactly_the_incidents_delete():
    mapping = SchemaMap.from_dict(demo.DEMO_PRODUCTION_MAP)
    assert mapping.deletion_source == "none" and [r.table for r in mapping.log_events] == ["workspaces"]
    rule = mapping.log_events[0]
    lines = config.demo_access_log_path().read_text().splitlines()
    hits = [(n, m) for n, line in enumerate(lines, 1) for m in [rule.pattern.search(line)] if m]
    assert [(m.group("id"), m.group("user")) for _, m in hits] == [(demo.INCIDENT_WORKSPACE, demo.INCIDENT_ADMIN)]
    (n, _), = hits
    assert lines[n - 1].startswith("2025-10-08T09:41:27.131Z ")  # finishing just after the deletion
    # The other DELETE requests are there and are not deletions of a workspace.
    assert any(" DELETE /api/workspaces/" in line and " 404 " in line for line in lines)
    assert any(" DELETE /api/sessions/" in line for line in lines)
    # The kit's reader of application logs finds the same one deletion.
    from incidentkit.evidence.app_events import scan_app_events

    events = scan_app_events(config.demo_access_log_path(), mapping).events
    assert [(e.table, e.id, e.line) for e in events] == [("workspaces", demo.INCIDENT_WORKSPACE, n)]
    # No failure in the access log: the failure is the app log's and the server log's.
    assert scan_logs(config.demo_access_log_path()).failures == []


def test_the_admin_is_the_member_who_deleted_the_workspace(demo_db):
    """The access log's user is the app log's user of the workspace.delete request, and the demo's
    owner of the incident's workspace (its first member, in the real audit rows)."""
    app_log = config.demo_log_path().read_text()
    m = re.search(r"workspace\.delete start user=(\S+) workspaceId=" + demo.INCIDENT_WORKSPACE, app_log)
    assert m and m.group(1) == demo.INCIDENT_ADMIN
    owner = _one(demo_db, """
        select row_data ->> 'user_id' from audit.logged_actions
        where table_name = 'workspace_members' and action = 'I' and row_data ->> 'workspace_id' = %s
        order by event_id limit 1""", (demo.INCIDENT_WORKSPACE,))
    assert owner == (demo.INCIDENT_ADMIN,)


# -- point-in-time snapshots and the as-of command --------------------------------------------------
def test_parse_at_and_names():
    at = demo_asof.parse_at("2025-10-08T09:41:27.118Z")
    assert at == demo.DELETED_AT
    assert demo_asof.parse_at("2025-10-08T09:41:27.118+00:00") == at
    assert demo_asof.snapshot_name(at) == "incidentkit_demo_asof_20251008t094127118000z"
    assert len(demo_asof.snapshot_name(at)) < 64
    assert demo_asof.demo_as_of_command() == shlex.join([sys.executable, "-m", "incidentkit.db.demo_asof"]) + " {at}"


@pytest.mark.parametrize("bad", ["", "yesterday", "2025-10-08", "2025-10-08T09:41:27.118", "2025-10-08 09:41:27Z",
                                 "2025-13-08T09:41:27.118Z", "2025-10-08T09:41:27.118+02:00", "1 2"])
def test_bad_moment_is_one_line_and_exit_2(bad, capsys):
    assert demo_asof.main([bad]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1


def test_bad_moment_as_a_process_is_one_line_and_exit_2():
    proc = _as_of("2025-10-08T09:41:27.118+02:00", timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: not a moment in ISO 8601 UTC") and proc.stderr.count("\n") == 1


def test_no_moment_is_one_line_and_exit_2(capsys):
    assert demo_asof.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: usage") and err.count("\n") == 1


@pytest.mark.slow
def test_as_of_command_run_as_a_process_gives_the_demo_as_it_was(pg_server):
    prod = demo.ensure_production_demo(pg_server)
    early = _one(prod, "select id::text, created_at from workspaces where created_at < %s order by created_at"
                       " limit 1", (demo.DELETED_AT - timedelta(weeks=3),))
    assert early is not None
    before, after = _url_of(_as_of(demo.DELETED_AT - MS)), _url_of(_as_of(demo.DELETED_AT + MS))
    assert before != after
    for url in (before, after):
        assert url.startswith("postgresql://") and "@127.0.0.1:" in url
        assert url.rsplit("/", 1)[1].startswith(config.DEMO_ASOF_PREFIX)
        assert _one(url, "select to_regclass('audit.logged_actions')") == (None,)  # shaped like production
        assert _workspace_exists(url, early[0])  # created weeks before: there at both moments
    assert _workspace_exists(before, demo.INCIDENT_WORKSPACE)
    assert not _workspace_exists(after, demo.INCIDENT_WORKSPACE)
    # The memberships went with it (the cascade, undone as one transaction).
    members = "select count(*) from workspace_members where workspace_id = %s"
    assert _one(before, members, (demo.INCIDENT_WORKSPACE,)) == (2,)
    assert _one(after, members, (demo.INCIDENT_WORKSPACE,)) == (0,)
    assert _one(after, COUNTS_SQL) == _one(prod, COUNTS_SQL)
    assert _one(before, COUNTS_SQL) == (179, 180, 185)
    # Before the early workspace was created, it was not there.
    older = _url_of(_as_of(early[1] - MS))
    assert not _workspace_exists(older, early[0])


@pytest.mark.slow
def test_the_same_moment_reuses_its_snapshot_even_when_asked_at_once(pg_server):
    at = iso_utc(demo.FAILED_AT)
    argv = shlex.split(demo_asof.demo_as_of_command().format(at=at))
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    urls = {o.strip().splitlines()[-1] for o, _ in outs}
    assert len(urls) == 1
    name = urls.pop().rsplit("/", 1)[1]
    assert name == demo_asof.snapshot_name(demo.FAILED_AT)
    oid = _oid(pg_server, name)
    assert _url_of(_as_of(at)).endswith("/" + name)
    assert _oid(pg_server, name) == oid  # reused, not made again


@pytest.mark.slow
def test_snapshots_beyond_the_limit_are_dropped_oldest_first(pg_server):
    demo_asof.drop_demo_snapshots(pg_server)
    moments = [demo.DELETED_AT - timedelta(days=d) for d in (3, 2, 1)]
    names = [demo_asof.demo_snapshot(at, pg_server, keep=2).rsplit("/", 1)[1] for at in moments]
    assert demo_asof.list_demo_snapshots(pg_server) == names[1:]
    # One somebody is connected to is never dropped under them.
    with psycopg.connect(pg_server.url(names[1])):
        demo_asof.demo_snapshot(demo.DELETED_AT, pg_server, keep=2)
        assert names[1] in demo_asof.list_demo_snapshots(pg_server)
    assert demo_asof.drop_demo_snapshots(pg_server)
    assert demo_asof.list_demo_snapshots(pg_server) == []
    assert _oid(pg_server, demo_asof.BASE_DATABASE) is None


def _libfaketime() -> str | None:
    sys.path.insert(0, str(config.PROJECT_DIR / "tools"))
    try:
        import make_demo_server_log
    finally:
        sys.path.pop(0)
    return next((p for p in make_demo_server_log.LIBFAKETIME if os.path.exists(p)), None)


@pytest.mark.slow
@pytest.mark.skipif(not (config.PROJECT_DIR / "tools" / "make_demo_server_log.py").exists(),
                    reason="tools/ is not shipped with the package")
def test_the_server_log_is_what_the_tool_makes(tmp_path):
    """tools/make_demo_server_log.py run again (a real server, libfaketime) writes the same lines:
    same messages, same second, the deletion and the failing insert sent to the millisecond; only the
    process ids and the shutdown checkpoint's figures may differ."""
    if _libfaketime() is None:
        pytest.skip("libfaketime is not installed (apt-get install -y faketime)")
    out = tmp_path / "demo-server.log"
    proc = subprocess.run([sys.executable, str(config.PROJECT_DIR / "tools" / "make_demo_server_log.py"), str(out)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr

    def shape(text: str) -> tuple[list[str], list[str]]:
        """(the sessions' lines in order, to the second; the server's own lines, unordered, untimed)."""
        sessions, server = [], []
        for line in text.splitlines():
            line = re.sub(r"\[\d+\]|\(PID \d+\)|port \d+", "[n]", line)
            line = re.sub(r"(checkpoint complete:).*", r"\1 ...", line)
            if "@" + config.DEMO_PRODUCTION_DATABASE + "/" in line:
                sessions.append(line[:19] + line[23:])
            else:
                server.append(line[24:])
        return sessions, sorted(server)

    made, shipped = out.read_text(), config.demo_server_log_path().read_text()
    assert shape(made) == shape(shipped)
    # the deletion and the failing insert are sent at their moments, to the millisecond; the lines the
    # server writes after a statement (its ERROR, DETAIL...) may fall a millisecond later on a busy machine
    for moment in ("2025-10-08 09:41:27.118 UTC", "2025-10-08 09:41:27.164 UTC"):
        first = [re.sub(r"\[\d+\]", "", line) for line in shipped.splitlines() if line.startswith(moment)][0]
        assert first in [re.sub(r"\[\d+\]", "", line) for line in made.splitlines() if line.startswith(moment)]


def test_the_server_log_read_ahead_is_the_one_used_and_changes_nothing(pg_server, monkeypatch):
    """`affected` reads the server logs in another process while it scans for failures; the
    verdicts, deletions and counts are those of reading them after the scan."""
    import importlib

    from incidentkit import Database
    from incidentkit.evidence import sources

    affected_mod = importlib.import_module("incidentkit.evidence.affected")

    demo.ensure_production_demo(pg_server)
    db = Database.demo(production=True)
    logs = affected_mod.default_logs(db)
    used = []
    real = sources.ServerLogAhead.result

    def result(self, files, database, log_line_prefix=None):
        got = real(self, files, database, log_line_prefix)
        used.append(got is not None)
        return got

    monkeypatch.setattr(sources.ServerLogAhead, "result", result)
    monkeypatch.setattr(sources, "_cores", lambda: 2)
    ahead = affected_mod.affected(db, logs).to_dict()
    assert used == [True]
    monkeypatch.setattr(affected_mod, "server_log_ahead", lambda *a: _nothing())
    after = affected_mod.affected(db, logs).to_dict()
    ahead.pop("snapshot_at"), after.pop("snapshot_at")
    assert ahead == after and "server_log" in ahead["deletion_sources"]
    assert ahead["by_verdict"].get("concurrent_deletion")


def _nothing():
    from contextlib import nullcontext

    return nullcontext(None)
