"""Verdicts for any foreign key from the logs (issue 14, items 1 and 4): ``evidence/generic.py``.

Fast tier: the hand-written logs in ``samples/logs/generic/`` (PostgreSQL's stderr and an
application's JSON lines: a composite key, a self-referencing key, a value holding ", ", a record
without its Detail, both directions) and the pure rule ``decide_generic`` on hand-built evidence.

Real tier (one scenario played once on the embedded server, module fixture): a schema the kit has
never seen (``depot``: a composite key, ON DELETE SET NULL, a NOT VALID key with stored
violations, a self-referencing table) with a minimal audit table; ``log_statement = 'mod'`` on that
database; the server's own log files copied from where the scenario began; an application log
written from the real errors (``str(e)``, and ``e.diag`` as JSON lines); one point-in-time snapshot
before the deletions and one between the stale deletion and its failure.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from incidentkit import Database, SchemaMap, cli
from incidentkit.evidence import registry
from incidentkit.evidence.generic import (KeyEvidence, PathRow, affected_any, constraint_names, decide_generic,
                                          key_timeline, scan_any)
from incidentkit.evidence.model import Deletion, Stamp
from incidentkit.exceptions import ConfigError
from incidentkit.text import iso_utc

SAMPLES = Path(__file__).parent / "samples" / "logs" / "generic"
SNAPSHOTS = Path(__file__).parent / "samples" / "asof" / "snapshots.py"
T0 = datetime(2026, 3, 2, 10, 0, 0, 140000, tzinfo=timezone.utc)


# -- fast: the logs ---------------------------------------------------------------------------------
def test_every_constraint_in_the_logs_is_found_with_its_direction_and_key():
    assert constraint_names(SAMPLES) == ["bins_warehouse_fk", "labels_bin_fk", "parts_parent_fk"]
    scan = scan_any(SAMPLES)
    assert list(scan.by_constraint) == ["bins_warehouse_fk", "labels_bin_fk", "parts_parent_fk"]
    bins = scan.by_constraint["bins_warehouse_fk"]
    assert [(f.direction, f.key, f.key_exact) for f in bins] == [
        ("insert", {"region": "north", "code": "1"}, True),
        ("delete", {"region": "west", "code": "7"}, True),
        ("insert", {}, False),  # no Detail line: the key is unknown
    ]
    # the same failure in the server's log and the application's is one failure, seen in both
    assert {Path(f).name for f, _ in bins[0].places} == {"postgresql", "app.jsonl"}
    assert bins[0].at == T0 and bins[0].table == "bins" and bins[0].referenced_table == "warehouses"
    assert bins[1].table == "bins" and bins[1].referenced_table == "warehouses"
    [parts] = scan.by_constraint["parts_parent_fk"]
    assert parts.key == {"parent_id": "999"} and parts.direction == "insert"
    [labels] = scan.by_constraint["labels_bin_fk"]
    assert labels.key == {"bin_ref": "a, b, c"} and not labels.key_exact and labels.format == "jsonl"
    d = bins[0].to_dict()
    assert {"constraint", "direction", "key", "sources", "at"} <= set(d) and d["key"] == {"region": "north", "code": "1"}
    assert scan.server_files() == [str(SAMPLES / "postgresql")]


def test_one_named_constraint_reads_only_its_own_failures():
    scan = scan_any(SAMPLES, "parts_parent_fk")
    assert list(scan.by_constraint) == ["parts_parent_fk"] and len(scan.failures) == 1
    assert scan_any(SAMPLES, "no_such_fk").failures == []


def test_the_catalogs_columns_name_the_key_without_reading_the_detail_again(monkeypatch):
    from incidentkit.analysis.constraints import ForeignKeyDef
    from incidentkit.evidence import generic

    fk = ForeignKeyDef("bins_warehouse_fk", "depot", "bins", ["region", "code"], "depot", "warehouses",
                       ["region", "code"])
    reread = scan_any(SAMPLES, "bins_warehouse_fk")
    asked: list = []
    real = generic._records
    monkeypatch.setattr(generic, "_records", lambda places: asked.extend(places) or real(places))
    named = scan_any(SAMPLES, "bins_warehouse_fk", definition=fk)
    assert [(f.direction, f.key, f.key_exact, f.places) for f in named.failures] == \
        [(f.direction, f.key, f.key_exact, f.places) for f in reread.failures]
    assert asked == [(str(SAMPLES / "postgresql"), 11)]  # only the record without a Detail is read again


# -- fast: the rule ---------------------------------------------------------------------------------
def ev(**kw) -> KeyEvidence:
    base = dict(failure_at=T0, constraint="bins_warehouse_fk", direction="insert",
                key={"region": "north", "code": "1"}, table="depot.bins", referenced_table="depot.warehouses",
                referenced_key={"region": "north", "code": "1"}, audit=True)
    base.update(kw)
    return KeyEvidence(**base)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_generic_rule_gives_each_verdict_from_its_evidence():
    cases = {
        "concurrent_deletion": ev(deletions=(Deletion(at(-0.05), 91, "audit"),)),
        "stale_read": ev(deletions=(Deletion(at(-30), 90, "audit"),)),
        "dangling_path": ev(path_rows=(PathRow("leases_warehouse_fk", "depot.leases", {"id": 4}),)),
        "key_never_existed": ev(audit_since=at(-3600)),
        "path_before_parent": ev(exists_now=True, creations=(Stamp(at(2), 95, "audit"),)),
        "still_referenced": ev(direction="delete", exists_now=True,
                               referencing_rows=(PathRow("bins_warehouse_fk", "depot.bins", {"id": 7}),)),
        "insufficient_evidence": ev(referenced_key=None, key_problem="The log record has no Detail line"),
    }
    strengths = {"concurrent_deletion": "recorded", "stale_read": "recorded", "dangling_path": "recorded",
                 "key_never_existed": "inferred", "path_before_parent": "recorded", "still_referenced": "recorded",
                 "insufficient_evidence": "none"}
    for verdict, evidence in cases.items():
        d = decide_generic(evidence, window=1.0)
        assert (d.verdict, d.strength) == (verdict, strengths[verdict]), (verdict, d.sentences)
        assert d.sentences[0].startswith("2026-03-02 10:00:00.140")
    assert set(cases) == set(registry.names("generic"))
    still = decide_generic(cases["still_referenced"])
    assert "depot.bins (id=7)" in " ".join(still.sentences)
    assert decide_generic(cases["concurrent_deletion"]).deletion.transaction_id == 91


def test_the_generic_rule_does_not_claim_what_the_sources_cannot_show():
    # logs alone: absence is no proof that the key never existed
    d = decide_generic(ev(audit=False, outside_sources=("server_log",)))
    assert d.verdict == "insufficient_evidence" and "Logs cover only their own time" in " ".join(d.sentences)
    # no source at all
    assert decide_generic(ev(audit=False)).verdict == "insufficient_evidence"
    # probes: absent back to a time -> never existed; a bracket across the window's edge decides nothing
    assert decide_generic(ev(audit=False, outside_sources=("as_of",), absent_since=at(-600), as_of_probes=9)
                          ).verdict == "key_never_existed"
    across = Deletion(at(-0.5), None, "as_of", after=at(-3), probes=12)
    assert decide_generic(ev(audit=False, outside_sources=("as_of",), deletions=(across,)), window=1.0
                          ).verdict == "insufficient_evidence"
    inside = Deletion(at(0), None, "as_of", after=at(-0.005), probes=3, bounded_by_failure=True)
    d = decide_generic(ev(audit=False, outside_sources=("as_of",), deletions=(inside,)), window=1.0)
    assert (d.verdict, d.strength) == ("concurrent_deletion", "bracketed")
    # it exists now and nothing explains the failure
    assert decide_generic(ev(exists_now=True, creations=(Stamp(at(-60), 1),))).verdict == "insufficient_evidence"
    # recreated before the failure: the old deletion does not explain it
    assert decide_generic(ev(deletions=(Deletion(at(-60), 2),), creations=(Stamp(at(-30), 3),))
                          ).verdict == "insufficient_evidence"


def test_the_registry_lists_both_families_and_keeps_the_seeds_six():
    assert registry.NAMES == ("concurrent_deletion", "stale_read", "orphaned_membership", "workspace_never_existed",
                              "membership_before_workspace", "insufficient_evidence")
    assert registry.names("seed") == registry.NAMES
    generic = registry.names("generic")
    assert generic == ("concurrent_deletion", "stale_read", "dangling_path", "key_never_existed",
                       "path_before_parent", "still_referenced", "insufficient_evidence")
    for shared in ("concurrent_deletion", "stale_read", "insufficient_evidence"):
        assert registry.get(shared).family == ("seed", "generic")
    assert "workspace" not in registry.label("concurrent_deletion", "generic")
    assert registry.label("concurrent_deletion") == registry.VERDICTS[0].label
    assert len({registry.get(n).color for n in generic}) == len(generic)
    assert list(registry.frame("generic")["verdict"]) == list(generic)
    with pytest.raises(KeyError, match="family"):
        registry.names("other")


# -- fast: the CLI's bad inputs ---------------------------------------------------------------------
def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_refuses_an_error_text_that_is_no_foreign_key_violation(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IK_GENERIC_NOURL", "postgresql://nobody@127.0.0.1:1/nothing")
    code, out, err = _cli(capsys, "affected", "--database-url-env", "IK_GENERIC_NOURL", "--logs", str(SAMPLES),
                          "--error", 'duplicate key value violates unique constraint "bins_pkey"')
    assert code == 2 and out == "" and err.startswith("error: not a foreign-key violation")
    assert len(err.strip().splitlines()) == 1


# -- real: the scenario ---------------------------------------------------------------------------
SCHEMA = """
create schema audit;
create table audit.logged_actions (
    event_id bigserial primary key, schema_name text not null, table_name text not null,
    action_tstamp_clk timestamptz not null, transaction_id bigint, action char(1) not null, row_data jsonb);
