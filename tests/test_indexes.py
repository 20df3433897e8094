"""Index advice: the kit names the indexes its per-user reads need, and the reads use them once created."""

from __future__ import annotations

import psycopg

import incidentkit as ik
from incidentkit.analysis import indexes
from incidentkit.db import queries
from incidentkit.db.demo import INCIDENT_USER


def test_missing_indexes_are_named_with_their_cost(demo_db):
    advice = indexes.index_advice(ik.Database(demo_db))
    missing = {a.key for a in advice if not a.present}
    assert missing == {"(row_data ->> 'user_id')", "(row_data ->> 'workspace_id')", "(row_data ->> 'privy_did')"}
    for a in advice:
        if not a.present:
            assert a.cost_without and a.cost_without > 0 and "Scan" in a.plan_without
            assert a.create.startswith("create index concurrently on \"audit\".\"logged_actions\"")
    assert {a.found for a in advice if a.present} == {
        "workspace_members_user_id_idx", "workspace_members_workspace_id_idx", "logged_actions_row_id_idx"}
    assert "3 of 6 indexes" in indexes.advice_markdown(advice)


def test_created_indexes_are_recognised_and_used(demo_db):
    db = ik.Database(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        for a in indexes.index_advice(db):
            if not a.present:
                conn.execute(a.create)
    advice = indexes.index_advice(db)
    assert all(a.present for a in advice), [a.key for a in advice if not a.present]
    assert indexes.advice_markdown(advice).startswith("Every index")
    # The timeline's audit reads now use them (seq scans disabled so the tiny demo cannot prefer one).
    with db.read() as r:
        r.scalar("select set_config('enable_seqscan', 'off', true)")
        plans = []
        original = r.all

        def explained(sql, params=None):
            r.all = original  # explain_cost reads through r.all itself
            try:
                plans.append(queries.explain_cost(r, sql, params or {})[1])
            finally:
                r.all = explained
            return original(sql, params)

        r.all = explained
        queries.audit_user_rows(r, db.schema, [INCIDENT_USER])
        queries.audit_membership_inserts(r, db.schema, user_ids=[INCIDENT_USER], workspace_ids=[])
    assert "logged_actions_expr" in plans[0] or "Index" in plans[0], plans
    assert all("Seq Scan" not in p for p in plans), plans


def test_a_missing_membership_index_is_reported(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("drop index workspace_members_user_id_idx")
    advice = {a.purpose: a for a in indexes.index_advice(ik.Database(demo_db))}
    gone = advice["a user's memberships"]
    assert not gone.present and gone.create == 'create index concurrently on "public"."workspace_members" ("user_id");'


def test_remediation_file_creates_what_the_advice_asks(demo_db, tmp_path):
    import shutil
    import subprocess

    p = subprocess.run([shutil.which("incidentkit"), "remediation", "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    sql = (tmp_path / "04_investigation_indexes.sql").read_text()
    assert {f.name for f in tmp_path.iterdir()} >= {"01_orphan_memberships_cleanup.sql",
                                                    "04_investigation_indexes.sql"}
    with psycopg.connect(demo_db, autocommit=True) as conn:
        for statement in sql.split(";"):
            body = "\n".join(ln for ln in statement.splitlines() if not ln.startswith("--")).strip()
            if body:
                conn.execute(body)
    assert all(a.present for a in indexes.index_advice(ik.Database(demo_db)))


def test_diagnose_names_the_missing_indexes(demo_db):
    import os
    import shutil
    import subprocess

    p = subprocess.run([shutil.which("incidentkit"), "diagnose"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DATABASE_URL": demo_db})
    assert p.returncode == 0, p.stderr
    missing = [ln for ln in p.stdout.splitlines() if ln.startswith("missing index")]
    assert len(missing) == 3 and all("create index concurrently" in ln and "planner cost" in ln for ln in missing)
