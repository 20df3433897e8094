"""The foreign key the log scan looks for comes from the catalog; one failure seen in several logs
is one failure with every place it was seen (issue 10, items 1, 2 and the matching part of 9)."""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from incidentkit import Database, SchemaMap, config
from incidentkit.evidence import registry
from incidentkit.evidence.affected import affected
from incidentkit.evidence.history import foreign_key
from incidentkit.evidence.logs import (
    DEFAULT_CONSTRAINT,
    DEFAULT_FOREIGN_KEY,
    ForeignKey,
    LogFailure,
    merge_failures,
    scan_logs,
)
from incidentkit.evidence.timeline import user_timeline, workspace_timeline
from incidentkit.text import iso_utc

SAMPLES = Path(__file__).parent / "samples" / "logs"
DEMO_USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"
DEMO_WS = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"
APP_FK = "accounts_home_team_must_exist"

#: An application whose tables are not the reference's: accounts -> teams, members in team_members.
APP_SCHEMA = f"""
create schema app;
create table app.teams (
    team_id uuid primary key default gen_random_uuid(),
    name text not null,
    created_at timestamptz not null default now()
);
create table app.accounts (
    account_did text primary key,
    home_team uuid not null,
    created_at timestamptz not null default now(),
    constraint {APP_FK} foreign key (home_team) references app.teams (team_id)
);
create table app.team_members (
    id uuid primary key default gen_random_uuid(),
    team uuid not null references app.teams (team_id) on delete cascade,
    member text not null,
    is_primary boolean not null default false,
    joined_at timestamptz not null default now()
);
"""

APP_MAP = {
    "users": {"table": "app.accounts", "id": "account_did", "primary_workspace_id": "home_team"},
    "workspaces": {"table": "app.teams", "id": "team_id"},
    "memberships": {"table": "app.team_members", "workspace_id": "team", "user_id": "member"},
    "deletions": {"source": "none"},
}


def uid() -> str:
    return f"did:privy:t{uuid.uuid4().hex[:22]}"


def fk_error(conn, sql: str, params: tuple) -> psycopg.errors.ForeignKeyViolation:
    """The server's own error for a statement that violates a foreign key."""
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as info:
        conn.execute(sql, params)
    return info.value


def app_record(at: datetime, user: str | None, err: psycopg.Error) -> str:
    """One failure as node-postgres' caller logs it (the incident's log format), from a real error."""
    who = f" user={user}" if user else ""
    return (f"{iso_utc(at)} error [web] request failed{who}\n"
            f"error: {err.diag.message_primary}\n"
            f"Detail: {err.diag.message_detail}\n"
            "    at /var/task/node_modules/pg-pool/index.js:45:11\n"
            f"{iso_utc(at + timedelta(milliseconds=3))} info  [web] request done\n")


