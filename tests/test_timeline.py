"""Timelines: the demo incident end to end, then users and workspaces built from real rows."""

from __future__ import annotations

import json
from datetime import timedelta

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from incidentkit import ConfigError, Database, config  # noqa: E402
from incidentkit.evidence import (  # noqa: E402
    Timeline,
    WorkspaceTimeline,
    affected,
    default_logs,
    registry,
    user_timeline,
    workspace_timeline,
)
from incidentkit.evidence.logs import scan_logs  # noqa: E402

DEMO_USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"
DEMO_WS = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"


@pytest.fixture(scope="module")
def demo_db():
    return Database.demo()


# -- the demo -------------------------------------------------------------------------------
def test_demo_user_is_a_concurrent_deletion(demo_db):
    tl = user_timeline(demo_db, DEMO_USER)
    d = json.loads(json.dumps(tl.to_dict()))
    assert d["user_id"] == DEMO_USER and d["exists"] is False
    [failure] = d["failures"]
    assert failure["verdict"] == "concurrent_deletion"
    assert failure["at"] == "2025-10-08T09:41:27.164Z" and failure["workspace_id"] == DEMO_WS
    assert failure["seconds_after_deletion"] == pytest.approx(0.046)
    text = " ".join(failure["evidence"])
    assert "2025-10-08 09:41:27.118 UTC" in text and "46 ms before the failure" in text
    assert f"audit transaction {failure['deletion_transaction_id']}" in text
    assert "removed 2 memberships by cascade" in text

    assert [e.at for e in tl.events] == sorted(e.at for e in tl.events)
    deleted = [e for e in d["events"] if e["kind"] == "deleted"]
    assert len(deleted) == 1 and deleted[0]["at"] == "2025-10-08T09:41:27.118Z"
    assert "cascading 2 memberships" in deleted[0]["detail"]
    assert [e["kind"] for e in d["events"] if e["source"] == "memberships"] == ["joined", "removed"]
    assert [e["kind"] for e in d["events"] if e["source"] == "logs" and e["kind"] != "record"] == ["login_failed"]
    assert any("no row in users" in n for n in d["notes"])


def test_demo_defaults_to_its_log(demo_db):
    assert default_logs(demo_db) == config.demo_log_path()
    a = affected(demo_db)
    d = a.to_dict()
    assert d["by_verdict"] == {**{v: 0 for v in registry.NAMES}, "concurrent_deletion": 1}
    assert d["failures"][0]["user_id"] == DEMO_USER
    assert list(a.delay_frame()["seconds_after_deletion"]) == [pytest.approx(0.046)]
    a.plot_delays()


def test_demo_views(demo_db):
    tl = user_timeline(demo_db, DEMO_USER, logs=scan_logs(config.demo_log_path()), window=1.0)
    assert isinstance(tl, Timeline) and tl.window == 1.0
    frame = tl.frame()
    assert list(frame.columns) == ["at", "source", "kind", "workspace_id", "detail"] and len(frame) == len(tl.events)
    md = tl.summary_markdown()
    assert "`concurrent_deletion`" in md and "09:41:27.118 UTC" in md
    ax = tl.plot()
    assert len(ax.figure.axes) == 2  # the weeks-long history, and the milliseconds around the failure
    assert "milliseconds" in ax.figure.axes[1].get_xlabel()
    import matplotlib.pyplot as plt

    _, given = plt.subplots()
    assert tl.plot(ax=given) is given
    plt.close("all")


def test_demo_workspace_timeline(demo_db):
    wt = workspace_timeline(demo_db, DEMO_WS.upper())
    assert isinstance(wt, WorkspaceTimeline) and wt.workspace_id == DEMO_WS and not wt.exists
    d = wt.to_dict()
    assert d["workspace_id"] == DEMO_WS and d["user_id"] is None
    assert [e["kind"] for e in d["events"] if e["source"] == "memberships"] == ["joined", "joined", "removed",
                                                                               "removed"]
    assert d["failures"][0]["verdict"] == "concurrent_deletion"


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", " ", "did:privy:a b", "did:privy:x\ty", "x" * 257])
def test_malformed_user_id(demo_db, bad):
    with pytest.raises(ConfigError):
        user_timeline(demo_db, bad)


@pytest.mark.parametrize("bad", ["", "not-a-uuid", DEMO_WS + "0", "'; drop table users; --"])
def test_malformed_workspace_id(demo_db, bad):
    with pytest.raises(ConfigError):
        workspace_timeline(demo_db, bad)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf")])
def test_bad_window(demo_db, bad):
    with pytest.raises(ConfigError):
        user_timeline(demo_db, DEMO_USER, window=bad)


def test_unknown_user_is_an_empty_timeline(demo_db):
    tl = user_timeline(demo_db, "did:privy:nobodyatall")
    assert tl.events == [] and tl.failures == [] and tl.exists is False
    assert "unknown" in tl.notes[0] and "Did you mean" not in tl.notes[0]
    ax = tl.plot()
    assert list(ax.get_xticks()) == []  # no 1970 time axis on an empty chart
    assert any("unknown" in t.get_text() for t in ax.texts)  # it says what is missing instead
    assert "No failed login" in tl.summary_markdown()


@pytest.mark.parametrize("typed", [DEMO_USER[len("did:privy:"):], DEMO_USER[:-1] + "X", DEMO_USER.upper(),
                                   f"  {DEMO_USER} "])
def test_an_id_typed_slightly_wrong_gets_the_nearest_match(demo_db, typed):
    tl = user_timeline(demo_db, typed)
    if typed.strip() == DEMO_USER:  # surrounding spaces are trimmed: it is the user
        assert tl.user_id == DEMO_USER and tl.failures
    else:
        assert f"Did you mean {DEMO_USER}" in tl.notes[0]