create function audit.if_modified_func() returns trigger language plpgsql as $$
begin
    insert into audit.logged_actions (schema_name, table_name, action_tstamp_clk, transaction_id, action, row_data)
    values (tg_table_schema, tg_table_name, clock_timestamp(), txid_current(), substring(tg_op, 1, 1),
            case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end);
    return null;
end $$;
create schema depot;
create table depot.warehouses (region text not null, code int not null, name text, primary key (region, code));
create table depot.bins (id serial primary key, region text, code int, label text,
    constraint bins_warehouse_fk foreign key (region, code) references depot.warehouses (region, code));
create table depot.shelves (id serial primary key, region text, code int,
    constraint shelves_warehouse_fk foreign key (region, code) references depot.warehouses on delete set null);
create table depot.leases (id int primary key, region text not null, code int not null, tenant text);
create table depot.parts (id int primary key, parent_id int, name text,
    constraint parts_parent_fk foreign key (parent_id) references depot.parts (id));
create table depot.moves (id int not null, region text not null, code int not null, primary key (id, region),
    constraint moves_warehouse_fk foreign key (region, code) references depot.warehouses (region, code))
    partition by list (region);
create table depot.moves_north partition of depot.moves for values in ('north');
create table depot.moves_other partition of depot.moves default;
create trigger a after insert or update or delete on depot.moves for each row execute function audit.if_modified_func();
create trigger a after insert or update or delete on depot.warehouses for each row execute function audit.if_modified_func();
create trigger a after insert or update or delete on depot.bins for each row execute function audit.if_modified_func();
create trigger a after insert or update or delete on depot.leases for each row execute function audit.if_modified_func();
create trigger a after insert or update or delete on depot.parts for each row execute function audit.if_modified_func();
insert into depot.warehouses values ('north', 1, 'N1'), ('north', 2, 'N2'), ('west', 7, 'W7'), ('south', 1, 'S1');
insert into depot.shelves (region, code) values ('north', 1);
insert into depot.bins (region, code, label) values ('west', 7, 'kept');
-- stored violations, then the key NOT VALID: (south, 404) never existed, (east, 5) is created later
insert into depot.leases values (1, 'south', 404, 'acme'), (2, 'east', 5, 'early'), (3, 'south', 1, 'fine');
alter table depot.leases add constraint leases_warehouse_fk foreign key (region, code)
    references depot.warehouses (region, code) not valid;