@pytest.fixture
def app_db(fresh_db):
    """The reference schema (whose own constraint stays, as a decoy) plus the app's mapped tables."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(APP_SCHEMA)
    return fresh_db


# -- item 1: the constraint comes from the catalog -------------------------------------------
def test_the_foreign_key_is_read_from_the_catalog(app_db):
    db = Database(app_db, schema=SchemaMap.from_dict(APP_MAP))
    with db.read() as r:
        fk = foreign_key(r, db.schema)
    assert fk == ForeignKey(APP_FK, "accounts", "home_team", "teams", "team_id")
    with Database(app_db).read() as r:  # the reference mapping on the same database
        assert foreign_key(r, SchemaMap.default()).name == DEFAULT_CONSTRAINT


def test_without_the_key_in_the_catalog_the_reference_name_is_the_default(app_db):
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(f"alter table app.accounts drop constraint {APP_FK}")
    db = Database(app_db, schema=SchemaMap.from_dict(APP_MAP))
    with db.read() as r:
        fk = foreign_key(r, db.schema)
    assert fk == ForeignKey(DEFAULT_CONSTRAINT, "accounts", "home_team", "teams", "team_id")


def test_affected_finds_the_mapped_constraints_failures_and_only_them(app_db, tmp_path):
    t0 = datetime(2025, 10, 8, 9, 41, 27, 164000, tzinfo=timezone.utc)
    ghost, alice, bob, carol = str(uuid.uuid4()), uid(), uid(), uid()
    with psycopg.connect(app_db, autocommit=True) as conn:
        team = str(conn.execute("insert into app.teams (name) values ('t') returning team_id").fetchone()[0])
        conn.execute("insert into app.accounts (account_did, home_team) values (%s, %s)", (carol, team))
        ours = fk_error(conn, "insert into app.accounts (account_did, home_team) values (%s, %s)", (alice, ghost))
        theirs = fk_error(conn, "insert into public.users (privy_did, primary_workspace_id) values (%s, %s)",
                          (bob, ghost))  # the reference schema's constraint, in the same database
        member = fk_error(conn, "insert into app.team_members (team, member) values (%s, %s)", (ghost, bob))
        refused = fk_error(conn, "delete from app.teams where team_id = %s", (team,))
    assert APP_FK in str(ours) and DEFAULT_CONSTRAINT in str(theirs)
    assert str(refused.diag.message_primary).startswith('update or delete on table "teams"')
    log = tmp_path / "app.log"
    log.write_text(app_record(t0, alice, ours) + app_record(t0 + timedelta(seconds=1), bob, theirs)
                   + app_record(t0 + timedelta(seconds=2), bob, member)
                   + app_record(t0 + timedelta(seconds=3), carol, refused))

    db = Database(app_db, schema=SchemaMap.from_dict(APP_MAP))
    result = affected(db, logs=[log])
    d = json.loads(json.dumps(result.to_dict()))
    assert d["constraint"] == APP_FK
    assert [(f["user_id"], f["workspace_id"], f["kind"]) for f in d["failures"]] == [(alice, ghost, "insert")]
    assert d["failures"][0]["sources"] == [{"file": str(log), "line": 2}]
    assert d["failures"][0]["verdict"] in registry.NAMES
    assert sum(d["by_verdict"].values()) == 1
    # the delete side: listed apart, with its kind and the key still referenced, never judged
    assert [(f["kind"], f["workspace_id"], f["constraint"]) for f in d["delete_failures"]] == [
        ("delete", team, APP_FK)]
    assert "verdict" not in d["delete_failures"][0]
    assert "1 deletion refused by the same foreign key" in result.text()
    # the other foreign keys violated in the same logs: each named and judged as any constraint (issue 14)
    others = {o["constraint"]: o for o in d["other_constraints"]}
    assert set(others) == {DEFAULT_CONSTRAINT, "team_members_team_fkey"}
    [theirs_failure] = others[DEFAULT_CONSTRAINT]["failures"]
    assert theirs_failure["direction"] == "insert" and theirs_failure["key"] == {"primary_workspace_id": ghost}
    assert all(f["verdict"] in registry.names("generic") for o in others.values() for f in o["failures"])
    assert f"Also in these logs: 1 violation of {DEFAULT_CONSTRAINT}" in result.text()

    # what the kit looked for before: the reference name finds the other database's failure instead
    before = scan_logs(log)
    assert [(f.user_id, f.constraint) for f in before.failures] == [(bob, DEFAULT_CONSTRAINT)]

    tl = user_timeline(db, alice, logs=[log])
    assert tl.to_dict()["constraint"] == APP_FK and [j.user_id for j in tl.failures] == [alice]
    wt = workspace_timeline(db, team, logs=[log])
    assert [e.kind for e in wt.events if e.source == "logs"] == ["deletion_refused"]
    assert wt.failures == [] and wt.to_dict()["constraint"] == APP_FK


def test_a_detail_of_other_names_is_not_the_keys(tmp_path):
    fk = ForeignKey(APP_FK, "accounts", "home_team", "teams", "team_id")
    at = "2025-10-08T09:41:27.164Z"
    log = tmp_path / "app.log"
    log.write_text(
        f"{at} error [web] failed user=did:privy:abc\n"
        f'error: insert or update on table "accounts" violates foreign key constraint "{APP_FK}"\n'
        'Detail: Key (other_col)=(11111111-2222-4333-8444-555555555555) is not present in table "teams".\n'
        f"{at} error [web] failed user=did:privy:def\n"
        f'error: insert or update on table "accounts" violates foreign key constraint "{APP_FK}"\n'
        'Detail: Key (home_team)=(22222222-2222-4333-8444-555555555555) is not present in table "teams".\n')
    scan = scan_logs(log, constraint=fk)
    assert [(f.user_id, f.workspace_id) for f in scan.failures] == [
        ("did:privy:abc", None), ("did:privy:def", "22222222-2222-4333-8444-555555555555")]
    assert scan.skipped_lines == 0  # a detail of other names is not a damaged one
    by_name = scan_logs(log, constraint=APP_FK)  # a bare name checks no detail
    assert [f.workspace_id for f in by_name.failures] == [
        "11111111-2222-4333-8444-555555555555", "22222222-2222-4333-8444-555555555555"]


# -- item 2: one failure, many sources ------------------------------------------------------
def pg_stderr_copy_of_the_demo_failure(path: Path) -> Path:
    """The real server log sample's record of the demo user's failure (user A), moved to the demo's time."""
    lines = (SAMPLES / "postgres" / "postgresql").read_text().splitlines()
    start = next(i for i, s in enumerate(lines) if "ERROR:" in s and DEFAULT_CONSTRAINT in s)
    record = lines[start:start + 4]
    assert DEMO_WS in record[1] and DEMO_USER in record[2]
    stamp = record[0][:27]  # "2026-11-23 23:25:02.590 UTC"
    path.write_text("2025-10-08 09:41:27.100 UTC [5418] LOG:  checkpoint starting: time\n"
                    + "\n".join(s.replace(stamp, "2025-10-08 09:41:27.162 UTC") for s in record) + "\n")
    return path