# -- from real rows --------------------------------------------------------------------------
def test_user_history_with_primary_workspace_change(fresh_db, tmp_path, rows):
    user = rows.uid()
    with rows.admin(fresh_db) as conn:
        home = rows.signup(conn, user)
        team = rows.new_workspace(conn, "team")
        rows.add_member(conn, team, user)
        conn.execute("update users set primary_workspace_id = %s where privy_did = %s", (team, user))
        conn.execute("update users set primary_workspace_id = %s where privy_did = %s", (home, user))
        conn.execute("delete from workspaces where id = %s", (team,))
    tl = user_timeline(Database(fresh_db), user)
    assert tl.exists and tl.failures == []
    kinds = [(e.source, e.kind) for e in tl.events]
    assert kinds.count(("users", "primary_workspace_changed")) == 2
    assert ("users", "created") in kinds and ("workspaces", "deleted") in kinds
    change = [e for e in tl.events if e.kind == "primary_workspace_changed"][0]
    assert f"from {home} to {team}" in change.detail
    removed = [e for e in tl.events if e.kind == "removed"]
    assert len(removed) == 1 and "by cascade" in removed[0].detail
    assert any("No logs given" in n for n in tl.notes)


def test_timeline_of_a_failed_login_from_log_paths(fresh_db, tmp_path, rows):
    user = rows.uid()
    with rows.admin(fresh_db) as conn:
        rows.signup(conn, rows.uid())
        ws = rows.new_workspace(conn)
        rows.add_member(conn, ws, user)
        conn.execute("delete from workspaces where id = %s", (ws,))
        now = rows.db_now(conn)
    log = rows.app_log(tmp_path / "app.log", now + timedelta(milliseconds=20), user, ws)
    tl = user_timeline(Database(fresh_db), user, logs=[str(log)])
    assert [j.verdict for j in tl.failures] == ["concurrent_deletion"]
    assert [e.source for e in tl.events if e.kind != "record"] == ["workspaces", "memberships", "workspaces",
                                                                   "memberships", "logs"]
    wt = workspace_timeline(Database(fresh_db), ws, logs=tmp_path)
    assert [j.user_id for j in wt.failures] == [user]
    assert any(e.kind == "deleted" for e in wt.events)


def test_unknown_workspace_timeline(fresh_db):
    import uuid

    wt = workspace_timeline(Database(fresh_db), str(uuid.uuid4()))
    assert wt.events == [] and not wt.exists and "unknown" in wt.notes[0]


def test_timeline_without_deletion_source(fresh_db, tmp_path, rows):
    from incidentkit import SchemaMap

    user = rows.uid()
    with rows.admin(fresh_db) as conn:
        ws = rows.new_workspace(conn)
        rows.add_member(conn, ws, user)
        conn.execute("delete from workspaces where id = %s", (ws,))
        now = rows.db_now(conn)
    db = Database(fresh_db, schema=SchemaMap.from_dict({"deletions": {"source": "none"}}))
    tl = user_timeline(db, user, logs=rows.app_log(tmp_path / "app.log", now, user, ws))
    assert tl.deletion_source == "none"
    assert any("No deletion source" in n for n in tl.notes)
    assert [j.verdict for j in tl.failures] == ["insufficient_evidence"]
    assert not any(e.kind == "deleted" for e in tl.events)
    assert "unknown" in user_timeline(db, rows.uid()).notes[0]


def test_soft_delete_timeline(fresh_db, rows):
    from incidentkit import SchemaMap

    user = rows.uid()
    with rows.admin(fresh_db) as conn:
        conn.execute("alter table workspaces add column deleted_at timestamptz")
        ws = rows.new_workspace(conn)
        rows.add_member(conn, ws, user)
        conn.execute("update workspaces set deleted_at = now() where id = %s", (ws,))
    db = Database(fresh_db, schema=SchemaMap.from_dict({"workspaces": {"deleted_at": "deleted_at"}}))
    tl = user_timeline(db, user)
    assert [(e.source, e.kind) for e in tl.events] == [("workspaces", "created"), ("memberships", "joined"),
                                                       ("workspaces", "deleted")]
    assert "soft-delete" in tl.events[-1].detail


def test_plot_is_redacted_when_the_report_is(demo_db, monkeypatch):
    from incidentkit.evidence.redact import Redactor

    for key, value in Redactor.new(workspaces=True).env().items():
        monkeypatch.setenv(key, value)
    import matplotlib.pyplot as plt

    ax = user_timeline(demo_db, DEMO_USER).plot()
    texts = [a.get_title("left") for a in ax.figure.axes] + [t.get_text() for a in ax.figure.axes for t in a.texts]
    assert texts and not any(DEMO_USER in t or DEMO_WS in t for t in texts)
    plt.close("all")


def test_the_timeline_tells_the_whole_story_and_who_deleted(demo_db):
    """Issue 12 item 5: every log record naming the user or the workspace is on the timeline, and
    the deletion names the request (and user) that asked for it."""
    tl = user_timeline(demo_db, DEMO_USER, logs=config.demo_log_path())
    records = [e for e in tl.events if e.kind == "record"]
    assert any("workspace.delete start" in e.detail for e in records)
    assert any("getOrCreateWorkspaceV2 start" in e.detail for e in records)
    assert not any("violates foreign key constraint" in e.detail for e in records)  # shown as the failure
    [deleted] = [e for e in tl.events if e.kind == "deleted"]
    assert "requested by did:privy:cmepupsjwkkftpvfdaww49bkb (demo-app.log:3, 229 ms before)" in deleted.detail
    ax = tl.plot()
    assert "log record" in [t.get_text() for t in ax.get_legend().get_texts()]
