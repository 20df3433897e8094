"""Verdicts: the pure rule from evidence records, then every verdict from real data.

The database tests build their data as a user's database holds it: rows written through the
reference schema, audit rows written by the real audit trigger. Where a test needs history
(a deletion an hour ago), it BACK-DATES the trigger's timestamps with an UPDATE, and says so.
Orphaned memberships are written with triggers disabled (``session_replication_role =
replica``, as ``pg_restore --disable-triggers`` does). The race test runs two real sessions
against the embedded server and reads the error from PostgreSQL's own json and csv logs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from incidentkit import ConfigError, Database, SchemaMap
from incidentkit.evidence import registry, rules
from incidentkit.evidence.affected import Affected, affected
from incidentkit.evidence.inputs import check_user_id, check_window, check_workspace_id
from incidentkit.evidence.model import Deletion, Evidence, Judged, MembershipLife, Stamp
from incidentkit.evidence.rules import decide, judge
from incidentkit.text import iso_utc

T = datetime(2025, 10, 8, 9, 41, 27, 164000, tzinfo=timezone.utc)
WS = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"
USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"


def ms(n: float) -> timedelta:
    return timedelta(milliseconds=n)


def ev(**kw) -> Evidence:
    base = dict(failure_at=T, workspace_id=WS, user_id=USER, creations=(Stamp(T - timedelta(days=2), 913),))
    base.update(kw)
    return Evidence(**base)


def membership(joined=T - timedelta(hours=17), removed=None, tx=919, exists=False) -> MembershipLife:
    return MembershipLife("b63f27bf-0745-4072-8590-67c6bb93449d", WS, USER, joined, 918, removed,
                          tx if removed else None, exists, False)


# -- the pure rule ------------------------------------------------------------------------
def test_concurrent_deletion_46_ms_before():
    d = Deletion(T - ms(46), 919, "audit", (("0a67", "did:privy:owner"), ("b63f", USER)))
    verdict, evidence = judge(ev(deletions=(d,), membership=membership(removed=T - ms(44))), 5.0)
    assert verdict == "concurrent_deletion"
    text = "\n".join(evidence)
    assert "2025-10-08 09:41:27.118 UTC" in text and "46 ms before the failure" in text
    assert "audit transaction 919" in text and "removed 2 memberships by cascade" in text
    assert "2025-10-08 09:41:27.164 UTC" in evidence[0]


def test_deletion_after_the_failure_within_window_is_concurrent():
    # the application's clock runs ahead of the database's: the deletion is logged "after"
    verdict, evidence = judge(ev(deletions=(Deletion(T + ms(300), 7),)), 5.0)
    assert verdict == "concurrent_deletion"
    assert any("300 ms after the failure" in s for s in evidence)


@pytest.mark.parametrize("offset_ms, expected", [
    (-5000, "concurrent_deletion"),     # exactly the window: inclusive
    (5000, "concurrent_deletion"),
    (-5001, "stale_read"),              # 1 ms beyond it
    (-4999, "concurrent_deletion"),
])
def test_window_boundaries(offset_ms, expected):
    d = Deletion(T + ms(offset_ms), 11)
    assert judge(ev(deletions=(d,), membership=membership(removed=T + ms(offset_ms), tx=11)), 5.0)[0] == expected


def test_deleted_after_window_is_insufficient():
    verdict, evidence = judge(ev(deletions=(Deletion(T + timedelta(seconds=5.001), 11),)), 5.0)
    assert verdict == "insufficient_evidence"
    assert any("existed when the login ran" in s for s in evidence)


def test_window_parameter_changes_the_verdict():
    d = Deletion(T - timedelta(seconds=3), 11)
    assert judge(ev(deletions=(d,)), 5.0)[0] == "concurrent_deletion"
    assert judge(ev(deletions=(d,)), 1.0)[0] == "stale_read"


def test_stale_read():
    d = Deletion(T - timedelta(hours=1), 42, "audit", (("b63f", USER),))
    verdict, evidence = judge(ev(deletions=(d,), membership=membership(removed=T - timedelta(hours=1), tx=42)))
    assert verdict == "stale_read"
    text = " ".join(evidence)
    assert "1 h 0 min" in text and "replica" in text and "audit transaction 42" in text


def test_membership_outliving_its_workspace_is_an_orphan():
    d = Deletion(T - timedelta(hours=1), 42, "audit", ())
    m = membership(removed=T + timedelta(hours=2), tx=77)
    verdict, evidence = judge(ev(deletions=(d,), membership=m))
    assert verdict == "orphaned_membership"
    assert any("outlived" in s for s in evidence)


def test_orphaned_membership_wins_over_timing():
    d = Deletion(T - ms(10), 5)
    verdict, evidence = judge(ev(deletions=(d,), orphans=("m-1",), membership=membership(exists=True)))
    assert verdict == "orphaned_membership"
    assert "m-1" in evidence[1]


def test_orphan_ignored_when_the_workspace_has_a_row():
    # a membership to an existing workspace is no orphan: the timing decides
    d = Deletion(T - ms(10), 5, "soft_delete")
    e = ev(deletions=(d,), orphans=("m-1",), workspace_row=True, deletion_source="soft_delete")
    assert judge(e)[0] == "concurrent_deletion"


def test_workspace_never_existed():
    verdict, evidence = judge(ev(creations=(), audit_since=T - timedelta(days=40)))
    assert verdict == "workspace_never_existed"
    assert any("never created nor deleted" in s and "2025-08-29" in s for s in evidence)


def test_workspace_never_existed_with_soft_deletes():
    verdict, evidence = judge(ev(creations=(), deletion_source="soft_delete"))
    assert verdict == "workspace_never_existed"
    assert any("soft deletes" in s for s in evidence)


def test_membership_before_workspace():
    e = ev(creations=(Stamp(T + timedelta(seconds=30), 1200),), workspace_row=True, workspace_exists=True,
           membership=membership(joined=T - timedelta(minutes=1), exists=True))
    verdict, evidence = judge(e)
    assert verdict == "membership_before_workspace"
    assert any("30 s after the failure" in s for s in evidence)


def test_created_after_the_failure_and_deleted_later_is_membership_before_workspace():
    e = ev(creations=(Stamp(T + timedelta(minutes=5), 3),), deletions=(Deletion(T + timedelta(hours=1), 4),))
    assert judge(e)[0] == "membership_before_workspace"


def test_exists_now_created_before_is_insufficient():
    e = ev(workspace_row=True, workspace_exists=True)
    verdict, evidence = judge(e)
    assert verdict == "insufficient_evidence"
    assert any("exists now" in s for s in evidence)


def test_no_deletion_source_is_insufficient_and_says_so():
    e = ev(deletion_source="none", creations=())
    verdict, evidence = judge(e)
    assert verdict == "insufficient_evidence"
    assert any("no deletion source" in s for s in evidence)


def test_no_deletion_source_still_finds_orphans():
    assert judge(ev(deletion_source="none", orphans=("m",)))[0] == "orphaned_membership"


def test_created_but_deletion_missing_is_insufficient():
    verdict, evidence = judge(ev())
    assert verdict == "insufficient_evidence"
    assert any("no deletion of it is recorded" in s for s in evidence)


def test_no_workspace_in_the_log():
    verdict, evidence = judge(ev(workspace_id=None))
    assert verdict == "insufficient_evidence"
    assert "names no workspace" in evidence[-1]
    verdict, evidence = judge(ev(workspace_id="not-a-uuid", workspace_id_valid=False))
    assert verdict == "insufficient_evidence"


def test_recreated_workspace_is_insufficient():
    e = ev(creations=(Stamp(T - timedelta(days=3), 1), Stamp(T - timedelta(hours=1), 3)),
           deletions=(Deletion(T - timedelta(days=2), 2),))
    assert judge(e)[0] == "insufficient_evidence"


def test_every_outcome_is_a_verdict():
    outcomes = set()
    for kw in ({}, {"creations": ()}, {"orphans": ("x",)}, {"deletion_source": "none"},
               {"deletions": (Deletion(T, 1),)}, {"deletions": (Deletion(T - timedelta(days=1), 1),)},
               {"creations": (Stamp(T + timedelta(days=1)),), "workspace_row": True, "workspace_exists": True}):
        verdict, evidence = judge(ev(**kw))
        assert verdict in registry.NAMES and evidence
        outcomes.add(verdict)
    assert outcomes == set(registry.NAMES)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "5", None])
def test_window_must_be_positive_finite(bad):
    with pytest.raises(ConfigError):
        check_window(bad)
    with pytest.raises(ConfigError):
        judge(ev(), bad)


def test_id_validation():
    assert check_user_id(USER) == USER
    assert check_user_id(f"  {USER} \n") == USER  # as pasted, with a trailing space or newline
    for bad in ("", " ", "did:privy:a b", "did:privy:a\tb", "did\x00x", "x" * 257, None):
        with pytest.raises(ConfigError) as err:
            check_user_id(bad)
        assert "\n" not in str(err.value)
    assert check_workspace_id(WS.upper()) == WS
    assert check_workspace_id(f" {WS}\n") == WS
    for bad in ("", "a7189b92", "a7189b92ba754160 8fa0426bfe8fa33a", "{" + WS + "}", WS + "x"):
        with pytest.raises(ConfigError):
            check_workspace_id(bad)


def test_affected_by_verdict_lists_all_verdicts():
    j = Judged(T, USER, WS, "stale_read", ["x"], "app.log", 3, T - timedelta(hours=1), 9)
    a = Affected([j], 2, ["app.log"], 5.0)
    d = a.to_dict()
    assert d["by_verdict"] == {**{v: 0 for v in registry.NAMES}, "stale_read": 1}
    assert d["skipped_lines"] == 2
    assert d["failures"][0]["verdict"] == "stale_read" and d["failures"][0]["seconds_after_deletion"] == 3600.0
    assert set(d["failures"][0]) >= {"user_id", "workspace_id", "at", "verdict", "evidence"}
    assert list(a.by_verdict_frame()["failures"]) == [0, 1, 0, 0, 0, 0]
    assert list(a.delay_frame()["seconds_after_deletion"]) == [3600.0]


# -- the registry and the layout ------------------------------------------------------------
def _returned_verdicts() -> set[str]:
    """Every verdict name the rule's source returns (``return "name", sentences``), read from its code."""
    tree = ast.parse(inspect.getsource(rules))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and node.value.elts:
            first = node.value.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def test_every_verdict_the_rules_can_return_is_registered():
    returned = _returned_verdicts()
    assert returned, "found no `return \"verdict\", sentences` in incidentkit.evidence.rules"
    assert returned <= set(registry.NAMES), returned - set(registry.NAMES)
    assert set(registry.NAMES) <= returned, f"registered but never returned: {set(registry.NAMES) - returned}"


