"""The diagnosis against real databases: the demo, broken databases, other schemas, empty ones."""

from __future__ import annotations

import psycopg
import pytest

import incidentkit as ik
from incidentkit.db.demo import EXPECTED, INCIDENT_USER


def test_demo_reproduces_the_report(demo_db):
    d = ik.diagnose(ik.Database(demo_db))
    assert d.figures() == EXPECTED
    assert d.clean and d.samples["invalid_primary_workspace"] == [] and d.samples["orphaned_memberships"] == []
    out = d.to_dict()
    assert set(out) == {*EXPECTED, "foreign_keys", "samples", "snapshot_at"}
    assert out["snapshot_at"].endswith("Z")
    fks = {fk["name"]: fk for fk in out["foreign_keys"]}
    assert fks["users_primary_workspace_id_workspaces_id_fk"] == {
        "name": "users_primary_workspace_id_workspaces_id_fk", "table": "users",
        "columns": ["primary_workspace_id"], "references_table": "workspaces", "references_columns": ["id"],
        "on_delete": "NO ACTION", "validated": True, "deferrable": False}
    assert fks["workspace_members_workspace_id_workspaces_id_fk"]["on_delete"] == "CASCADE"


def test_broken_database_tells_its_truth(broken_db):
    d = ik.diagnose(ik.Database(broken_db))
    assert d.total_users == 3 and d.total_workspaces == 1 and d.total_memberships == 3
    assert d.users_with_invalid_primary_workspace == 2
    assert d.orphaned_memberships == 3
    assert d.users_without_primary_workspace == 0
    assert d.samples["invalid_primary_workspace"] == [
        {"user_id": "did:privy:bad1", "primary_workspace_id": "22222222-2222-4222-8222-222222222222"},
        {"user_id": "did:privy:bad2", "primary_workspace_id": "33333333-3333-4333-8333-333333333333"},
    ]
    assert [r["membership_id"] for r in d.samples["orphaned_memberships"]] == [
        "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002",
        "aaaaaaaa-0000-4000-8000-000000000003"]
    assert not ik.check(d).ok
    assert ik.check(d, max_users_with_invalid_primary_workspace=2, max_orphaned_memberships=3).ok
    assert "not clean" in d.conclusion_markdown()


def test_sample_limit_caps_the_samples(broken_db):
    d = ik.diagnose(ik.Database(broken_db), sample_limit=1)
    assert len(d.samples["invalid_primary_workspace"]) == 1
    assert len(d.samples["orphaned_memberships"]) == 1
    assert d.orphaned_memberships == 3  # the figure is not capped