def test_a_failure_in_three_logs_is_counted_once_with_three_sources(demo_db, tmp_path):
    app = config.demo_log_path()
    copy = Path(shutil.copy(app, tmp_path / "demo-app-copy.log"))
    pg = pg_stderr_copy_of_the_demo_failure(tmp_path / "postgresql.log")
    logs = [app, copy, pg]
    assert len(scan_logs(logs).failures) == 3  # three records...

    db = Database(demo_db)
    result = affected(db, logs=logs)
    d = json.loads(json.dumps(result.to_dict()))
    assert len(d["failures"]) == 1  # ... one failure
    f = d["failures"][0]
    assert (f["user_id"], f["workspace_id"], f["verdict"]) == (DEMO_USER, DEMO_WS, "concurrent_deletion")
    assert sorted((s["file"], s["line"]) for s in f["sources"]) == sorted(
        [(str(app), 7), (str(copy), 7), (str(pg), 2)])
    # source/line keep their meaning: the first place seen (the server's record is 2 ms earlier)
    assert (f["source"], f["line"]) == (str(pg), 2) == (f["sources"][0]["file"], f["sources"][0]["line"])
    assert d["by_verdict"]["concurrent_deletion"] == 1 and sum(d["by_verdict"].values()) == 1
    assert result.headline()["failures"] == 1 and d["constraint"] == DEFAULT_CONSTRAINT
    assert result.text().startswith("1 failed login in 3 files")

    tl = user_timeline(db, DEMO_USER, logs=logs)
    assert len(tl.failures) == 1 and len(tl.failures[0].places) == 3
    assert [e.kind for e in tl.events].count("login_failed") == 1


def record(at: float, user: str | None, ws: str | None, source: str, line: int = 1,
           kind: str = "insert") -> LogFailure:
    base = datetime(2025, 10, 8, 9, 41, 27, tzinfo=timezone.utc)
    return LogFailure(base + timedelta(seconds=at), user, ws, DEFAULT_CONSTRAINT, source, line, "text", kind)


def test_what_is_and_is_not_the_same_failure():
    u1, u2, w1, w2 = "did:privy:a", "did:privy:b", DEMO_WS, "5d0c4f3e-9b8a-4e1f-a2c3-7b6d5e4f3a21"
    same = merge_failures([record(0.0, u1, w1, "app.log", 7), record(1.4, u1, None, "pg.log", 3),
                           record(-0.5, None, w1.upper(), "drain.jsonl", 2)])
    assert len(same) == 1
    assert same[0].places == (("drain.jsonl", 2), ("app.log", 7), ("pg.log", 3))
    assert (same[0].user_id, same[0].source, same[0].line) == (u1, "drain.jsonl", 2)  # the first place seen
    apart = [
        [record(0.0, u1, w1, "app.log"), record(2.5, u1, w1, "pg.log")],  # more than 2 s apart
        [record(0.0, u1, w1, "app.log"), record(2.1, u1, w1, "pg.log")],
        [record(0.0, u1, w1, "app.log"), record(0.1, u2, w1, "pg.log")],  # two users, one workspace
        [record(0.0, u1, w1, "app.log"), record(0.1, u1, w2, "pg.log")],  # one user, two keys
        [record(0.0, u1, w1, "app.log", 1), record(0.1, u1, w1, "app.log", 9)],  # a retry in one log
        [record(0.0, u1, w1, "app.log"), record(0.1, u1, w1, "pg.log", kind="delete")],  # the other side
        [record(0.0, None, None, "app.log"), record(0.1, None, None, "pg.log")],  # nothing to match on
    ]
    for pair in apart:
        assert len(merge_failures(pair)) == 2, pair
    assert merge_failures(merge_failures([record(0.0, u1, w1, "a"), record(1.0, u1, w1, "b")]))[0].places == (
        ("a", 1), ("b", 1))