def test_registry_entries_are_complete_and_distinct():
    assert registry.NAMES == tuple(v.name for v in registry.VERDICTS)
    for field in ("name", "label", "meaning", "color"):
        values = [getattr(v, field) for v in registry.VERDICTS]
        assert all(isinstance(x, str) and x.strip() for x in values), field
        assert len(set(values)) == len(values), f"two verdicts share a {field}"
    for v in registry.VERDICTS:
        assert registry.get(v.name) is v
        assert registry.label(v.name) == v.label and registry.meaning(v.name) == v.meaning
        assert "\n" not in v.label and "\n" not in v.meaning
    frame = registry.frame()
    assert list(frame["verdict"]) == list(registry.NAMES) and list(frame.columns) == ["verdict", "label", "meaning"]


def test_registry_refuses_an_unknown_verdict(monkeypatch):
    with pytest.raises(KeyError, match="unknown verdict 'stale'"):
        registry.get("stale")
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.VERDICTS[0].label = "changed"
    # judge never hands out a name the registry does not know
    monkeypatch.setattr(rules, "_decide", lambda ev, w: ("made_up", ["x"], None, "none"))
    with pytest.raises(KeyError, match="made_up"):
        judge(ev())


def test_evidence_package_has_no_import_circle():
    """Every ``from .x import`` / ``from . import x`` inside incidentkit.evidence, top level or in a function."""
    package = Path(rules.__file__).parent
    modules = {p.stem for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in modules:
        deps = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:  # `from . import x`: module x, or a name re-exported by the package's __init__
                    deps |= {a.name if a.name in modules else "__init__" for a in node.names}
        graph[name] = deps - {name}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, f"import circle: {' -> '.join(path + [node, dep])}"
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert graph["rules"] <= {"registry", "inputs", "model"}, "the rule must stay pure: no database, no logs"
    assert graph["registry"] == set()


# -- from real data -----------------------------------------------------------------------
def backdate_transaction_of(conn, row_id: str, action: str, by: timedelta) -> int:
    """BACK-DATING: move every audit row of the transaction that wrote ``action`` on ``row_id``
    ``by`` into the past (history the test cannot wait for)."""
    tx = conn.execute("select transaction_id from audit.logged_actions where row_data ->> 'id' = %s and action = %s",
                      (row_id, action)).fetchone()[0]
    conn.execute("update audit.logged_actions set action_tstamp_tx = action_tstamp_tx - %(by)s,"
                 " action_tstamp_stm = action_tstamp_stm - %(by)s, action_tstamp_clk = action_tstamp_clk - %(by)s"
                 " where transaction_id = %(tx)s", {"by": by, "tx": tx})
    return int(tx)


def only(result: Affected, user: str | None = None, ws: str | None = None) -> Judged:
    mine = [j for j in result.failures if (user is None or j.user_id == user) and (ws is None or j.workspace_id == ws)]
    assert len(mine) == 1, [j.to_dict() for j in result.failures]
    return mine[0]


def _wait_for(path: Path, needle: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle} never appeared in {path}")


def test_real_race_between_two_sessions_is_concurrent_deletion(pg_server, fresh_db, rows):
    owner, user = rows.uid(), rows.uid()
    with rows.admin(fresh_db) as conn:
        rows.signup(conn, owner)
        ws = rows.new_workspace(conn, "Design review")
        rows.add_member(conn, ws, owner)
        invite = rows.add_member(conn, ws, user)  # the invite: a membership, no user row yet
    login = psycopg.connect(fresh_db)  # session A: ensureUserWorkspace, in a transaction
    admin_session = rows.admin(fresh_db)  # session B: the workspace's owner deletes it
    try:
        row = login.execute("select workspace_id from workspace_members where user_id = %s"
                            " order by is_primary desc, joined_at desc limit 1", (user,)).fetchone()
        primary = str(row[0])
        admin_session.execute("delete from workspaces where id = %s", (ws,))  # commits (autocommit)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            login.execute("insert into users (privy_did, primary_workspace_id) values (%s, %s)"
                          " on conflict do nothing returning *", (user, primary))
        login.rollback()
    finally:
        login.close()
        admin_session.close()

    db = Database(fresh_db)
    for name in ("postgresql.json", "postgresql.csv"):
        log = pg_server.log_dir / name
        _wait_for(log, user)
        result = affected(db, logs=[log])
        j = only(result, user=user)
        assert j.verdict == "concurrent_deletion", j.evidence
        assert j.workspace_id == ws
        # The failure follows the deletion (the log has milliseconds, the audit microseconds); how
        # long after is the machine's speed, not the kit's behaviour, and the verdict covers it.
        assert j.seconds_after_deletion > -0.01
        text = " ".join(j.evidence)
        assert f"audit transaction {j.transaction_id}" in text
        assert invite in text and "by cascade" in text
        assert result.to_dict()["by_verdict"]["concurrent_deletion"] >= 1


