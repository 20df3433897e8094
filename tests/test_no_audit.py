"""Issue 10 end to end: a database with no audit table, other table and constraint names, and the
evidence production has: the server log the embedded server itself writes (``log_statement =
'mod'``), an application log with its own deletion pattern, and point-in-time probes over real
snapshot databases (``CREATE DATABASE ... TEMPLATE``).

One scenario is played once on the real server (module fixture), then read in several ways:

* team A deleted through the extended protocol, then at once a first login referencing it fails:
  ``concurrent_deletion`` from the server log, recorded;
* team B deleted (logged), then 1.5 s later a login referencing it fails: with a 1 s window,
  ``stale_read`` from the server log;
* team C deleted with statement logging off in that session, the application's log records the
  request: ``concurrent_deletion`` from the application log;
* team D deleted with logging off and no application event: only the probes can tell
  (``concurrent_deletion``, bracketed), else ``insufficient_evidence``;
* team E never existed: absent at every probe (``workspace_never_existed``, inferred), else
  ``insufficient_evidence``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from incidentkit import Database, SchemaMap
from incidentkit import cli
from incidentkit.evidence.affected import affected
from incidentkit.evidence.timeline import user_timeline
from incidentkit.text import iso_utc

pytestmark = pytest.mark.slow  # one real scenario: log_statement, snapshots, a 1.5 s gap

SNAPSHOTS = Path(__file__).parent / "samples" / "asof" / "snapshots.py"
LOG_FILES = ("postgresql", "postgresql.csv", "postgresql.json")


def _schema(fk: str) -> str:
    return f"""
