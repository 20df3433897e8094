"""The race lab for any foreign key (issue 14, item 5): a scratch copy of the two tables, raced.

The source database is built here from SQL with keys the seed never had: a composite key (MATCH
FULL, text + int, in its own schema), a self-referencing table, ON DELETE SET NULL (bigint, with a
numeric NOT NULL column), a uuid key (DEFERRABLE INITIALLY DEFERRED: checked at commit; with date,
boolean and timestamptz NOT NULL columns), and ON DELETE CASCADE on a domain key next to an enum
column and a generated one. The source is only read; every race runs on a scratch copy.
"""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from incidentkit import cli
from incidentkit.db.connection import Database
from incidentkit.exceptions import ConfigError, UnsafeTarget
from incidentkit.racelab.generic import (
    GENERIC_STRATEGIES,
    Column,
    build_scratch,
    generic_conclusions,
    generic_summary,
    read_definitions,
    run_generic_race_lab,
    value_for,
)

SOURCE_SQL = """
create schema shop;
create table shop.warehouses (
    region text not null, code int not null, name varchar(40) not null,
    opened_at timestamptz not null default now(), primary key (region, code));
create table shop.bins (
    id bigint generated always as identity primary key, region text not null, code int not null,
    label text, active boolean not null default true,
    constraint bins_warehouse_fk foreign key (region, code) references shop.warehouses (region, code) match full);

create table categories (
    id int primary key, parent_id int, name text not null,
    constraint categories_parent_fk foreign key (parent_id) references categories (id));

create table teams (id bigint primary key, title text not null);
create table players (
    id int primary key, team_id bigint, score numeric(10, 2) not null,
    constraint players_team_fk foreign key (team_id) references teams (id) on delete set null);

create table accounts (id uuid primary key, created timestamptz not null, flag boolean not null);
create table sessions (
    token uuid primary key, account_id uuid not null, started date not null,
    constraint sessions_account_fk foreign key (account_id) references accounts (id)
        deferrable initially deferred);

create type mood as enum ('calm', 'busy');
create domain email as text check (value like '%@%');
create table agents (address email primary key, mood mood not null);
create table tickets (
    id int generated always as identity primary key, agent email not null, doubled int generated always as (id * 2) stored,
    constraint tickets_agent_fk foreign key (agent) references agents (address) on delete cascade);

insert into shop.warehouses (region, code, name) values ('north', 1, 'N1');
insert into categories values (1, null, 'root');
"""

CONSTRAINTS = ("bins_warehouse_fk", "categories_parent_fk", "players_team_fk", "sessions_account_fk")
ENV = "IK_GENERIC_RACE_SOURCE"


@pytest.fixture(scope="module")
def source(pg_server):
    """The source database (module-wide: it is only ever read); its URL."""
    name = f"ik_generic_src_{os.getpid()}"
    url = pg_server.create_database(name, replace=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SOURCE_SQL)
    yield url
    pg_server.drop_database(name)


def _definitions(url: str, name: str):
    with Database(url).read() as r:
        return read_definitions(r, name)


def _source_rows(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("shop.warehouses", "shop.bins", "categories", "teams", "players", "accounts", "sessions",
                          "agents", "tickets")}


# -- pure --------------------------------------------------------------------------------------

@pytest.mark.parametrize("type_, category", [
    ("integer", "N"), ("bigint", "N"), ("numeric(10,2)", "N"), ("text", "S"), ("character varying(2)", "S"),
    ("uuid", "U"), ("timestamp with time zone", "D"), ("date", "D"), ("boolean", "B"), ("jsonb", "U"),
])
def test_values_differ_per_seed_and_fit_their_type(type_, category, pg_server):
    col = Column("c", type_, True, category)
    a, b = value_for(col, 1), value_for(col, 2)
    assert a != b
    with pg_server.admin() as conn:  # PostgreSQL itself accepts both as the type, and tells them apart
        same = conn.execute(f"select %s::{type_} = %s::{type_}", (a, b)).fetchone()[0]
    assert same is False


def test_strategies_are_the_briefs_six():
    assert list(GENERIC_STRATEGIES) == ["plain_insert", "check_then_insert", "lock_parent_for_key_share",
                                        "single_statement_insert", "retry_on_23503", "serializable_retry"]