def test_stale_read_from_a_cached_membership(fresh_db, tmp_path, rows):
    user = rows.uid()
    with rows.admin(fresh_db) as conn:
        rows.signup(conn, rows.uid())
        with conn.transaction():
            ws = rows.new_workspace(conn)
            rows.add_member(conn, ws, user)
        backdate_transaction_of(conn, ws, "I", timedelta(hours=2))  # created and joined two hours ago
        conn.execute("delete from workspaces where id = %s", (ws,))
        tx = backdate_transaction_of(conn, ws, "D", timedelta(hours=1))  # the deletion happened an hour ago
        now = rows.db_now(conn)
    result = affected(Database(fresh_db), logs=[rows.app_log(tmp_path / "app.log", now, user, ws)])
    j = only(result, user=user)
    assert j.verdict == "stale_read", j.evidence
    assert j.transaction_id == tx and 3590 < j.seconds_after_deletion < 3700
    assert any("removed" in s and f"audit transaction {tx}" in s for s in j.evidence)


def test_orphaned_membership_restored_without_triggers(fresh_db, tmp_path, rows):
    user, ghost = rows.uid(), str(uuid.uuid4())
    with rows.admin(fresh_db) as conn:
        rows.signup(conn, rows.uid())
        # pg_restore --disable-triggers: no FK check, no audit row
        conn.execute("set session_replication_role = replica")
        orphan = rows.add_member(conn, ghost, user)
        conn.execute("set session_replication_role = origin")
        now = rows.db_now(conn)
    j = only(affected(Database(fresh_db), logs=[rows.app_log(tmp_path / "app.log", now, user, ghost)]), user=user)
    assert j.verdict == "orphaned_membership", j.evidence
    assert orphan in j.evidence[1]