create schema app;
create table app.teams (team_id uuid primary key, name text not null, created_at timestamptz not null default now());
create table app.accounts (
    account_did text primary key,
    home_team uuid not null,
    created_at timestamptz not null default now(),
    constraint {fk} foreign key (home_team) references app.teams (team_id)
);
create table app.team_members (
    id uuid primary key default gen_random_uuid(),
    team uuid not null references app.teams (team_id) on delete cascade,
    member text not null,
    is_primary boolean not null default false,
    joined_at timestamptz not null default now()
);
"""


def _map(pattern: str | None = None) -> dict:
    m = {
        "users": {"table": "app.accounts", "id": "account_did", "primary_workspace_id": "home_team"},
        "workspaces": {"table": "app.teams", "id": "team_id"},
        "memberships": {"table": "app.team_members", "workspace_id": "team", "user_id": "member"},
    }
    if pattern:
        m["deletions"] = {"log_events": [{"table": "workspaces", "pattern": pattern}]}
    return m


APP_PATTERN = r"DELETE /api/teams/(?P<id>[0-9a-f-]{36}) 2[0-9][0-9] .*user=(?P<user>\S+)"


def _wait_for(log_dir: Path, marker: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(marker in (log_dir / f).read_text(errors="replace") for f in LOG_FILES if (log_dir / f).exists()):
            return
        time.sleep(0.1)
    raise AssertionError("the server log never showed the marker")


@pytest.fixture(scope="module")
def scene(pg_server, tmp_path_factory):
    """Play the scenario once; copy the server's logs; make the snapshots and the as-of map."""
    tmp = tmp_path_factory.mktemp("no_audit")
    fk = f"accounts_home_team_fk_{uuid.uuid4().hex[:8]}"
    name = f"ik_noaudit_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    teams = {k: str(uuid.uuid4()) for k in "ABCDE"}
    users = {k: f"did:privy:noaudit{k.lower()}{uuid.uuid4().hex[:12]}" for k in "ABCDE"}
    admin = "did:privy:admin0000000000000000000"
    with pg_server.admin() as conn:
        conn.execute(f'alter database "{name}" set log_statement = \'mod\'')
    snapshots: dict[str, str] = {}

    def snapshot(label: str) -> None:
        time.sleep(0.02)
        at = datetime.now(timezone.utc)
        times[f"snapshot{label}"] = at
        snap = f"{name}_s{label}"
        with pg_server.admin() as a:
            a.execute(f'create database "{snap}" template "{name}"')
        snapshots[at.isoformat()] = pg_server.url(snap)
        time.sleep(0.02)

    times: dict[str, datetime] = {}
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(_schema(fk))
        for k, t in teams.items():
            if k != "E":
                c.execute("insert into app.teams (team_id, name) values (%s, %s)", (t, k))
                c.execute("insert into app.team_members (team, member) values (%s, %s)", (t, users[k]))
    snapshot("0")  # every team but E exists
    def delete(team: str, logged: bool = True) -> None:
        with psycopg.connect(url, autocommit=True, application_name="web-admin") as c:
            if not logged:
                c.execute("set log_statement = 'none'")
            c.execute('delete from "app"."teams" where "teams"."team_id" = %s', (teams[team],))
            times[team] = datetime.now(timezone.utc)

    delete("A")
    delete("B")
    delete("C", logged=False)
    snapshot("1")  # C gone, D still there
    delete("D", logged=False)
    snapshot("2")
    with psycopg.connect(url, autocommit=True, application_name="web") as c:
        for k in "ACDE":
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                c.execute("insert into app.accounts (account_did, home_team) values (%s, %s)", (users[k], teams[k]))
            times[f"fail{k}"] = datetime.now(timezone.utc)
        time.sleep(max(0.0, 1.5 - (datetime.now(timezone.utc) - times["B"]).total_seconds()))
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute("insert into app.accounts (account_did, home_team) values (%s, %s)", (users["B"], teams["B"]))
        marker = str(uuid.uuid4())
        c.execute("insert into app.teams (team_id, name) values (%s, 'marker')", (marker,))
    _wait_for(pg_server.log_dir, marker)
    logs = tmp / "server"
    logs.mkdir()
    for f in LOG_FILES:
        shutil.copy(pg_server.log_dir / f, logs / f)
    app_log = tmp / "app.log"
    at = times["C"] + timedelta(milliseconds=2)
    app_log.write_text(
        f"{iso_utc(at - timedelta(seconds=3))} info  [web] GET /api/teams 200 in 12ms user={admin}\n"
        f"{iso_utc(at - timedelta(seconds=2))} info  [web] DELETE /api/teams/{uuid.uuid4()} 404 in 3ms user={admin}\n"
        f"{iso_utc(at)} info  [web] DELETE /api/teams/{teams['C']} 204 in 41ms user={admin}\n")
    mapping = tmp / "snapshots.json"
    mapping.write_text(json.dumps(snapshots))
    command = shlex.join([sys.executable, str(SNAPSHOTS), "--map", str(mapping)]) + " {at}"
    schema_file = tmp / "map.toml"
    schema_file.write_text(
        '[users]\ntable = "app.accounts"\nid = "account_did"\nprimary_workspace_id = "home_team"\n'
        '[workspaces]\ntable = "app.teams"\nid = "team_id"\n'
        '[memberships]\ntable = "app.team_members"\nworkspace_id = "team"\nuser_id = "member"\n'
        f"[[deletions.log_events]]\ntable = \"workspaces\"\npattern = '{APP_PATTERN}'\n")
    # the history the snapshots keep starts at snapshot 0: probe no further back than that
    # (back to halfway between snapshots 0 and 1: well after the history's start even though the server
    # logs a failure a little before this process sees it, and still before D's deletion)
    halfway = times["snapshot0"] + (times["snapshot1"] - times["snapshot0"]) / 2
    since = (min(times[f"fail{k}"] for k in "DE") - halfway).total_seconds()
    yield {"since": since, "url": url, "name": name, "fk": fk, "teams": teams, "users": users, "times": times, "admin": admin,
           "server_logs": logs, "app_log": app_log, "as_of": command, "schema_file": schema_file}
    with pg_server.admin() as a:
        for snap in list(snapshots.values()) + [url]:
            a.execute(f'drop database if exists "{snap.rsplit("/", 1)[1]}" with (force)')


def _db(scene, pattern: str | None = APP_PATTERN) -> Database:
    return Database(scene["url"], schema=SchemaMap.from_dict(_map(pattern)))


def _by_user(a) -> dict:
    return {j.user_id: j for j in a.failures}


