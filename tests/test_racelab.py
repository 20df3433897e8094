"""The race lab, run for real on the session's embedded server.

The whole matrix (every strategy x every interleaving) runs once for this module (the
``lab`` fixture, marked slow with every test that reads it); each cell's observed outcomes
are asserted below. The analysis is also checked without a database, on cells built from
the expected table. Then, each on a few cells only: the lab's refusal of databases it does
not own, connection errors without the password, the bounded handling of a step blocked by
a third party, the remediation SQL applied to scratch databases, and the notebook's shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import psycopg
import pytest

import incidentkit.racelab as racelab
from incidentkit.racelab import cells, driver, remediation, safety
from incidentkit.exceptions import ConfigError, ConnectionFailed, UnsafeTarget

LAB_DB = "ik_racelab_matrix"
FK = "users_primary_workspace_id_workspaces_id_fk"
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04-race-lab.ipynb"

SEEDS_THAT_ALWAYS_INSERT = ("seed_original", "seed_option3_cascade")
SEEDS_THAT_VALIDATE = ("seed_option1_validate", "seed_option2_cleanup")
CLOSERS = ("lock_workspace_for_key_share", "retry_on_fk_violation", "serializable_retry")


def _expected() -> dict[tuple[str, str], dict]:
    """Every cell, as observed on PostgreSQL 16: login outcome, its workspace, attempts,
    whether the login waited on the deletion, and the deletion's outcome."""
    exp: dict[tuple[str, str], dict] = {}
    for s in racelab.STRATEGIES:
        exp[(s, "no_concurrent_delete")] = dict(login="ok", ws="original", attempts=1, waited=False,
                                                delete="fk_violation")
        exp[(s, "delete_before_read")] = dict(login="ok", ws="new", attempts=1, waited=False, delete="ok")
        exp[(s, "delete_in_flight_rollback")] = dict(login="ok", ws="original", attempts=1, waited=True, delete="ok")
    for s in SEEDS_THAT_ALWAYS_INSERT:
        exp[(s, "delete_between_read_and_insert")] = dict(login="fk_violation", ws=None, attempts=1, waited=False,
                                                          delete="ok")
    for s in (*SEEDS_THAT_VALIDATE, "lock_workspace_for_key_share"):
        exp[(s, "delete_between_read_and_insert")] = dict(login="ok", ws="new", attempts=1, waited=False, delete="ok")
    for s in ("retry_on_fk_violation", "serializable_retry"):
        exp[(s, "delete_between_read_and_insert")] = dict(login="ok", ws="new", attempts=2, waited=False, delete="ok")
        exp[(s, "delete_in_flight_commit")] = dict(login="ok", ws="new", attempts=2, waited=True, delete="ok")
    for s in (*SEEDS_THAT_ALWAYS_INSERT, *SEEDS_THAT_VALIDATE):
        exp[(s, "delete_in_flight_commit")] = dict(login="fk_violation", ws=None, attempts=1, waited=True, delete="ok")
    exp[("lock_workspace_for_key_share", "delete_in_flight_commit")] = dict(login="ok", ws="new", attempts=1,
                                                                           waited=True, delete="ok")
    return exp


EXPECTED = _expected()


@pytest.fixture(scope="module")
def lab(pg_server):
    """The one full matrix of this module, run on a scratch database of the session's server."""
    pg_server.create_database(LAB_DB, replace=True)
    results = racelab.run_race_lab(scratch_url=pg_server.url(LAB_DB))
    yield {"results": results, "cells": {(r.strategy, r.interleaving): r for r in results}}
    pg_server.drop_database(LAB_DB)


def test_expected_covers_the_whole_matrix():
    assert set(EXPECTED) == {(s, i) for s in racelab.STRATEGIES for i in racelab.INTERLEAVINGS}
    assert racelab.INTERLEAVINGS == ("no_concurrent_delete", "delete_before_read", "delete_between_read_and_insert",
                                     "delete_in_flight_commit", "delete_in_flight_rollback")