def test_workspace_never_existed_from_rows(fresh_db, tmp_path, rows):
    user, ghost = rows.uid(), str(uuid.uuid4())
    with rows.admin(fresh_db) as conn:
        rows.signup(conn, rows.uid())
        now = rows.db_now(conn)
    j = only(affected(Database(fresh_db), logs=[rows.app_log(tmp_path / "app.log", now, user, ghost)]), user=user)
    assert j.verdict == "workspace_never_existed", j.evidence
    assert any("never created nor deleted" in s for s in j.evidence)


def test_membership_before_workspace_from_rows(fresh_db, tmp_path, rows):
    user, ws = rows.uid(), str(uuid.uuid4())
    with rows.admin(fresh_db) as conn:
        failed_at = rows.db_now(conn) - timedelta(seconds=30)  # the login failed half a minute ago...
        conn.execute("insert into workspaces (id, name) values (%s, 'late')", (ws,))  # ...the workspace came now
        rows.add_member(conn, ws, user)
    j = only(affected(Database(fresh_db), logs=[rows.app_log(tmp_path / "app.log", failed_at, user, ws)]), user=user)
    assert j.verdict == "membership_before_workspace", j.evidence


def test_insufficient_when_the_audit_missed_the_deletion(fresh_db, tmp_path, rows):
    user = rows.uid()
    with rows.admin(fresh_db) as conn:
        ws = rows.new_workspace(conn)
        rows.add_member(conn, ws, user)
        conn.execute("alter table workspaces disable trigger workspaces_audit")
        conn.execute("delete from workspaces where id = %s", (ws,))
        conn.execute("alter table workspaces enable trigger workspaces_audit")
        now = rows.db_now(conn)
    j = only(affected(Database(fresh_db), logs=[rows.app_log(tmp_path / "app.log", now, user, ws)]), user=user)
    assert j.verdict == "insufficient_evidence", j.evidence
    assert any("no deletion of it is recorded" in s for s in j.evidence)