def test_without_an_audit_table_every_failure_is_decided_from_the_logs_and_counted_once(scene):
    a = affected(_db(scene), [scene["server_logs"], scene["app_log"]], window=1.0)
    assert a.constraint == scene["fk"]
    assert a.deletion_sources == ["server_log", "app_log"] and a.deletion_source == "none"
    j = _by_user(a)
    u = scene["users"]
    # one failure per login, though each is in the stderr, csvlog and jsonlog files
    assert sorted(j) == sorted(u.values()) and len(a.failures) == 5
    assert all(len(x.places) == 3 for x in a.failures)

    ja = j[u["A"]]
    assert ja.verdict == "concurrent_deletion" and ja.evidence_strength == "recorded"
    assert ja.deletion.origin == "server_log" and "web-admin" in ja.deletion.who
    assert abs((ja.deletion.at - scene["times"]["A"]).total_seconds()) < 0.5
    d = ja.to_dict()
    assert d["deletion"]["source"] == "server_log" and "at" in d["deletion"] and d["as_of_probes"] == 0
    assert d["deletion"]["where"][0].split(":")[0].endswith(("postgresql", "postgresql.csv", "postgresql.json"))

    jb = j[u["B"]]
    assert jb.verdict == "stale_read" and jb.deletion.origin == "server_log" and jb.evidence_strength == "recorded"

    jc = j[u["C"]]
    assert jc.verdict == "concurrent_deletion" and jc.deletion.origin == "app_log"
    assert jc.deletion.who == scene["admin"] and jc.deletion.where[0].startswith(str(scene["app_log"]))

    for k in "DE":  # no record of D's deletion, E never existed: the logs cannot tell
        assert j[u[k]].verdict == "insufficient_evidence" and j[u[k]].evidence_strength == "none"
        assert j[u[k]].deletion is None
    assert "Logs cover only their own time" in " ".join(j[u["E"]].evidence)
    top = a.to_dict()
    assert top["deletion_sources"] == ["server_log", "app_log"] and top["constraint"] == scene["fk"]


def test_point_in_time_probes_bracket_what_no_log_recorded(scene):
    a = affected(_db(scene), [scene["server_logs"], scene["app_log"]], window=1.0, as_of=scene["as_of"],
                 as_of_since=scene["since"])
    j, u = _by_user(a), scene["users"]
    assert a.deletion_sources == ["server_log", "app_log", "as_of"]
    jd = j[u["D"]]
    assert jd.verdict == "concurrent_deletion" and jd.evidence_strength == "bracketed"
    assert jd.deletion.origin == "as_of" and 0 < jd.as_of_probes <= 40
    # the snapshots are all the history has: D existed at snapshot 1 and was gone at snapshot 2
    assert scene["times"]["snapshot1"] <= jd.deletion.after < jd.deletion.at
    assert scene["times"]["D"] <= jd.deletion.at <= scene["times"]["snapshot2"] + timedelta(milliseconds=11)
    assert (jd.deletion.at - jd.deletion.after) <= timedelta(milliseconds=11)
    assert jd.to_dict()["deletion"]["between"][0] == iso_utc(jd.deletion.after)
    je = j[u["E"]]
    assert je.verdict == "workspace_never_existed" and je.evidence_strength == "inferred"
    assert 0 < je.as_of_probes <= 40
    # recorded deletions need no probe
    assert j[u["A"]].as_of_probes == 0 and j[u["A"]].deletion.origin == "server_log"


def test_the_timeline_shows_the_deletion_its_source_and_the_probes(scene):
    t = user_timeline(_db(scene), scene["users"]["D"], logs=[scene["server_logs"]], window=1.0, as_of=scene["as_of"],
                      as_of_since=scene["since"])
    kinds = [e.kind for e in t.events]
    assert "login_failed" in kinds and "present" in kinds and "absent" in kinds
    [deleted] = [e for e in t.events if e.kind == "deleted"]
    assert "point-in-time probes" in deleted.detail
    assert t.to_dict()["deletion_sources"] == ["server_log", "as_of"]
    assert t.failures[0].verdict == "concurrent_deletion"


def test_a_named_audit_table_that_is_missing_is_still_an_error(scene):
    m = _map()
    m.setdefault("deletions", {})["table"] = "audit.logged_actions"
    from incidentkit.exceptions import SchemaMismatch

    with pytest.raises(SchemaMismatch, match="audit.logged_actions"):
        affected(Database(scene["url"], schema=SchemaMap.from_dict(m)), [scene["server_logs"]])


