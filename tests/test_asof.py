"""Point-in-time probes (issue 10, item 5): the search as a pure function, then a real as-of
command (``tests/samples/asof/snapshots.py``) over snapshot databases made with
``CREATE DATABASE ... TEMPLATE`` at points of a history, then every bad input."""

from __future__ import annotations

import itertools
import json
import re
import os
import shlex
import socket
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from incidentkit.db.schema import SchemaMap
from incidentkit.evidence.asof import (AsOfCommand, AsOfProber, Bracket, at_text, exists_at, probe,
                                       probe_times)
from incidentkit.exceptions import AsOfError, ConfigError, IncidentKitError

SAMPLES = Path(__file__).resolve().parent / "samples" / "asof"
FAILURE = datetime(2025, 10, 8, 9, 41, 27, 118000, tzinfo=timezone.utc)
MS = timedelta(milliseconds=1)
CANARY = "npg_CANARY-s3cret"
_n = itertools.count()


def deleted(before: timedelta, created: timedelta | None = None):
    """``present(t)`` of a workspace deleted ``before`` the failure (created ``created`` before it)."""
    def present(at: datetime) -> bool:
        return (created is None or at >= FAILURE - created) and at < FAILURE - before
    return present


def counting(present):
    calls = []

    def wrapped(at):
        calls.append(at)
        return present(at)
    return wrapped, calls


# -- the search, pure --------------------------------------------------------------------
def test_a_deletion_46_ms_before_the_failure_is_bracketed_within_10_ms():
    fn, calls = counting(deleted(46 * MS))
    b = probe(fn, FAILURE)
    deletion = FAILURE - 46 * MS
    assert b.existed_at < deletion <= b.gone_at
    assert b.gone_at - b.existed_at <= 10 * MS
    assert not b.cut and not b.gone_by_failure and b.absent_since is None
    assert b.probes[0] == (FAILURE - 5 * MS, False)  # the first probe: 5 ms before the failure
    assert [at for at, _ in b.probes] == calls  # every probe recorded, in order, none asked twice
    assert len(set(calls)) == len(calls)
    assert b.describe() == (f"existed at 2025-10-08 09:41:27.068 UTC, gone at 2025-10-08 09:41:27.075 UTC, "
                            f"7 ms later ({len(calls)} probes)")


def test_a_deletion_3_days_before_is_found_within_40_probes():
    b = probe(deleted(timedelta(days=3, seconds=17, microseconds=333)), FAILURE)
    deletion = FAILURE - timedelta(days=3, seconds=17, microseconds=333)
    assert b.existed_at < deletion <= b.gone_at
    assert b.gone_at - b.existed_at <= 10 * MS
    assert len(b.probes) <= 40 and not b.cut


@pytest.mark.parametrize("days", [0.001, 0.5, 1, 2, 4, 5.9, 6.99])
def test_any_deletion_within_the_7_days_takes_at_most_40_probes(days):
    b = probe(deleted(timedelta(days=days)), FAILURE)
    assert b.existed_at < FAILURE - timedelta(days=days) <= b.gone_at
    assert b.gone_at - b.existed_at <= 10 * MS
    assert len(b.probes) <= 40 and not b.cut


def test_never_existed_is_absent_at_every_probe_back_to_since():
    b = probe(lambda at: False, FAILURE, since=timedelta(days=7))
    assert b.existed_at is None and b.gone_at is None
    assert b.absent_since == FAILURE - timedelta(days=7)
    assert all(not present for _, present in b.probes)
    assert [at for at, _ in b.probes] == probe_times(FAILURE)
    assert len(b.probes) == 15
    assert b.describe() == "absent at every probe back to 2025-10-01 09:41:27.118 UTC (15 probes)"
    # the walk widens geometrically: each offset 4 times the one before, until since
    offsets = [FAILURE - at for at, _ in b.probes]
    assert offsets[:3] == [5 * MS, 20 * MS, 80 * MS]
    assert all(b_ == 4 * a for a, b_ in zip(offsets[:-2], offsets[1:-1]))