def test_no_deletion_source(fresh_db, tmp_path, rows):
    user = rows.uid()
    with rows.admin(fresh_db) as conn:
        ws = rows.new_workspace(conn)
        rows.add_member(conn, ws, user)
        conn.execute("delete from workspaces where id = %s", (ws,))
        now = rows.db_now(conn)
    db = Database(fresh_db, schema=SchemaMap.from_dict({"deletions": {"source": "none"}}))
    result = affected(db, logs=[rows.app_log(tmp_path / "app.log", now, user, ws)])
    j = only(result, user=user)
    assert j.verdict == "insufficient_evidence"
    assert any("no deletion source" in s for s in j.evidence)
    assert result.to_dict()["deletion_source"] == "none"


def test_soft_deletes(fresh_db, tmp_path, rows):
    racing, stale = rows.uid(), rows.uid()
    with rows.admin(fresh_db) as conn:
        conn.execute("alter table workspaces add column deleted_at timestamptz")
        ws1, ws2 = rows.new_workspace(conn), rows.new_workspace(conn)
        rows.add_member(conn, ws1, racing)
        rows.add_member(conn, ws2, stale)
        now = rows.db_now(conn)
        conn.execute("update workspaces set deleted_at = %s where id = %s", (now - timedelta(milliseconds=200), ws1))
        conn.execute("update workspaces set created_at = %s, deleted_at = %s where id = %s",
                     (now - timedelta(days=3), now - timedelta(days=2), ws2))
    db = Database(fresh_db, schema=SchemaMap.from_dict({"workspaces": {"deleted_at": "deleted_at"}}))
    a = rows.app_log(tmp_path / "a.log", now, racing, ws1)
    b = rows.app_log(tmp_path / "b.log", now, stale, ws2)
    result = affected(db, logs=[a, b])
    assert only(result, user=racing).verdict == "concurrent_deletion"
    assert only(result, user=stale).verdict == "stale_read"
    assert any("soft-delete column" in s for s in only(result, user=racing).evidence)