def test_not_valid_and_deferrable_constraints_are_reported(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("alter table users drop constraint users_primary_workspace_id_workspaces_id_fk")
        conn.execute("alter table users alter primary_workspace_id drop not null")
        conn.execute("insert into users (privy_did, primary_workspace_id) values ('did:privy:n', null),"
                     " ('did:privy:o', '55555555-5555-4555-8555-555555555555')")
        conn.execute("alter table users add constraint users_primary_workspace_id_workspaces_id_fk foreign key "
                     "(primary_workspace_id) references workspaces (id) deferrable initially deferred not valid")
    d = ik.diagnose(ik.Database(fresh_db))
    fk = next(f for f in d.foreign_keys if f["name"] == "users_primary_workspace_id_workspaces_id_fk")
    assert fk["validated"] is False and fk["deferrable"] is True
    assert d.users_without_primary_workspace == 1
    assert d.users_with_invalid_primary_workspace == 1
    assert d.samples["users_without_primary_workspace"] == [{"user_id": "did:privy:n"}]
    assert "NOT VALID" in d.conclusion_markdown()


def test_empty_tables_give_zeros(fresh_db):
    d = ik.diagnose(ik.Database(fresh_db))
    assert d.figures() == dict.fromkeys(EXPECTED, 0)
    assert ik.check(d).ok


def test_mapped_schema(pg_server, empty_db):
    """Other names, schema-qualified, with awkward identifiers: the mapping quotes them."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute('create schema app')
        conn.execute('create table app."Teams" (team_id uuid primary key, made timestamptz default now())')
        conn.execute('create table app.accounts (did text primary key, "home team" uuid, made timestamptz default now())')
        conn.execute('create table app.seats (seat uuid primary key, team uuid, who text, main bool, since timestamptz)')
        conn.execute("""insert into app."Teams" (team_id) values ('11111111-1111-4111-8111-111111111111')""")
        conn.execute("""insert into app.accounts (did, "home team") values
                        ('did:privy:a', '11111111-1111-4111-8111-111111111111'),
                        ('did:privy:b', '99999999-9999-4999-8999-999999999999')""")
        conn.execute("""insert into app.seats values
                        ('aaaaaaaa-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 'did:privy:a', true, now()),
                        ('aaaaaaaa-0000-4000-8000-000000000002', '99999999-9999-4999-8999-999999999999', 'did:privy:b', true, now())""")
    mapping = ik.SchemaMap.from_dict({
        "users": {"table": "app.accounts", "id": "did", "primary_workspace_id": "home team", "created_at": "made"},
        "workspaces": {"table": "app.Teams", "id": "team_id", "created_at": "made"},
        "memberships": {"table": "app.seats", "id": "seat", "workspace_id": "team", "user_id": "who",
                        "is_primary": "main", "joined_at": "since"},
        "deletions": {"source": "none"},
    }, origin="test")
    d = ik.diagnose(ik.Database(empty_db, schema=mapping))
    assert (d.total_users, d.total_workspaces, d.total_memberships) == (2, 1, 2)
    assert d.users_with_invalid_primary_workspace == 1 and d.orphaned_memberships == 1
    assert d.samples["invalid_primary_workspace"] == [
        {"user_id": "did:privy:b", "primary_workspace_id": "99999999-9999-4999-8999-999999999999"}]


def test_mapping_that_does_not_fit_names_everything_missing(empty_db):
    with pytest.raises(ik.SchemaMismatch) as e:
        ik.diagnose(ik.Database(empty_db))
    message = str(e.value)
    for name in ("public.users", "public.workspaces", "public.workspace_members"):
        assert name in message
    # the default audit table is not asked for: its absence is no error (issue 10 item 8)
    assert "audit.logged_actions" not in message
    assert "\n" not in message
    with pytest.raises(ik.SchemaMismatch, match="audit.logged_actions"):
        ik.diagnose(ik.Database(empty_db, schema=ik.SchemaMap.from_dict({"deletions": {"source": "audit"}})))


def test_log_event_rules_are_checked_when_the_mapping_is_read():
    rule = {"table": "workspaces", "pattern": r"DELETE /api/teams/(?P<id>[0-9a-f-]{36}) 2\d\d"}
    m = ik.SchemaMap.from_dict({"deletions": {"log_events": [rule, {**rule, "table": "memberships"}]}})
    assert [r.table for r in m.log_events] == ["workspaces", "memberships"] and not m.audit_explicit
    assert m.log_events[0].pattern.search("DELETE /api/teams/" + "a" * 36 + " 204")
    assert m.describe()["log_events"][0] == rule
    for bad, why in (({**rule, "pattern": "(?P<id>["}, "does not compile"),
                     ({**rule, "pattern": "DELETE (.*)"}, "no named group"),
                     ({**rule, "table": "users"}, "table must be one of"),
                     ({**rule, "extra": 1}, "unknown key"),
                     ("DELETE", "must be a table")):
        with pytest.raises(ik.ConfigError, match=why):
            ik.SchemaMap.from_dict({"deletions": {"log_events": [bad]}})
    with pytest.raises(ik.ConfigError, match="array of tables"):
        ik.SchemaMap.from_dict({"deletions": {"log_events": rule}})


def test_diagnosis_reads_in_a_read_only_snapshot(demo_db):
    db = ik.Database(demo_db)
    with db.read() as r:
        assert r.scalar("show transaction_read_only") == "on"
        assert r.scalar("show transaction_isolation") == "repeatable read"
        assert r.scalar("show statement_timeout") == "30s"
        assert r.scalar("show lock_timeout") == "2s"
        assert r.scalar("show idle_in_transaction_session_timeout") == "1min"
        assert r.scalar("select current_setting('application_name')") == "incidentkit"
        with pytest.raises(ik.QueryFailed):
            with db.translate_errors():
                r.all("insert into workspaces (name) values ('x')")


def test_demo_user_is_not_a_user(demo_db):
    """The failed first login rolled back: the incident's user has no row, and no membership left."""
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("select count(*) from users where privy_did = %s", (INCIDENT_USER,)).fetchone()[0] == 0
        assert conn.execute("select count(*) from workspace_members where user_id = %s",
                            (INCIDENT_USER,)).fetchone()[0] == 0