insert into depot.parts values (1, null, 'root'), (2, 1, 'child');
"""
LOG_FILES = ("postgresql", "postgresql.json")
WINDOW = 0.5


def _wait_for(log_dir: Path, marker: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(marker in (log_dir / f).read_text(errors="replace") for f in LOG_FILES):
            return
        time.sleep(0.1)
    raise AssertionError("the server log never showed the marker")


@pytest.fixture(scope="module")
def depot(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generic")
    name = f"ik_generic_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    with pg_server.admin() as a:
        a.execute(f"alter database \"{name}\" set log_statement = 'mod'")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(SCHEMA)
    snapshots: dict[str, str] = {}
    times: dict[str, datetime] = {}

    def snapshot(label: str) -> None:  # no connection to the database may be open
        times[f"snapshot{label}"] = datetime.now(timezone.utc)
        snap = f"{name}_s{label}"
        with pg_server.admin() as a:
            a.execute(f'create database "{snap}" template "{name}"')
        snapshots[times[f"snapshot{label}"].isoformat()] = pg_server.url(snap)

    snapshot("0")
    time.sleep(0.5)  # the history before the deletions, for the probes to find the keys present in
    offsets = {f: (pg_server.log_dir / f).stat().st_size for f in LOG_FILES}
    app_lines: list[str] = []
    diag_lines: list[str] = []

    def run(sql: str, params=(), app: str = "depot-web", fails: bool = True, label: str = "") -> None:
        with psycopg.connect(url, autocommit=True, application_name=app) as c:
            if not fails:
                c.execute(sql, params)
                times[label] = datetime.now(timezone.utc)
                return
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as e:
                c.execute(sql, params)
            now = datetime.now(timezone.utc)
            times[label] = now
            app_lines.append(f"{iso_utc(now)} error [{app}] request failed: {e.value}")
            d = e.value.diag
            diag_lines.append(json.dumps({"time": iso_utc(now), "level": "error", "msg": d.message_primary,
                                          "detail": d.message_detail, "constraint": d.constraint_name}))

    bin_sql = "insert into depot.bins (region, code, label) values (%s, %s, 'new')"
    run("delete from depot.warehouses where region = 'north' and code = 1", app="depot-admin", fails=False,
        label="deleted_north1")
    run(bin_sql, ("north", 1), label="north1")  # at once: concurrent
    run("delete from depot.warehouses where region = %s and code = %s", ("north", 2), app="depot-admin",
        fails=False, label="deleted_north2")
    snapshot("1")
    time.sleep(max(0.0, 1.1 - (datetime.now(timezone.utc) - times["deleted_north2"]).total_seconds()))
    run(bin_sql, ("north", 2), label="north2")  # 1.1 s later: stale with a 0.5 s window
    run(bin_sql, ("north", 3), label="north3")  # never existed
    run(bin_sql, ("south", 404), label="south404")  # a lease (NOT VALID) points at it
    run(bin_sql, ("east", 5), label="east5")  # created just after
    run("insert into depot.warehouses values ('east', 5, 'E5')", fails=False, label="created_east5")
    run("delete from depot.warehouses where region = 'west' and code = 7", app="depot-admin", label="west7")
    run("insert into depot.moves values (1, 'north', 9)", label="move9")  # a partitioned table
    run("insert into depot.parts values (3, 999, 'orphan')", label="part999")
    run("delete from depot.parts where id = 1", app="depot-admin", label="part1")
    marker = str(uuid.uuid4())
    run("insert into depot.warehouses values (%s, 0, 'marker')", (marker,), fails=False, label="marker")
    _wait_for(pg_server.log_dir, marker)
    server = tmp / "server"
    server.mkdir()
    for f in LOG_FILES:
        with open(pg_server.log_dir / f, "rb") as src:
            src.seek(offsets[f])
            (server / f).write_bytes(src.read())
    app_log = tmp / "app.log"
    app_log.write_text("\n".join(app_lines) + "\n")
    diag_log = tmp / "app-diag.jsonl"
    diag_log.write_text("\n".join(diag_lines) + "\n")
    mapping = tmp / "snapshots.json"
    mapping.write_text(json.dumps(snapshots))
    command = shlex.join([sys.executable, str(SNAPSHOTS), "--map", str(mapping)]) + " {at}"
    # the snapshots are all the history has: no probe may go back past snapshot 0 (a key absent at
    # every probe walks back that far: north3, the first such failure)
    since = (times["north3"] - times["snapshot0"]).total_seconds() - 0.02
    yield {"url": url, "name": name, "times": times, "server": server, "app_log": app_log, "diag_log": diag_log,
           "as_of": command, "since": since}
    with pg_server.admin() as a:
        for db in [name, *(u.rsplit("/", 1)[1] for u in snapshots.values())]:
            a.execute(f'drop database if exists "{db}" with (force)')


def _by_key(result, constraint: str) -> dict[tuple[str, ...], object]:
    return {tuple(j.failure.key.values()): j for j in result.failures if j.failure.constraint == constraint}


@pytest.mark.slow
def test_every_verdict_from_the_audit_table_and_the_server_log(depot):
    db = Database(depot["url"])
    a = affected_any(db, [depot["server"], depot["app_log"]], window=WINDOW)
    assert a.constraint is None
    assert [g.constraint for g in a.groups] == ["bins_warehouse_fk", "moves_warehouse_fk", "parts_parent_fk"]
    bins = _by_key(a, "bins_warehouse_fk")
    assert set(bins) == {("north", "1"), ("north", "2"), ("north", "3"), ("south", "404"), ("east", "5"),
                         ("west", "7")}
    # each failure once, though the server's stderr, its jsonlog and the application log hold it
    assert len([j for j in a.failures if j.failure.constraint == "bins_warehouse_fk"]) == 6
    assert all(len(j.failure.places) == 3 for j in a.failures), [j.failure.places for j in a.failures]

    j = bins[("north", "1")]
    assert (j.verdict, j.evidence_strength, j.deletion.origin) == ("concurrent_deletion", "recorded", "audit")
    assert "Also seen: DELETE in the server log by postgres@" in " ".join(j.evidence)  # corroborated
    j = bins[("north", "2")]
    assert (j.verdict, j.evidence_strength, j.deletion.origin) == ("stale_read", "recorded", "audit")
    assert abs((j.deletion.at - depot["times"]["deleted_north2"]).total_seconds()) < 0.5
    j = bins[("north", "3")]
    assert (j.verdict, j.evidence_strength) == ("key_never_existed", "inferred") and j.deletion is None
    j = bins[("south", "404")]
    assert (j.verdict, j.evidence_strength) == ("dangling_path", "recorded")
    [row] = j.path_rows
    assert (row.constraint, row.table, row.row) == ("leases_warehouse_fk", "depot.leases", {"id": 1})
    assert row.written_at is not None and row.written_at < depot["times"]["south404"]
    j = bins[("east", "5")]
    assert (j.verdict, j.evidence_strength) == ("path_before_parent", "recorded")
    assert "leases_warehouse_fk" in " ".join(j.evidence)  # the lease written before its warehouse
    j = bins[("west", "7")]
    assert (j.failure.direction, j.verdict, j.evidence_strength) == ("delete", "still_referenced", "recorded")
    assert "depot.bins (id=1)" in " ".join(j.evidence)

    [move] = _by_key(a, "moves_warehouse_fk").values()  # on a partitioned table: the error names the partition
    assert (move.failure.key, move.failure.table, move.verdict) == ({"region": "north", "code": "9"}, "moves_north",
                                                                     "key_never_existed")
    parts = _by_key(a, "parts_parent_fk")  # self-referencing: both directions
    assert parts[("999",)].verdict == "key_never_existed" and parts[("999",)].failure.direction == "insert"
    assert parts[("1",)].verdict == "still_referenced" and "depot.parts (id=2)" in " ".join(parts[("1",)].evidence)

    d = a.to_dict()
    assert set(d["by_constraint"]) == {"bins_warehouse_fk", "moves_warehouse_fk", "parts_parent_fk"}
    assert sorted(d["by_constraint"]["bins_warehouse_fk"]["paths"]) == [
        "leases_warehouse_fk", "moves_warehouse_fk", "shelves_warehouse_fk"]
    assert d["by_constraint"]["moves_warehouse_fk"]["definition"]["partitioned"] is True
    assert d["by_constraint"]["bins_warehouse_fk"]["deletion_sources"] == ["audit", "server_log"]
    assert d["by_verdict"] == {"concurrent_deletion": 1, "stale_read": 1, "dangling_path": 1, "key_never_existed": 3,
                               "path_before_parent": 1, "still_referenced": 2, "insufficient_evidence": 0}
    for f in d["failures"]:
        assert {"constraint", "direction", "key", "verdict", "evidence", "deletion", "evidence_strength",
                "sources"} <= set(f)
        assert f["verdict"] in registry.names("generic")
    json.dumps(d)
    assert "bins_warehouse_fk" in a.text() and "still_referenced" in a.text()


@pytest.mark.slow
def test_without_the_audit_table_the_server_log_and_the_probes_decide(depot):
    no_audit = Database(depot["url"], schema=SchemaMap.from_dict({"deletions": {"source": "none"}}))
    a = affected_any(no_audit, [depot["server"]], constraint="bins_warehouse_fk", window=WINDOW)
    bins = _by_key(a, "bins_warehouse_fk")
    j = bins[("north", "1")]
    assert (j.verdict, j.deletion.origin, j.evidence_strength) == ("concurrent_deletion", "server_log", "recorded")
    assert "depot-admin" in j.deletion.who
    assert bins[("north", "2")].verdict == "stale_read" and bins[("north", "2")].deletion.origin == "server_log"
    # logs alone cannot show that a key never existed
    assert bins[("north", "3")].verdict == "insufficient_evidence"

    # only the application log: point-in-time probes bracket the deletions and show the absence
    a = affected_any(no_audit, [depot["app_log"]], constraint="bins_warehouse_fk", window=WINDOW,
                     as_of=depot["as_of"], as_of_since=depot["since"])
    bins = _by_key(a, "bins_warehouse_fk")
    j = bins[("north", "1")]
    assert (j.verdict, j.evidence_strength, j.deletion.origin) == ("concurrent_deletion", "bracketed", "as_of")
    assert 0 < j.as_of_probes <= 40
    j = bins[("north", "2")]
    assert (j.verdict, j.evidence_strength) == ("stale_read", "bracketed")
    assert depot["times"]["deleted_north2"] <= j.deletion.at
    j = bins[("north", "3")]
    assert (j.verdict, j.evidence_strength) == ("key_never_existed", "inferred") and j.as_of_probes > 0
    assert bins[("west", "7")].as_of_probes == 0  # the delete side needs no probe


@pytest.mark.slow
def test_the_applications_diag_log_and_the_pasted_error(depot):
    db = Database(depot["url"])
    error = ('insert or update on table "parts" violates foreign key constraint "parts_parent_fk"\n'
             'DETAIL:  Key (parent_id)=(999) is not present in table "parts".')
    a = affected_any(db, [depot["diag_log"]], error=error, window=WINDOW)
    assert a.constraint == "parts_parent_fk" and [g.constraint for g in a.groups] == ["parts_parent_fk"]
    assert {tuple(j.failure.key.items()): j.verdict for j in a.failures} == {
        (("parent_id", "999"),): "key_never_existed", (("id", "1"),): "still_referenced"}
    with pytest.raises(ConfigError, match="no foreign key named 'bins_fk_typo'"):
        affected_any(db, [depot["diag_log"]], constraint="bins_fk_typo")


@pytest.mark.slow
def test_one_keys_timeline(depot):
    db = Database(depot["url"])
    t = key_timeline(db, "bins_warehouse_fk", ["north", "1"], logs_paths=[depot["server"]], window=WINDOW)
    assert t.key == {"region": "north", "code": "1"} and not t.exists_now
    kinds = [(e.kind, e.source) for e in t.events]
    # the server logs the statement as it starts, the audit row is written as the row goes: either may come first
    assert kinds[0] == ("created", "audit") and set(kinds[1:3]) == {("deleted", "audit"), ("deleted", "server_log")}
    assert kinds[-1] == ("write_failed", "log") and [j.verdict for j in t.failures] == ["concurrent_deletion"]
    assert [e.at for e in t.events] == sorted(e.at for e in t.events)
    d = t.to_dict()
    assert d["by_verdict"]["concurrent_deletion"] == 1 and d["deletion_sources"] == ["audit", "server_log"]

    assert "concurrent_deletion" in t.text() and "audit transaction" in t.text()
    t = key_timeline(db, "bins_warehouse_fk", ["south", "404"])  # no logs: the history alone
    assert t.failures == [] and [(p.constraint, p.row) for p in t.path_rows] == [("leases_warehouse_fk", {"id": 1})]
    assert [e.kind for e in t.events] == ["path_row_written"]
    t = key_timeline(db, "parts_parent_fk", ["1"])  # the delete side: who holds the key
    assert t.exists_now and [p.row for p in t.referencing_rows] == [{"id": 2}]
    with pytest.raises(ConfigError, match="give 2 values, not 1"):
        key_timeline(db, "bins_warehouse_fk", ["north"])
    with pytest.raises(ConfigError, match="not a valid integer"):
        key_timeline(db, "bins_warehouse_fk", ["north", "x'; drop table depot.bins; --"])


@pytest.mark.slow
def test_the_cli_end_to_end_and_its_exit_codes(depot, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IK_GENERIC_URL", depot["url"])
    base = ["affected", "--database-url-env", "IK_GENERIC_URL", "--window", str(WINDOW)]
    code, out, err = _cli(capsys, *base, "--constraint", "bins_warehouse_fk", "--logs", str(depot["server"]),
                          "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["constraint"] == "bins_warehouse_fk" and len(data["failures"]) == 6
    assert {f["direction"] for f in data["failures"]} == {"insert", "delete"}
    assert {"region": "south", "code": "404"} in [f["key"] for f in data["failures"]]

    code, out, err = _cli(capsys, *base, "--all-constraints", "--logs", str(depot["server"]))
    assert code == 0, err
    assert "bins_warehouse_fk" in out and "parts_parent_fk" in out and "still_referenced" in out

    code, out, err = _cli(capsys, *base, "--constraint", "nope_fk", "--logs", str(depot["server"]))
    assert code == 2 and out == "" and err.startswith("error: no foreign key named 'nope_fk'")
    assert len(err.strip().splitlines()) == 1
    code, out, err = _cli(capsys, *base, "--error", "ERROR: relation \"x\" does not exist", "--logs",
                          str(depot["server"]))
    assert code == 2 and err.startswith("error: not a foreign-key violation") and len(err.strip().splitlines()) == 1
    code, out, err = _cli(capsys, *base, "--constraint", "bins_warehouse_fk")
    assert code == 2 and "--logs" in err
    assert depot["url"] not in err

    timeline = ["timeline", "--database-url-env", "IK_GENERIC_URL", "--window", str(WINDOW), "--constraint",
                "bins_warehouse_fk"]
    code, out, err = _cli(capsys, *timeline, "north", "2", "--logs", str(depot["server"]), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["key"] == {"region": "north", "code": "2"} and [f["verdict"] for f in data["failures"]] == ["stale_read"]
    code, out, err = _cli(capsys, *timeline, "north")
    assert code == 2 and err.startswith("error: ") and "2 values" in err and len(err.strip().splitlines()) == 1