def test_a_workspace_deleted_before_it_was_created_window_is_not_mistaken():
    # created 2 days before, deleted 1 h before: the walk finds it present, bisects the deletion
    b = probe(deleted(timedelta(hours=1), created=timedelta(days=2)), FAILURE)
    assert b.existed_at < FAILURE - timedelta(hours=1) <= b.gone_at


def test_present_at_the_first_probe_is_gone_by_the_failure():
    b = probe(deleted(2 * MS), FAILURE)
    assert b.probes == ((FAILURE - 5 * MS, True),)
    assert b.existed_at == FAILURE - 5 * MS and b.gone_at is None and b.gone_by_failure
    assert b.window == 5 * MS
    assert "which bounds its deletion (1 probe)" in b.describe()
    assert b.to_dict()["gone_by_failure"] is True and b.to_dict()["gone_at"] is None


def test_max_probes_cuts_the_search_and_says_so():
    fn, calls = counting(deleted(timedelta(days=3)))
    b = probe(fn, FAILURE, max_probes=20)
    assert len(calls) == 20 and b.cut
    assert b.existed_at < FAILURE - timedelta(days=3) <= b.gone_at  # the bracket reached, wider
    assert b.gone_at - b.existed_at > 10 * MS
    assert "stopped at the probe limit" in b.describe()

    fn, calls = counting(lambda at: False)
    b = probe(fn, FAILURE, max_probes=5)
    assert len(calls) == 5 and b.cut and b.absent_since == calls[-1]


def test_probe_times_are_whole_milliseconds_and_at_is_iso_with_milliseconds():
    odd = FAILURE.replace(microsecond=118456)
    assert all(at.microsecond % 1000 == 0 for at in probe_times(odd))
    assert at_text(odd) == "2025-10-08T09:41:27.118Z"
    assert at_text(datetime(2025, 10, 8, 9, 41, 27, tzinfo=timezone.utc)) == "2025-10-08T09:41:27.000Z"
    b = probe(deleted(46 * MS), odd)
    assert all(at.microsecond % 1000 == 0 for at, _ in b.probes)


def test_to_dict_uses_iso_times():
    b = probe(deleted(46 * MS), FAILURE)
    d = b.to_dict()
    assert d["failure_at"] == "2025-10-08T09:41:27.118Z"
    assert d["existed_at"] == "2025-10-08T09:41:27.068Z" and d["gone_at"] == "2025-10-08T09:41:27.075Z"
    assert d["probe_count"] == len(d["probes"]) and d["cut"] is False
    assert d["probes"][0] == {"at": "2025-10-08T09:41:27.113Z", "present": False}
    json.dumps(d)
    assert isinstance(b, Bracket)


@pytest.mark.parametrize("kw", [{"since": timedelta(milliseconds=3)}, {"precision": timedelta(0)},
                                {"max_probes": 0}])
def test_bad_search_settings_are_config_errors(kw):
    with pytest.raises(ConfigError):
        probe(lambda at: False, FAILURE, **kw)


# -- the command ----------------------------------------------------------------------------
def python_command(*args: str) -> str:
    return shlex.join([sys.executable, *args])


def assert_one_clean_line(err: IncidentKitError, *forbidden: str) -> str:
    text = str(err)
    assert isinstance(err, AsOfError)
    assert "\n" not in text and text.strip()
    for word in (CANARY, "neon.tech", "127.0.0.1", *forbidden):
        assert word not in text, text
        assert word not in repr(err)
    assert not re.search(r"\w+://\S", text), text  # no URL of any kind
    return text


def test_a_template_without_at_is_a_config_error():
    with pytest.raises(ConfigError, match=r"has no \{at\}"):
        AsOfCommand("neonctl connection-string main --project-id x")
    with pytest.raises(ConfigError):
        AsOfCommand("   ")
    with pytest.raises(ConfigError, match="split like a shell"):
        AsOfCommand("neonctl 'connection-string main@{at}")