@pytest.mark.slow
def test_the_lab_ran_every_cell_within_its_bounds(lab):
    assert len(lab["results"]) == len(racelab.STRATEGIES) * len(racelab.INTERLEAVINGS)
    assert set(lab["cells"]) == set(EXPECTED)
    # Bounded without a wall clock: no cell needed the lab to cancel a statement.
    for r in lab["results"]:
        assert all(w["ended"] != "SQLSTATE 57014" for w in r.detail["waits"]), r.detail["summary"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,interleaving", sorted(EXPECTED))
def test_cell(lab, strategy, interleaving):
    cell = lab["cells"][(strategy, interleaving)]
    exp = EXPECTED[(strategy, interleaving)]
    d = cell.detail
    assert (cell.login_outcome, d["login_workspace"], len(d["login_attempts"]), cell.delete_outcome) == (
        exp["login"], exp["ws"], exp["attempts"], exp["delete"]), d["summary"]

    # The login side's error, as PostgreSQL gives it.
    if exp["login"] == "fk_violation":
        assert FK in cell.login_error
        assert 'is not present in table "workspaces"' in cell.login_error
        assert d["login_sqlstate"] == "23503" and d["login_constraint"] == FK
    else:
        assert cell.login_error is None
    if exp["attempts"] == 2:
        first = d["login_attempts"][0]
        assert first["sqlstate"] == ("40001" if strategy == "serializable_retry" else "23503")
        assert first["step"] == "insert user"
        if strategy == "retry_on_fk_violation":
            assert FK in first["error"]
        # the retry really re-reads: the second attempt found no membership any more
        assert d["login_path"] == "no membership: created a new workspace"

    # The deleting side.
    if exp["delete"] == "fk_violation":
        assert FK in cell.delete_error and 'is still referenced from table "users"' in cell.delete_error
        assert d["delete_sqlstate"] == "23503"
    else:
        assert cell.delete_error is None
        assert d["delete_rows"] == 1
        assert d["delete_end"] == ("rollback" if interleaving == "delete_in_flight_rollback" else "commit")

    # Who waited on whom, seen through pg_blocking_pids.
    if exp["waited"]:
        assert len(d["waits"]) == 1, d["waits"]
        w = d["waits"][0]
        assert (w["waiter"], w["blocked_by"], w["attempt"]) == ("login", ["delete"], 1)
        assert w["wait_event"].startswith("Lock/")
        assert w["seconds"] > 0
        expected_step = ("lock workspace for key share" if strategy == "lock_workspace_for_key_share"
                         else "insert user")
        assert w["step"] == expected_step
    else:
        assert d["waits"] == []

    # What is left afterwards agrees with both sides' outcomes.
    final = d["final_state"]
    committed = cell.delete_outcome == "ok" and d["delete_end"] == "commit"
    assert final["workspace_w_exists"] is (not committed)
    assert final["deletion_audited"] is committed
    assert final["user_primary_workspace"] == d["login_workspace"]
    assert d["lost_deletion"] is False


@pytest.mark.slow
def test_to_dict_has_exactly_the_agreed_keys_and_is_json(lab):
    for cell in lab["results"]:
        d = cell.to_dict()
        assert set(d) == {"strategy", "interleaving", "login_outcome", "delete_outcome", "login_error",
                          "delete_error", "detail"}
        assert d["login_outcome"] in racelab.OUTCOMES and d["delete_outcome"] in racelab.OUTCOMES
        json.dumps(d)


def test_strategies_are_written_out_and_claim_nothing():
    for name, s in racelab.STRATEGIES.items():
        assert s.name == name and s.description and s.typescript.strip()
        assert s.steps and all(sql.strip() for _, sql in s.steps)
        assert "%(" in s.sql  # bound parameters, never interpolated values
        assert not hasattr(s, "closes_race")
    assert ".for('key share')" in racelab.STRATEGIES["lock_workspace_for_key_share"].typescript
    assert "for key share" in racelab.STRATEGIES["lock_workspace_for_key_share"].sql


@pytest.mark.slow
def test_conclusions_derive_from_results(lab):
    lines = racelab.conclusions(lab["results"])
    text = "\n".join(lines)
    for name in racelab.STRATEGIES:
        assert name in text
    for name in CLOSERS:
        assert f"{name} closes the race" in text
    for name in (*SEEDS_THAT_ALWAYS_INSERT, *SEEDS_THAT_VALIDATE):
        assert f"{name} does not close the race" in text
    assert "identical to seed_original's" in text  # option 3 changes nothing: the cascade was already there
    assert "Recommended: lock_workspace_for_key_share" in text
    # Conclusions follow the cells: flip one cell and the sentence changes.
    doctored = [racelab.CellResult(**{**r.to_dict(), "login_outcome": "fk_violation"})
                if (r.strategy, r.interleaving) == ("serializable_retry", "delete_in_flight_rollback") else r
                for r in lab["results"]]
    assert "serializable_retry does not close the race" in "\n".join(racelab.conclusions(doctored))


@pytest.mark.slow
def test_recommended_is_the_cheapest_closer(lab):
    fix = racelab.recommended(lab["results"])
    assert fix.name == "lock_workspace_for_key_share"
    assert ".for('key share')" in fix.typescript
    verdicts = racelab.verdicts(lab["results"])
    assert {n for n, v in verdicts.items() if v.closes_race} == set(CLOSERS)
    assert verdicts["retry_on_fk_violation"].attempts_thrown_away == 2


@pytest.mark.slow
def test_matrix_and_styles(lab):
    frame = racelab.matrix_frame(lab["results"])
    assert list(frame.index) == list(racelab.STRATEGIES)
    assert list(frame.columns) == list(racelab.INTERLEAVINGS)
    assert frame.loc["seed_original", "delete_between_read_and_insert"].startswith("login fk_violation")
    html = racelab.styled_matrix(lab["results"]).to_html()
    assert "#f8d7da" in html and "#fff3cd" in html and "#d4edda" in html
    waits = racelab.waits_frame(lab["results"])
    assert len(waits) == sum(1 for e in EXPECTED.values() if e["waited"])
    assert set(waits["waiter"]) == {"login"}


# -- the analysis alone, on cells built from the expected table (no database) ----------------

def _synthetic_cell(strategy: str, interleaving: str) -> racelab.CellResult:
    """A cell as the lab records it, with the outcomes of :data:`EXPECTED` (timings made up)."""
    exp = EXPECTED[(strategy, interleaving)]
    rollback = interleaving == "delete_in_flight_rollback"
    committed = exp["delete"] == "ok" and not rollback
    retried = "serialization_failure" if strategy == "serializable_retry" else "fk_violation"
    attempts = [{"attempt": n, "outcome": retried, "step": "insert user"} for n in range(1, exp["attempts"])]
    last = ({"outcome": "ok", "path": "membership: used its workspace"} if exp["login"] == "ok"
            else {"outcome": exp["login"], "step": "insert user"})
    attempts.append({"attempt": exp["attempts"], **last})
    waits = ([{"waiter": "login", "blocked_by": ["delete"], "step": "insert user", "attempt": 1,
               "seconds": 0.01, "wait_event": "Lock/transactionid", "ended": "ok"}] if exp["waited"] else [])
    detail = {
        "login_workspace": exp["ws"], "login_attempts": attempts, "waits": waits,
        "login_constraint": FK if exp["login"] == "fk_violation" else None, "login_statements": 5,
        "delete_end": "rollback" if rollback else "commit", "delete_rows": 1 if exp["delete"] == "ok" else None,
        "delete_constraint": FK if exp["delete"] == "fk_violation" else None,
        "final_state": {"workspace_w_exists": not committed, "deletion_audited": committed},
        "lost_deletion": False, "statements": [], "server": "PostgreSQL 16 (synthetic)",
        "setup": {f: {"ran": True, "orphaned_memberships_before": 0} for f in racelab.STRATEGIES[strategy].setup_files},
    }
    return racelab.CellResult(strategy, interleaving, exp["login"], exp["delete"],
                              None if exp["login"] == "ok" else "error", None if exp["delete"] == "ok" else "error",
                              detail)


def test_analysis_reads_only_the_cells():
    results = [_synthetic_cell(s, i) for s in racelab.STRATEGIES for i in racelab.INTERLEAVINGS]
    verdicts = racelab.verdicts(results)
    assert {n for n, v in verdicts.items() if v.closes_race} == set(CLOSERS)
    assert verdicts["retry_on_fk_violation"].attempts_thrown_away == 2
    assert racelab.recommended(results).name == "lock_workspace_for_key_share"
    text = "\n".join(racelab.conclusions(results))
    for name in CLOSERS:
        assert f"{name} closes the race" in text
    for name in (*SEEDS_THAT_ALWAYS_INSERT, *SEEDS_THAT_VALIDATE):
        assert f"{name} does not close the race" in text
    assert "identical to seed_original's" in text and "Recommended: lock_workspace_for_key_share" in text
    assert racelab.summary(results) == {"cells": len(EXPECTED), "closes_race": sorted(CLOSERS),
                                        "does_not_close": sorted(set(racelab.STRATEGIES) - set(CLOSERS)),
                                        "recommended": "lock_workspace_for_key_share"}
    frame = racelab.matrix_frame(results)
    assert list(frame.index) == list(racelab.STRATEGIES) and list(frame.columns) == list(racelab.INTERLEAVINGS)
    cleanup = racelab.render_remediation("01_orphan_memberships_cleanup.sql", results, when="today")
    assert "@VERIFIED@" not in cleanup and "Race closed by seed_option2_cleanup: no" in cleanup
    fix = racelab.fix_markdown(racelab.recommended(results))
    assert ".for('key share')" in fix and "for key share" in fix


# -- the target: refusals and errors ---------------------------------------------------------

def test_refuses_a_database_holding_other_tables(pg_server):
    name = "ik_racelab_foreign"
    pg_server.create_database(name, replace=True)
    with pg_server.admin(name) as conn:
        conn.execute("create table public.customers (id int primary key, email text)")
    try:
        with pytest.raises(UnsafeTarget) as err:
            racelab.run_race_lab(scratch_url=pg_server.url(name), strategies=["seed_original"])
        assert "\n" not in str(err.value) and "public.customers" in str(err.value)
        with pg_server.admin(name) as conn:  # nothing was touched
            assert conn.execute("select count(*) from pg_namespace where nspname = 'incidentkit_racelab'"
                                ).fetchone()[0] == 0
            assert conn.execute("select to_regclass('public.workspaces')").fetchone()[0] is None
    finally:
        pg_server.drop_database(name)


def test_refuses_a_database_holding_a_foreign_table(pg_server):
    name = "ik_racelab_fdw"
    pg_server.create_database(name, replace=True)
    with pg_server.admin(name) as conn:
        conn.execute("create foreign data wrapper ik_dummy_fdw")
        conn.execute("create server ik_remote foreign data wrapper ik_dummy_fdw")
        conn.execute("create foreign table public.remote_accounts (id int) server ik_remote")
    try:
        with pytest.raises(UnsafeTarget, match="public.remote_accounts"):
            racelab.run_race_lab(scratch_url=pg_server.url(name))
    finally:
        pg_server.drop_database(name)


def test_refuses_application_tables_it_did_not_create(fresh_db):
    # The reference schema, as a real database would have it, but no race lab marker.
    with pytest.raises(UnsafeTarget, match="did not create"):
        racelab.run_race_lab(scratch_url=fresh_db, strategies=["seed_original"])


def test_reuses_its_own_database(pg_server):
    name = "ik_racelab_reuse"
    pg_server.create_database(name, replace=True)
    try:
        for _ in range(2):
            cells = racelab.run_race_lab(scratch_url=pg_server.url(name), strategies=["seed_original"],
                                         interleavings=["delete_between_read_and_insert"])
            assert [c.login_outcome for c in cells] == ["fk_violation"]
    finally:
        pg_server.drop_database(name)


def test_never_reads_database_url(pg_server, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://prod:prod-secret@127.0.0.1:1/production")
    name = "ik_racelab_env"
    pg_server.create_database(name, replace=True)
    try:
        cells = racelab.run_race_lab(scratch_url=pg_server.url(name), strategies=["seed_original"],
                                     interleavings=["no_concurrent_delete"])
        assert cells[0].login_outcome == "ok"
    finally:
        pg_server.drop_database(name)


def test_connection_failure_hides_the_password(pg_server):
    with pg_server.admin() as conn:
        conn.execute("drop role if exists ik_racelab_role")
        conn.execute("create role ik_racelab_role login password 'right-pass-123'")
    url = pg_server.url("postgres", user="ik_racelab_role", password="wrong-pass-456")
    with pytest.raises(ConnectionFailed) as err:
        racelab.run_race_lab(scratch_url=url)
    message = str(err.value)
    assert "wrong-pass-456" not in message and "right-pass-123" not in message
    assert "\n" not in message and "password authentication failed" in message
    closed = "postgresql://someone:hunter2-secret@127.0.0.1:1/scratch"
    with pytest.raises(ConnectionFailed) as err:
        racelab.run_race_lab(scratch_url=closed)
    assert "hunter2-secret" not in str(err.value)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        racelab.run_race_lab(scratch_url="not a url = = =")
    with pytest.raises(ConfigError, match="unknown strategy"):
        racelab.run_race_lab(scratch_url="postgresql://x@127.0.0.1:1/x", strategies=["nope"])
    with pytest.raises(ConfigError, match="unknown interleaving"):
        racelab.run_race_lab(scratch_url="postgresql://x@127.0.0.1:1/x", interleavings=["nope"])


# -- a step blocked by a third party ends as `blocked`, bounded ----------------------------

def _third_party_holding_user_row(url: str):
    """An open transaction that has inserted the lab's user (primary workspace elsewhere)."""
    conn = psycopg.connect(url)
    ws = conn.execute("insert into workspaces (name) values ('elsewhere') returning id").fetchone()[0]
    conn.execute("insert into users (privy_did, primary_workspace_id) values (%s, %s)", (cells.USER_ID, ws))
    return conn


def _blocked_cell(pg_server, name: str):
    pg_server.create_database(name, replace=True)
    url = pg_server.url(name)
    safety.prepare_database(url)
    lab = driver._Lab(url)
    holder: list = []
    try:
        return lab.run_cell(racelab.STRATEGIES["seed_original"], "no_concurrent_delete",
                            after_reset=lambda: holder.append(_third_party_holding_user_row(url)))
    finally:
        for conn in holder:
            conn.rollback()
            conn.close()
        lab.close()
        pg_server.drop_database(name)


def test_step_blocked_after_the_other_side_finished_is_cancelled_as_blocked(pg_server):
    cell = _blocked_cell(pg_server, "ik_racelab_blocked")
    assert cell.login_outcome == "blocked"
    assert cell.delete_outcome == "ok"  # the deletion was not involved and committed
    (wait,) = cell.detail["waits"]
    assert wait["waiter"] == "login" and wait["step"] == "insert user"
    assert wait["blocked_by"][0].startswith("pid ")  # neither side: the third party
    assert wait["seconds"] >= driver.BLOCKED_GRACE_SECONDS  # the lab gave it the grace, then cancelled
    assert wait["ended"] == "SQLSTATE 57014"
    # Bounded: the cancel came from the grace after the deletion finished (the lock_timeout
    # of 5 s would end it as 55P03 instead), not from the cell's own bound.
    assert cell.detail["login_sqlstate"] == "57014"
    assert driver.LOCK_TIMEOUT == "5s" and driver.CELL_TIMEOUT_SECONDS > 5


def test_step_blocked_past_lock_timeout_ends_blocked(pg_server, monkeypatch):
    monkeypatch.setattr(driver, "LOCK_TIMEOUT", "300ms")
    monkeypatch.setattr(driver, "BLOCKED_GRACE_SECONDS", 30.0)
    cell = _blocked_cell(pg_server, "ik_racelab_locktimeout")
    assert cell.login_outcome == "blocked"
    # Ended by PostgreSQL's lock_timeout (55P03), not by the lab's 30 s grace (57014).
    assert cell.detail["login_sqlstate"] == "55P03"
    assert "lock timeout" in cell.login_error
    (wait,) = cell.detail["waits"]
    assert wait["seconds"] >= 0.25 and wait["ended"] == "SQLSTATE 55P03"


# -- remediation SQL -----------------------------------------------------------------------

@pytest.mark.slow
def test_remediation_files_are_written_and_run(lab, tmp_path, fresh_db):
    paths = racelab.write_remediation(tmp_path / "remediation", results=lab["results"])
    assert [p.name for p in paths] == list(racelab.REMEDIATION_FILES)
    texts = {p.name: p.read_text() for p in paths}
    for name, text in texts.items():
        assert "@VERIFIED@" not in text
        assert text.startswith(f"-- {name}")
        assert "What it does" in text and "Verified" in text and "PostgreSQL 16" in text
        assert "never runs this file" in text
    assert "seed_option2_cleanup" in texts["01_orphan_memberships_cleanup.sql"]
    assert "Race closed by seed_option2_cleanup: no" in texts["01_orphan_memberships_cleanup.sql"]
    assert "Race closed by seed_option3_cascade: no" in texts["02_workspace_members_cascade.sql"]
    assert "logged in audit.logged_actions in 21 of the 21 cells" in texts["03_audit_trigger.sql"]

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        # Over the reference schema: every file runs (idempotent where it must be).
        for p in paths:
            conn.execute(p.read_text())
        # Make an orphan the way a database without the cascade could: the cleanup removes it,
        # then the cascade migration puts the constraint back and validates it.
        conn.execute("alter table workspace_members drop constraint workspace_members_workspace_id_workspaces_id_fk")
        conn.execute("insert into workspace_members (workspace_id, user_id) values (gen_random_uuid(), 'orphan')")
        conn.execute(texts["01_orphan_memberships_cleanup.sql"])
        assert conn.execute("select count(*) from workspace_members").fetchone()[0] == 0
        conn.execute(texts["02_workspace_members_cascade.sql"])
        fk = conn.execute("select pg_get_constraintdef(oid), convalidated from pg_constraint "
                          "where conname = 'workspace_members_workspace_id_workspaces_id_fk'").fetchone()
        assert "ON DELETE CASCADE" in fk[0] and fk[1] is True
        # A database without an audit log: the audit file installs one that records deletions.
        conn.execute("drop schema audit cascade")
        conn.execute(texts["03_audit_trigger.sql"])
        ws = conn.execute("insert into workspaces (name) values ('x') returning id").fetchone()[0]
        conn.execute("delete from workspaces where id = %s", (ws,))
        assert conn.execute("select count(*) from audit.logged_actions where action = 'D' "
                            "and row_data ->> 'id' = %s", (str(ws),)).fetchone()[0] == 1


def test_write_remediation_runs_the_lab_when_given_no_results(pg_server, tmp_path, monkeypatch):
    # The lab runs for real on the given scratch database, narrowed to two cells (the full
    # matrix is the ``lab`` fixture's job).
    calls = []

    def narrowed(scratch_url=None, **kwargs):
        calls.append((scratch_url, kwargs))
        return driver.run_race_lab(scratch_url, strategies=["seed_option2_cleanup", "seed_option3_cascade"],
                                   interleavings=["delete_between_read_and_insert"])

    monkeypatch.setattr(remediation, "run_race_lab", narrowed)
    name = "ik_racelab_remediation"
    pg_server.create_database(name, replace=True)
    try:
        paths = racelab.write_remediation(tmp_path, scratch_url=pg_server.url(name))
        assert len(paths) == 3 and all(p.exists() for p in paths)
        assert calls == [(pg_server.url(name), {})]
        header = " ".join((tmp_path / "01_orphan_memberships_cleanup.sql").read_text().replace("--", " ").split())
        # The header reports that run's cells (in the full matrix this strategy does not close the race).
        assert "Observed with it (seed_option2_cleanup): delete_between_read_and_insert: login ok (new)" in header
        assert "Race closed by seed_option2_cleanup: yes" in header
    finally:
        pg_server.drop_database(name)


# -- the notebook ----------------------------------------------------------------------------

def test_notebook_shape():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["language_info"]["name"] == "python"
    assert nb.cells[0].cell_type == "markdown"
    assert nb.cells[1].cell_type == "code" and nb.cells[1].metadata.get("tags") == ["parameters"]
    assert "scratch_url = None" in nb.cells[1].source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
            assert not any(line.lstrip().startswith(("def ", "class ")) for line in cell.source.splitlines())
    assert "DATABASE_URL" not in "".join(c.source for c in nb.cells if c.cell_type == "code")