# -- the delete side in every format ----------------------------------------------------------
def to_delete_side(text: str, q: str) -> str:
    """The real samples' insert-side records rewritten as the key's delete side (the server's wording)."""
    fk = DEFAULT_CONSTRAINT
    text = text.replace(f"insert or update on table {q}users{q} violates foreign key constraint {q}{fk}{q}",
                        f"update or delete on table {q}workspaces{q} violates foreign key constraint {q}{fk}{q} "
                        f"on table {q}users{q}")
    return re.sub(r"Key \(primary_workspace_id\)=\(([^)]*)\) is not present in table " + re.escape(f"{q}workspaces{q}"),
                  lambda m: f"Key (id)=({m.group(1)}) is still referenced from table {q}users{q}", text)


@pytest.mark.parametrize(("sample", "quote"), [("postgres/postgresql", '"'), ("postgres/postgresql.csv", '""'),
                                               ("postgres/postgresql.json", '\\"'), ("app/next-server.log", '"')])
def test_the_delete_side_is_found_in_every_format_as_its_own_kind(sample, quote, tmp_path):
    original = scan_logs(SAMPLES / sample, constraint=DEFAULT_FOREIGN_KEY).failures
    rewritten = tmp_path / Path(sample).name
    rewritten.write_text(to_delete_side((SAMPLES / sample).read_text(), quote))
    deletes = scan_logs(rewritten, constraint=DEFAULT_FOREIGN_KEY).failures
    assert original and {f.kind for f in original} == {"insert"}
    assert {f.kind for f in deletes} == {"delete"}
    assert [(f.at, f.workspace_id, f.line) for f in deletes] == [(f.at, f.workspace_id, f.line) for f in original]


def test_without_a_created_at_column_the_commit_timestamp_dates_the_row(app_db, tmp_path, pg_server):
    """Issue 10 item 6: ``track_commit_timestamp`` (on in the kit's embedded server) dates the last
    write of rows whose table maps no ``created_at``; the verdict says which it used."""
    alice = uid()
    with psycopg.connect(app_db, autocommit=True) as conn:
        assert conn.execute("show track_commit_timestamp").fetchone()[0] == "on"
        team = str(uuid.uuid4())
        err = fk_error(conn, "insert into app.accounts (account_did, home_team) values (%s, %s)", (alice, team))
        failed_at = datetime.now(timezone.utc)
        time.sleep(0.05)
        conn.execute("insert into app.teams (team_id, name) values (%s, 'late')", (team,))
        created = conn.execute("select pg_xact_commit_timestamp(xmin) from app.teams where team_id = %s",
                               (team,)).fetchone()[0]
    log = tmp_path / "app.log"
    log.write_text(app_record(failed_at, alice, err))
    m = {**APP_MAP, "workspaces": {**APP_MAP["workspaces"], "created_at": ""}}
    [j] = affected(Database(app_db, schema=SchemaMap.from_dict(m)), logs=[log]).failures
    assert j.verdict == "membership_before_workspace" and j.evidence_strength == "recorded"
    text = " ".join(j.evidence)
    assert "commit timestamp of the row's last write" in text and created.strftime("%H:%M:%S") in text
    # with the column mapped, the column is what dates it (and says so)
    [k] = affected(Database(app_db, schema=SchemaMap.from_dict(APP_MAP)), logs=[log]).failures
    assert "its created_at column" in " ".join(k.evidence)