def test_the_command_is_split_like_a_shell_and_at_substituted_in_each_argument():
    cmd = AsOfCommand("neonctl connection-string 'main@{at}' --project-id x --api-key=" + CANARY)
    argv = cmd.argv(FAILURE)
    assert argv == ["neonctl", "connection-string", "main@2025-10-08T09:41:27.118Z", "--project-id", "x",
                    "--api-key=" + CANARY]
    assert cmd.name == "neonctl"
    assert CANARY not in repr(cmd) and "project" not in repr(cmd)


def test_stderr_lines_lose_urls_and_the_command_s_tokens():
    cmd = AsOfCommand(f"neonctl connection-string main@{{at}} --project-id x --api-key {CANARY} --token=tok3n")
    line = cmd.scrub(f"401 for key {CANARY} (tok3n) at postgresql://u:pw@ep-1.neon.tech/db host=h password=pw")
    assert line == "401 for key *** (***) at <url> host=h password=***"


def test_a_missing_executable_is_named_by_its_base_name_only():
    cmd = AsOfCommand(f"/nonexistent/dir/neonctl-missing connection-string main@{{at}} --api-key {CANARY}")
    with pytest.raises(AsOfError) as info:
        cmd.url_at(FAILURE)
    text = assert_one_clean_line(info.value, "/nonexistent")
    assert "'neonctl-missing' was not found" in text


def test_a_failing_command_shows_its_last_stderr_line_scrubbed():
    cmd = AsOfCommand(python_command(str(SAMPLES / "misbehave.py"), "exit1", "{at}"))
    with pytest.raises(AsOfError) as info:
        cmd.url_at(FAILURE)
    text = assert_one_clean_line(info.value, "npg_", "ep-quiet-rain", "misbehave.py")
    assert "exited with status 1 for 2025-10-08T09:41:27.118Z" in text
    assert "branch not found" in text  # the useful part of its last stderr line stays


def test_a_command_that_prints_nothing_is_an_error():
    cmd = AsOfCommand(python_command(str(SAMPLES / "misbehave.py"), "silent", "{at}"))
    with pytest.raises(AsOfError, match="printed no URL for 2025-10-08T09:41:27.118Z") as info:
        cmd.url_at(FAILURE)
    assert_one_clean_line(info.value)


def test_a_command_whose_last_line_is_not_a_database_url_is_an_error():
    cmd = AsOfCommand(python_command(str(SAMPLES / "misbehave.py"), "garbage", "{at}"))
    with pytest.raises(AsOfError, match="not a database URL") as info:
        cmd.url_at(FAILURE)
    assert_one_clean_line(info.value, "console.neon", "token")


def test_a_command_over_its_timeout_is_stopped():
    cmd = AsOfCommand(python_command(str(SAMPLES / "misbehave.py"), "sleep", "{at}"), timeout=0.5)
    with pytest.raises(AsOfError, match="did not finish within 0.5 s") as info:
        cmd.url_at(FAILURE)
    assert_one_clean_line(info.value)


def test_a_command_that_floods_stdout_is_stopped():
    cmd = AsOfCommand(python_command(str(SAMPLES / "misbehave.py"), "flood", "{at}"), timeout=30)
    with pytest.raises(AsOfError, match="printed more than 1024 KiB") as info:
        cmd.url_at(FAILURE)
    assert_one_clean_line(info.value)


# -- real snapshots ----------------------------------------------------------------------
WS = "7d1c3a52-4b7e-4c1e-9a55-1f0c2b3d4e5f"
OTHER = "0e6f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"