def _cli(capsys, *argv, env_url=None, monkeypatch=None) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_end_to_end_and_its_bad_inputs(scene, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("IK_NOAUDIT_URL", scene["url"])
    base = ["--database-url-env", "IK_NOAUDIT_URL", "--schema-map", str(scene["schema_file"])]
    code, out, err = _cli(capsys, "affected", *base, "--logs", str(scene["server_logs"]), str(scene["app_log"]),
                          "--window", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["deletion_sources"] == ["server_log", "app_log"] and len(data["failures"]) == 5
    assert {f["evidence_strength"] for f in data["failures"]} == {"recorded", "none"}

    bad = tmp_path / "bad.toml"
    for pattern, why in (("DELETE /api/teams/(?P<id>[0-9a-f-]{36}", "does not compile"),
                         (r"DELETE /api/teams/([0-9a-f-]{36})", "no named group")):
        bad.write_text(scene["schema_file"].read_text().replace(APP_PATTERN, pattern))
        code, out, err = _cli(capsys, "affected", "--database-url-env", "IK_NOAUDIT_URL", "--schema-map", str(bad),
                              "--logs", str(scene["app_log"]))
        assert code == 2 and why in err and len(err.strip().splitlines()) == 1 and out == ""

    failing = shlex.join([sys.executable, "-c", "import sys; print('postgresql://u:hunter2@h/db', file=sys.stderr); "
                                                "sys.exit(3)"]) + " {at}"
    unreachable = shlex.join([sys.executable, "-c", "print('postgresql://u:hunter2@127.0.0.1:1/db')"]) + " {at}"
    for command in (failing, unreachable):
        code, out, err = _cli(capsys, "affected", *base, "--logs", str(scene["server_logs"]), "--window", "1",
                              "--as-of-command", command)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "hunter2" not in err and "127.0.0.1:1" not in err


def test_a_full_report_on_the_mapped_database_without_audit(scene, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("IK_NOAUDIT_URL", scene["url"])
    code = cli.main(["report", "--database-url-env", "IK_NOAUDIT_URL", "--schema-map", str(scene["schema_file"]),
                     "--logs", str(scene["server_logs"]), str(scene["app_log"]), "--window", "1",
                     "--no-race-lab", "--max-users", "2", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir() and p.name[:4].isdigit()]
    run = json.loads((folder / "run.json").read_text())
    assert run["deletion_sources"] == ["server_log", "app_log"] and run["constraint"] == scene["fk"]
    affected_fig = run["figures"]["affected"]
    assert affected_fig["failures"] == 5  # each failure once, though each is in three server logs
    assert affected_fig["by_strength"] == {"recorded": 3, "bracketed": 0, "inferred": 0, "none": 2}
    page = (folder / "02-affected-users.md").read_text()
    assert "server_log" in page and "app_log" in page and "recorded" in page
    deletions = (folder / "evidence" / "deletions.txt").read_text()
    assert "DELETE in the server log" in deletions and "application log event" in deletions


def test_the_demo_as_production_is_reaches_the_same_verdict_from_other_evidence(pg_server, capsys, tmp_path):
    """Issue 10 item 10: ``incidentkit demo --production``: no audit table; the server log, the access
    log and point-in-time snapshots; the notebooks show the verdict, its source and strength, and
    the probes on the timeline."""
    code = cli.main(["demo", "--production", "--out", str(tmp_path), "--date", "2025-10-09"])
    out, err = capsys.readouterr()
    assert code == 0, err
    folder = tmp_path / "2025-10-09"
    run = json.loads((folder / "run.json").read_text())
    assert run["parameters"]["demo"] == "production"
    assert run["deletion_sources"] == ["server_log", "app_log", "as_of"]
    fig = run["figures"]["affected"]
    assert fig["failures"] == 1 and fig["by_verdict"]["concurrent_deletion"] == 1  # one failure, in two logs
    assert fig["by_strength"]["recorded"] == 1
    assert "Evidence: recorded, from `server_log`" in (folder / "00-postmortem.md").read_text()
    timeline = (folder / "03-user-timeline-01.md").read_text()
    assert "| present |" in timeline and "| absent |" in timeline  # the probes, marked
    assert "requested by did:privy:cmepupsjwkkftpvfdaww49bkb" in timeline
    assert "DELETE in the server log" in (folder / "evidence" / "deletions.txt").read_text()