# -- the scratch copy ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CONSTRAINTS)
def test_scratch_copy_matches_the_source_catalog(source, empty_db, name):
    src = _definitions(source, name)
    build_scratch(src, empty_db)
    copy = _definitions(empty_db, name)
    fk_src, fk_copy = src.constraint.to_dict(paths=False), copy.constraint.to_dict(paths=False)
    for k in ("definition",):  # the same key; pg_get_constraintdef may qualify names differently
        fk_src.pop(k), fk_copy.pop(k)
    assert fk_copy == fk_src
    for table in ("child", "parent"):
        s, c = getattr(src, table), getattr(copy, table)
        assert [(x.name, x.type, x.not_null) for x in c.columns] == [(x.name, x.type, x.not_null) for x in s.columns]
        assert c.primary_key == s.primary_key
    assert copy.self_referencing == (name == "categories_parent_fk")
    with psycopg.connect(empty_db) as conn:  # no data copied
        assert conn.execute(f"select count(*) from {src.parent.schema}.{src.parent.name}").fetchone()[0] == 0


def test_types_the_scratch_server_lacks_are_copied_as_their_base_or_text(source, empty_db):
    d = _definitions(source, "tickets_agent_fk")
    notes = "\n".join(d.notes)
    assert "the domain email is copied as its base type text" in notes
    assert "the enum mood is copied as text" in notes
    assert "tickets.doubled: a generated column, left out of the copy" in notes
    assert [c.name for c in d.child.columns] == ["id", "agent"]
    build_scratch(d, empty_db)
    copy = _definitions(empty_db, "tickets_agent_fk")
    assert copy.constraint.on_delete == "CASCADE" and copy.notes == []


@pytest.mark.slow
def test_on_delete_cascade_takes_the_row_with_the_parent(source):
    results = run_generic_race_lab("tickets_agent_fk", source, strategies=["plain_insert"],
                                   interleavings=["no_concurrent_delete", "delete_in_flight_commit"])
    alone, in_flight = results
    assert alone.login_outcome == "ok" and alone.delete_outcome == "ok"
    assert alone.detail["final_state"]["referencing_key_state"] == "no row"  # cascaded away
    assert in_flight.login_outcome == "fk_violation"
    assert any("copied as text" in n for n in alone.detail["copy_notes"])


def test_scratch_refuses_a_database_with_tables(source, fresh_db):
    d = _definitions(source, "players_team_fk")
    with pytest.raises(UnsafeTarget, match="already holds tables"):
        build_scratch(d, fresh_db)


def test_named_constraint_needs_a_source():
    with pytest.raises(ConfigError, match="source"):
        run_generic_race_lab("players_team_fk")


def test_unknown_strategy_is_refused_before_anything_runs(source):
    with pytest.raises(ConfigError, match="unknown strategy"):
        run_generic_race_lab("players_team_fk", source, strategies=["seed_original"])


# -- the race --------------------------------------------------------------------------------------

RACED = ["plain_insert", "lock_parent_for_key_share", "single_statement_insert"]
BETWEEN = ["delete_between_read_and_insert", "delete_in_flight_commit"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONSTRAINTS)
def test_plain_insert_fails_the_locking_strategies_leave_no_orphan(source, name):
    before = _source_rows(source)
    results = run_generic_race_lab(name, source, strategies=RACED, interleavings=BETWEEN + ["no_concurrent_delete"])
    assert len(results) == len(RACED) * 3
    cell = {(r.strategy, r.interleaving): r for r in results}
    for inter in BETWEEN:
        plain = cell["plain_insert", inter]
        assert plain.login_outcome == "fk_violation", plain.detail["summary"]
        assert plain.detail["login_constraint"] == name
        assert not plain.detail["final_state"]["referencing_row_exists"]
        for s in ("lock_parent_for_key_share", "single_statement_insert"):
            r = cell[s, inter]
            assert r.login_outcome == "ok", r.detail["summary"]
            assert r.detail["orphans"] == 0 and not r.detail["lost_deletion"], r.detail["summary"]
            # The parent went first: the lock finds it gone (after waiting for the deletion when it was
            # in flight) and nothing is inserted.
            assert r.detail["inserted"] is False and not r.detail["final_state"]["parent_exists"]
            assert any(w["waiter"] == "login" for w in r.detail["waits"]) == (inter == "delete_in_flight_commit")
    for s in RACED:  # alone, the insert goes through; then the key's action decides the deletion
        r = cell[s, "no_concurrent_delete"]
        assert r.login_outcome == "ok" and r.detail["inserted"], r.detail["summary"]
        if name == "players_team_fk":  # ON DELETE SET NULL: the parent goes, the row stays with a NULL key
            assert r.delete_outcome == "ok"
            assert r.detail["final_state"]["referencing_key_state"] == "null"
        else:  # NO ACTION: the deletion is refused, the row keeps its parent
            assert r.delete_outcome == "fk_violation" and r.detail["delete_constraint"] == name
            assert r.detail["final_state"]["referencing_key_state"] == "the parent's key"
    summary = generic_summary(results)
    assert summary["fail_the_insert"] == ["plain_insert"]
    assert summary["never_fail_and_no_orphan"] == ["lock_parent_for_key_share", "single_statement_insert"]
    assert _source_rows(source) == before  # the source was only read