def url_with_canary(url: str) -> str:
    """The superuser URL with a password in it (the server trusts loopback, so it is ignored)."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{CANARY}@", 1)


@pytest.fixture(scope="module")
def history(pg_server, reference_template, tmp_path_factory):
    """A history of one database as snapshots: T0 before workspace WS existed, T1 while it did,
    T2 after its deletion (OTHER exists throughout, soft-deleted from T1 on); the JSON map of
    time -> URL the sample as-of command reads."""
    pid = os.getpid()
    base = f"ik_asof_{pid}_{next(_n)}"
    base_url = pg_server.create_database(base, template=reference_template)
    times = {"T0": FAILURE - timedelta(days=2), "T1": FAILURE - timedelta(hours=1),
             "T2": FAILURE - timedelta(milliseconds=31, microseconds=400)}
    snaps = {}
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute("alter table workspaces add column archived_at timestamptz")
        conn.execute("insert into workspaces (id, name) values (%s, 'other')", (OTHER,))

    def snapshot(label):
        name = f"{base}_{label.lower()}"
        snaps[label] = name
        return pg_server.create_database(name, template=base)

    urls = {"T0": snapshot("T0")}
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute("insert into workspaces (id, name) values (%s, 'doomed')", (WS,))
        conn.execute("update workspaces set archived_at = now() where id = %s", (OTHER,))
    urls["T1"] = snapshot("T1")
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute("delete from workspaces where id = %s", (WS,))
    urls["T2"] = snapshot("T2")
    mapping = tmp_path_factory.mktemp("asof") / "snapshots.json"
    mapping.write_text(json.dumps({times[k].isoformat(): url_with_canary(u) for k, u in urls.items()}))
    command = python_command(str(SAMPLES / "snapshots.py"), "--map", str(mapping), "{at}")
    yield {"times": times, "urls": {k: url_with_canary(u) for k, u in urls.items()}, "command": command}
    for name in [*snaps.values(), base]:
        pg_server.drop_database(name)


def test_the_sample_command_prints_the_snapshot_url_last(history):
    cmd = AsOfCommand(history["command"])
    assert cmd.url_at(history["times"]["T1"] + 5 * MS) == history["urls"]["T1"]
    assert cmd.url_at(history["times"]["T2"] - MS) == history["urls"]["T1"]  # probe times are whole ms
    assert cmd.url_at(history["times"]["T2"] + MS) == history["urls"]["T2"]
    with pytest.raises(AsOfError, match="exited with status 1") as info:  # before the history
        cmd.url_at(history["times"]["T0"] - timedelta(days=1))
    assert_one_clean_line(info.value, "snapshots.json", "ik_asof")


def test_exists_at_reads_each_snapshot(history):
    schema = SchemaMap.default()
    urls = history["urls"]
    assert exists_at(urls["T0"], schema, [WS, OTHER]) == {OTHER}
    assert exists_at(urls["T1"], schema, [WS, OTHER, "not-a-uuid"]) == {WS, OTHER}  # ids compared as text
    assert exists_at(urls["T2"], schema, [WS, OTHER]) == {OTHER}
    assert exists_at(urls["T2"], schema, []) == set()


def test_a_soft_deleted_row_counts_as_absent(history):
    schema = SchemaMap.from_dict({"workspaces": {"deleted_at": "archived_at"}})
    assert exists_at(history["urls"]["T0"], schema, [WS, OTHER]) == {OTHER}
    assert exists_at(history["urls"]["T1"], schema, [WS, OTHER]) == {WS}


def test_text_ids_work_too(history, pg_server):
    schema = SchemaMap.from_dict({"workspaces": {"table": "public.users", "id": "privy_did"}})
    assert exists_at(history["urls"]["T1"], schema, ["did:privy:nobody"]) == set()


def test_the_probe_connection_is_read_only_and_time_limited(history):
    from incidentkit.evidence.asof import _read_only

    with _read_only(history["urls"]["T1"], 1234, 10) as cur:
        cur.execute("select current_setting('transaction_read_only'), current_setting('statement_timeout'),"
                    " current_setting('application_name')")
        assert cur.fetchone() == ("on", "1234ms", "incidentkit-asof")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            cur.execute("delete from workspaces")


def test_the_prober_brackets_the_deletion_between_two_snapshots(history):
    seen = []
    prober = AsOfProber(AsOfCommand(history["command"], timeout=30), SchemaMap.default(),
                        progress=lambda ws, at, present: seen.append((ws, at, present)))
    b = prober.bracket(WS, FAILURE)
    t1, t2 = history["times"]["T1"], history["times"]["T2"]
    assert t1 <= b.existed_at < t2 <= b.gone_at  # the deletion happened between the snapshots
    assert b.gone_at - b.existed_at <= 10 * MS
    assert not b.cut and not b.gone_by_failure
    assert prober.probes_used == len(b.probes) == len(seen) and b.reused == 0
    assert all(ws == WS for ws, _, _ in seen)
    assert CANARY not in repr(prober) and "postgresql" not in repr(prober)
    assert CANARY not in repr(b) and CANARY not in json.dumps(b.to_dict())

    # a second failure of the same workspace, a little later, reuses the first one's probes
    again = prober.bracket(WS, FAILURE + 60 * MS)
    assert t1 <= again.existed_at < t2 <= again.gone_at
    assert again.reused > 0
    assert prober.probes_used == len(b.probes) + len(again.probes) - again.reused
    assert "reused" in again.describe()


def test_a_workspace_that_never_existed_is_absent_back_to_since(history):
    prober = AsOfProber(AsOfCommand(history["command"], timeout=30), SchemaMap.default(),
                        since=timedelta(days=1))
    b = prober.bracket("11111111-2222-4333-8444-555555555555", FAILURE)
    assert b.existed_at is None and b.absent_since == FAILURE - timedelta(days=1)
    assert prober.probes_used == len(b.probes) == len(probe_times(FAILURE, timedelta(days=1)))


def test_an_unreachable_url_is_one_clean_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"postgresql://neondb_owner:{CANARY}@127.0.0.1:{port}/neondb"
    with pytest.raises(AsOfError) as info:
        exists_at(url, SchemaMap.default(), [WS], at=FAILURE)
    text = assert_one_clean_line(info.value, str(port), "neondb")
    assert text == ("the database the as-of command returned for 2025-10-08T09:41:27.118Z cannot be reached: "
                    "connection refused")


def test_the_prober_reports_a_url_it_cannot_reach(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mapping = tmp_path / "snapshots.json"
    mapping.write_text(json.dumps({(FAILURE - timedelta(days=30)).isoformat():
                                   f"postgresql://u:{CANARY}@127.0.0.1:{port}/neondb"}))
    prober = AsOfProber(AsOfCommand(python_command(str(SAMPLES / "snapshots.py"), "--map", str(mapping), "{at}")),
                        SchemaMap.default())
    with pytest.raises(AsOfError, match="cannot be reached: connection refused") as info:
        prober.bracket(WS, FAILURE)
    assert_one_clean_line(info.value, str(port))


def test_a_database_without_the_mapped_table_is_one_clean_line(history):
    schema = SchemaMap.from_dict({"workspaces": {"table": "app.teams"}})
    with pytest.raises(AsOfError) as info:
        exists_at(history["urls"]["T1"], schema, [WS], at=FAILURE)
    text = assert_one_clean_line(info.value, "ik_asof")
    assert text == ("the database the as-of command returned for 2025-10-08T09:41:27.118Z has no table app.teams "
                    "(check the schema mapping; did the table exist then?)")


def test_a_database_without_the_mapped_column_is_one_clean_line(history):
    schema = SchemaMap.from_dict({"workspaces": {"id": "team_id"}})
    with pytest.raises(AsOfError, match="check the schema mapping of public.workspaces") as info:
        exists_at(history["urls"]["T1"], schema, [WS], at=FAILURE)
    assert_one_clean_line(info.value, "ik_asof")