def test_user_found_through_membership_when_the_log_names_none(fresh_db, tmp_path, rows):
    owner, user = rows.uid(), rows.uid()
    with rows.admin(fresh_db) as conn:
        rows.signup(conn, owner)
        ws = rows.new_workspace(conn)
        rows.add_member(conn, ws, owner)
        rows.add_member(conn, ws, user)
        conn.execute("delete from workspaces where id = %s", (ws,))
        now = rows.db_now(conn)
    j = only(affected(Database(fresh_db), logs=[rows.app_log(tmp_path / "app.log", now, None, ws)]), ws=ws)
    assert j.user_id == user  # the owner has a user row: the newcomer is the one whose first login failed
    assert j.verdict == "concurrent_deletion"
    assert any("names no user" in s for s in j.evidence)


def test_failures_are_judged_in_a_batch(fresh_db, tmp_path, rows, monkeypatch):
    """Evidence for many failures takes the same number of statements as for one."""
    from incidentkit.db.connection import Reader

    users = [rows.uid() for _ in range(4)]
    with rows.admin(fresh_db) as conn:
        wss = [rows.new_workspace(conn) for _ in users]
        for ws, user in zip(wss, users):
            rows.add_member(conn, ws, user)
            conn.execute("delete from workspaces where id = %s", (ws,))
        now = rows.db_now(conn)
    logs = [rows.app_log(tmp_path / f"{i}.log", now, user, ws) for i, (ws, user) in enumerate(zip(wss, users))]
    seen: list = []
    real_all = Reader.all

    def counted_all(self, sql, params=None):
        seen.append(sql)
        return real_all(self, sql, params)

    monkeypatch.setattr(Reader, "all", counted_all)

    def statements(paths) -> tuple[int, Affected]:
        seen.clear()
        result = affected(Database(fresh_db), logs=paths)
        return len(seen), result

    n1, one = statements(logs[:1])
    n4, four = statements(logs)
    assert n1 == n4 > 0
    assert [j.verdict for j in four.failures] == ["concurrent_deletion"] * 4


def test_affected_needs_logs_outside_the_demo(fresh_db):
    with pytest.raises(ConfigError):
        affected(Database(fresh_db))
    with pytest.raises(ConfigError):
        affected(Database(fresh_db), logs=[], window=0)


# -- issue 10: deletions from outside the database, brackets, evidence strength ---------------
def bracket(after_ms: float, at_ms: float, **kw) -> Deletion:
    """A deletion bracketed by point-in-time probes: present ``after_ms``, gone ``at_ms`` (vs. the failure)."""
    return Deletion(T + ms(at_ms), None, "as_of", None, after=T + ms(after_ms), probes=6, **kw)