@pytest.mark.slow
def test_every_strategy_under_every_interleaving(source):
    results = run_generic_race_lab("bins_warehouse_fk", source)
    assert len(results) == len(GENERIC_STRATEGIES) * 5
    json.dumps([r.to_dict() for r in results])
    s = generic_summary(results)
    v = s["strategies"]
    assert set(s["fail_the_insert"]) >= {"plain_insert", "check_then_insert"}
    # The check saw the parent (the deletion not yet committed), the insert waited, the parent went.
    assert v["check_then_insert"]["insert_failures"] == {"delete_in_flight_commit": "fk_violation"}
    assert {"lock_parent_for_key_share", "single_statement_insert", "retry_on_23503",
            "serializable_retry"} <= set(s["never_fail_and_no_orphan"])
    assert v["retry_on_23503"]["attempts_thrown_away"] >= 1
    assert s["leave_an_orphan"] == []
    for r in results:
        if r.interleaving == "no_concurrent_delete":  # alone: inserted, then the deletion is refused
            assert r.login_outcome == "ok" and r.detail["inserted"], (r.strategy, r.detail["summary"])
            assert r.delete_outcome == "fk_violation"
        if r.interleaving == "delete_in_flight_rollback":
            assert r.login_outcome == "ok" and r.detail["inserted"], (r.strategy, r.detail["summary"])
    text = "\n".join(generic_conclusions(results))
    assert "bins_warehouse_fk" in text and "plain_insert fails the insert" in text


# -- the CLI ---------------------------------------------------------------------------------------

def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_cli_races_a_constraint_from_its_error(source, monkeypatch, capsys):
    monkeypatch.setenv(ENV, source)
    error = ('update or delete on table "teams" violates foreign key constraint "players_team_fk" on table "players"\n'
             'DETAIL:  Key (id)=(7) is still referenced from table "players".')
    code, out, err = _run(capsys, "race", "--error", error, "--database-url-env", ENV, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["summary"]["constraint"] == "players_team_fk"
    assert len(data["cells"]) == len(GENERIC_STRATEGIES) * 5
    assert "plain_insert" in data["summary"]["fail_the_insert"]
    assert source not in out + err


def test_cli_unknown_constraint_exits_2(source, monkeypatch, capsys):
    monkeypatch.setenv(ENV, source)
    code, out, err = _run(capsys, "race", "--constraint", "no_such_fk", "--database-url-env", ENV)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "no_such_fk" in err
    assert source not in err


def test_cli_error_that_is_not_a_foreign_key_exits_2(source, monkeypatch, capsys):
    monkeypatch.setenv(ENV, source)
    code, out, err = _run(capsys, "race", "--error", 'duplicate key value violates unique constraint "x_pkey"',
                          "--database-url-env", ENV)
    assert code == 2 and out == ""
    assert err.startswith("error: not a foreign-key violation") and err.count("\n") == 1


def test_cli_constraint_needs_its_database(monkeypatch, capsys):
    monkeypatch.delenv(ENV, raising=False)
    code, out, err = _run(capsys, "race", "--constraint", "players_team_fk", "--database-url-env", ENV)
    assert code == 2 and err.startswith("error: ") and ENV in err


def test_cli_constraint_with_scratch_url_exits_2(source, monkeypatch, capsys):
    monkeypatch.setenv(ENV, source)
    code, out, err = _run(capsys, "race", "--constraint", "players_team_fk", "--database-url-env", ENV,
                          "--scratch-url", "postgresql://u:secret@localhost/x")
    assert code == 2 and err.startswith("error: ") and "secret" not in err
