"""The demo incident: deterministic, and its audit history holds the incident as the brief tells it."""

from __future__ import annotations

import hashlib

import psycopg

from incidentkit.db import demo


def _fingerprint(url: str) -> str:
    h = hashlib.sha256()
    with psycopg.connect(url) as conn:
        for sql in ("select privy_did, primary_workspace_id, created_at from users order by 1",
                    "select id, name, created_at from workspaces order by 1",
                    "select id, workspace_id, user_id, is_primary, joined_at from workspace_members order by 1",
                    "select table_name, action, action_tstamp_clk, row_data from audit.logged_actions order by event_id"):
            for row in conn.execute(sql):
                h.update(repr(row).encode())
    return h.hexdigest()


def test_generation_is_deterministic(pg_server, demo_db):
    url = demo.load_demo(pg_server, "ik_demo_again")
    try:
        assert _fingerprint(url) == _fingerprint(demo_db)
    finally:
        pg_server.drop_database("ik_demo_again")


def test_audit_log_holds_the_incident(demo_db):
    ws = demo.INCIDENT_WORKSPACE
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            """select table_name, action, action_tstamp_clk, transaction_id, row_data
               from audit.logged_actions
               where row_data ->> 'id' = %(ws)s or row_data ->> 'workspace_id' = %(ws)s order by event_id""",
            {"ws": ws}).fetchall()
        history = [(r[0], r[1]) for r in rows]
        assert history[0] == ("workspaces", "I")
        created_at = rows[0][2]
        invite = next(r for r in rows if r[0] == "workspace_members" and r[1] == "I"
                      and r[4]["user_id"] == demo.INCIDENT_USER)
        assert created_at < invite[2] < demo.DELETED_AT
        deletion = next(r for r in rows if r[0] == "workspaces" and r[1] == "D")
        assert deletion[2] == demo.DELETED_AT
        cascaded = [r for r in rows if r[0] == "workspace_members" and r[1] == "D"]
        assert {r[4]["user_id"] for r in cascaded} >= {demo.INCIDENT_USER}
        assert all(r[3] == deletion[3] for r in cascaded), "the cascade ran in the deleting transaction"
        # The failed login is within the same second as the deletion, after it.
        assert 0 < (demo.FAILED_AT - demo.DELETED_AT).total_seconds() < 1
        assert demo.FAILED_AT.replace(microsecond=0) == demo.DELETED_AT.replace(microsecond=0)
        # History spans the weeks before the diagnosis.
        first, last = conn.execute("select min(action_tstamp_clk), max(action_tstamp_clk) from audit.logged_actions").fetchone()
        assert (demo.DELETED_AT - first).days >= 28 and last <= demo.DELETED_AT.replace(hour=23)


def test_demo_log_has_the_reports_error_text():
    text = demo.config.demo_log_path().read_text()
    assert ('error: insert or update on table "users" violates foreign key constraint '
            '"users_primary_workspace_id_workspaces_id_fk"') in text
    assert (f'Detail: Key (primary_workspace_id)=({demo.INCIDENT_WORKSPACE}) is not present in table '
            '"workspaces".') in text
    assert demo.FAILED_AT.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" in text
    assert demo.INCIDENT_USER in text


def test_ensure_demo_loads_once(pg_server):
    url = demo.ensure_demo(pg_server, "ik_demo_ensure")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table marker_left_by_test (x int)")
        assert demo.ensure_demo(pg_server, "ik_demo_ensure") == url
        with psycopg.connect(url) as conn:  # not reloaded: the marker is still there
            assert conn.execute("select to_regclass('marker_left_by_test') is not null").fetchone()[0]
    finally:
        pg_server.drop_database("ik_demo_ensure")