def no_audit(**kw) -> Evidence:
    return ev(deletion_source="none", creations=(), outside_sources=("server_log", "as_of"), **kw)


@pytest.mark.parametrize("after_ms, at_ms, verdict, strength", [
    (-60, -50, "concurrent_deletion", "bracketed"),       # the whole bracket inside the window
    (-9000, -8990, "stale_read", "bracketed"),            # all of it earlier than the window
    (-5200, -4900, "insufficient_evidence", "none"),      # across the window's edge: undecided
])
def test_a_bracket_decides_only_when_all_of_it_is_on_one_side(after_ms, at_ms, verdict, strength):
    d = decide(no_audit(deletions=(bracket(after_ms, at_ms),)), window=5)
    assert (d.verdict, d.strength) == (verdict, strength)
    if verdict != "insufficient_evidence":
        assert d.deletion.origin == "as_of" and d.deletion.to_dict()["between"][1] == iso_utc(T + ms(at_ms))
    else:
        assert "across the edge" in " ".join(d.sentences)


def test_a_logged_statement_is_recorded_and_preferred_to_the_app_event_and_the_probes():
    logged = Deletion(T - ms(46), None, "server_log", None, where=("pg.log:9",), who="app@db (web-admin)",
                      status="statement logged, commit not observed")
    event = Deletion(T - ms(33), None, "app_log", None, where=("access.log:9",), who="did:privy:admin")
    d = decide(no_audit(deletions=(event, bracket(-50, -40), logged)), window=5)
    assert (d.verdict, d.strength, d.deletion) == ("concurrent_deletion", "recorded", logged)
    text = " ".join(d.sentences)
    assert "by app@db (web-admin)" in text and "commit not observed" in text and "Also seen" in text
    assert d.deletion.to_dict() == {"at": iso_utc(T - ms(46)), "source": "server_log", "strength": "recorded",
                                    "where": ["pg.log:9"], "who": "app@db (web-admin)",
                                    "status": "statement logged, commit not observed"}


def test_absence_at_every_probe_is_never_existed_inferred_but_logs_alone_cannot_say_so():
    d = decide(no_audit(absent_since=T - timedelta(days=7), as_of_probes=15))
    assert (d.verdict, d.strength) == ("workspace_never_existed", "inferred")
    assert "15 probes" in " ".join(d.sentences)
    logs_only = decide(ev(deletion_source="none", creations=(), outside_sources=("server_log",)))
    assert (logs_only.verdict, logs_only.strength) == ("insufficient_evidence", "none")
    assert "--as-of-command" in " ".join(logs_only.sentences)
    nothing = decide(ev(deletion_source="none", creations=()))
    assert nothing.verdict == "insufficient_evidence" and "no deletion source" in " ".join(nothing.sentences)


def test_a_bracket_closed_by_the_failure_itself():
    d = decide(no_audit(deletions=(Deletion(T, None, "as_of", None, after=T - ms(5), probes=1,
                                            bounded_by_failure=True),)))
    assert d.verdict == "concurrent_deletion" and "gone by the failure" in " ".join(d.sentences)


def test_nearest_ids_find_what_was_meant():
    from incidentkit.evidence.inputs import nearest_ids, one_edit_apart

    known = [USER, "did:privy:cmgiqkpg0001wl40cqhofcvo5", "did:privy:zzzz", USER.upper()]
    assert nearest_ids(USER[len("did:privy:"):], known)[:2] == [USER, USER.upper()]  # prefix left out
    assert nearest_ids(USER.replace("4", "X", 1), known) == [USER, USER.upper()]  # one character off
    assert "did:privy:cmgiqkpg0001wl40cqhofcvo5" in nearest_ids(USER, known)
    assert nearest_ids("did:privy:nothing-like-it", known) == []
    assert one_edit_apart("abc", "abxc") and one_edit_apart("abc", "ab") and not one_edit_apart("abc", "xyz")
