"""Deletions and creations read from the PostgreSQL server log (``evidence/server_log.py``).

Two tiers: pure functions over the SQL and prefixes, and over ``tests/samples/logs/server/``
(the three log files a real embedded PostgreSQL 16 wrote with ``log_statement = 'mod'``; see the
README there); then the real server: the session's embedded PostgreSQL with
``ALTER DATABASE ... SET log_statement = 'mod'`` on fresh databases, read back from its log folder.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from incidentkit.db.schema import SchemaMap
from incidentkit.evidence.server_log import (
    DEFAULT_PREFIXES,
    STATUS_FAILED,
    STATUS_LOGGED,
    WatchedTable,
    iter_server_log_events,
    parse_array_literal,
    parse_parameters,
    prefix_pattern,
    scan_server_logs,
    statement_changes,
    watched_tables,
)
from incidentkit.exceptions import ConfigError, LogReadError

SAMPLES = Path(__file__).parent / "samples" / "logs" / "server"
STDERR, CSV, JSON = SAMPLES / "postgresql", SAMPLES / "postgresql.csv", SAMPLES / "postgresql.json"
#: The sample's stderr file changes prefix halfway (ALTER SYSTEM, reload), as a real server's may.
SAMPLE_PREFIXES = ["%m [%p] %q%u@%d/%a ", "%t [%p] %c %x %d "]


def ws(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def keys(change) -> dict:
    return {c: list(v) for c, v in change.keys}


# -- log_line_prefix ------------------------------------------------------------------------
def test_default_prefix_reads_the_default_stderr_line():
    m = prefix_pattern("%m [%p] ").match("2025-10-08 09:41:27.118 UTC [4242] LOG:  statement: delete from x")
    assert m and m["ts"] == "2025-10-08 09:41:27.118 UTC" and m["pid"] == "4242" and m["sev"] == "LOG"
    assert m["msg"] == "statement: delete from x"


def test_prefix_with_t_c_x_d_reads_the_real_servers_line():
    line = next(t for t in STDERR.read_text().splitlines() if "6b067680.7e3c 0 ik_app LOG:  statement:" in t)
    m = prefix_pattern("%t [%p] %c %x %d ").match(line)
    assert m and m["session"] == "6b067680.7e3c" and m["xid"] == "0" and m["db"] == "ik_app"
    assert m["ts"] == "2026-11-25 05:47:44 UTC" and m["msg"].startswith("statement: delete from workspaces")


def test_q_makes_the_rest_optional_and_padding_is_allowed():
    rx = prefix_pattern("%m [%p] %q%u@%d/%a ")
    assert rx.match("2026-11-25 05:47:43.394 UTC [32289] LOG:  starting PostgreSQL 16.2")["db"] is None
    assert rx.match("2026-11-25 05:47:43.799 UTC [32307] postgres@ik_app/[unknown] LOG:  statement: x")["db"] == "ik_app"
    padded = prefix_pattern("%m %-8d [%v] ").match("2026-11-25 05:47:43.799 UTC app      [4/19] LOG:  statement: x")
    assert padded and padded["db"].strip() == "app" and padded["vxid"] == "4/19"


@pytest.mark.parametrize("bad", ["[%p] %d ", "%u@%d "])
def test_a_prefix_without_time_is_refused(bad):
    with pytest.raises(ConfigError, match="prints no time"):
        prefix_pattern(bad)


def test_the_default_prefixes_compile():
    assert all(prefix_pattern(p) for p in DEFAULT_PREFIXES)


# -- SQL ------------------------------------------------------------------------------------
def test_a_delete_written_by_hand():
    [c] = statement_changes(f"delete from workspaces where id = '{ws(1)}'")
    assert (c.kind, c.schema, c.name, keys(c)) == ("delete", None, "workspaces", {"id": [ws(1)]})


def test_an_orm_delete_schema_qualified_and_quoted_with_a_parameter():
    [c] = statement_changes('delete from "app"."teams" where "teams"."id" = $1', {1: ws(2)})
    assert (c.schema, c.name, keys(c)) == ("app", "teams", {"id": [ws(2)]})


def test_in_any_array_and_casts():
    [c] = statement_changes("DELETE FROM public.workspaces WHERE id IN ($1, $2::uuid)", {1: "a", 2: "b"})
    assert keys(c) == {"id": ["a", "b"]}
    [c] = statement_changes("delete from workspaces where id = any($1::uuid[])", {1: "{a,b}"})
    assert keys(c) == {"id": ["a", "b"]}
    [c] = statement_changes("delete from workspaces where id = ANY(ARRAY['a'::uuid, 'b'])")
    assert keys(c) == {"id": ["a", "b"]}
    [c] = statement_changes("delete from workspaces where id = any('{\"a\",b}')")
    assert keys(c) == {"id": ["a", "b"]}
    [c] = statement_changes("delete from workspaces where (id = uuid 'a') and name = E'it\\'s'")
    assert keys(c) == {"id": ["a"], "name": ["it's"]}


def test_aliases_other_tables_and_expressions():
    [c] = statement_changes("delete from workspaces as w using users u where u.x = 'no' and w.id = $1", {1: "a"})
    assert keys(c) == {"id": ["a"]}  # u.x belongs to another table
    [c] = statement_changes("delete from workspaces w where w.id = $1 + 1", {1: "a"})
    assert keys(c) == {}  # an expression, not a value
    [c] = statement_changes("delete from workspaces")
    assert keys(c) == {}  # every row: no ids to name


def test_comments_several_statements_and_a_cte():
    sql = ("/* job */ delete from workspaces where id = 'a'; -- the first\n"
           "with gone as (delete from workspace_members where workspace_id = 'b' returning id) "
           "insert into log_table select * from gone")
    changes = statement_changes(sql)
    assert [(c.kind, c.name, keys(c)) for c in changes] == [
        ("delete", "workspaces", {"id": ["a"]}),
        ("delete", "workspace_members", {"workspace_id": ["b"]}),
        ("insert", "log_table", {}),
    ]


def test_inserts_give_the_values_of_each_row():
    [c] = statement_changes("insert into workspaces (id, name, created_at) values ($1, 'x', now()), ('b', $2, now())",
                            {1: "a", 2: "y"})
    assert keys(c) == {"id": ["a", "b"], "name": ["x", "y"]}
    [c] = statement_changes("insert into workspace_members (id, joined_at, workspace_id, user_id) values "
                            "(gen_random_uuid(), coalesce($1, now()), $2, 'u'), (default, now(), 'w', $3)",
                            {1: None, 2: "w0", 3: "u1"})
    assert keys(c) == {"workspace_id": ["w0", "w"], "user_id": ["u", "u1"]}
    [c] = statement_changes('insert into "public"."workspaces" ("name") values ($1) returning "id"', {1: "n"})
    assert keys(c) == {"name": ["n"]}  # the id comes from a default: not in the log


def test_parameters_and_array_literals():
    assert parse_parameters("parameters: $1 = 'a''b', $2 = NULL, $3 = '{x,y}'") == {1: "a'b", 2: None, 3: "{x,y}"}
    assert parse_parameters(None) == {}
    assert parse_array_literal('{a,"b c",NULL}') == ("a", "b c", None)
    assert parse_array_literal("not an array") == ()


def test_watched_tables_from_a_schema_map_or_a_mapping():
    assert [(t.entity, t.qualified, t.id_column) for t in watched_tables()] == [
        ("workspaces", "public.workspaces", "id"), ("memberships", "public.workspace_members", "id")]
    smap = SchemaMap.from_dict({"workspaces": {"table": "app.teams", "id": "team_id"}})
    assert watched_tables(smap)[0] == WatchedTable("workspaces", "app", "teams", "team_id")
    assert watched_tables({"workspaces": "app.teams"}) == (WatchedTable("workspaces", "app", "teams"),)
    with pytest.raises(ConfigError):
        watched_tables({"workspaces": "a.b.c"})


# -- the real server's log files -----------------------------------------------------------------
#: What the sample's ik_app database logged, in order: (kind, table, ids, failed).
EXPECTED_DELETES = [
    ("workspaces", (ws(1),), False),       # by hand, simple query
    ("workspaces", (ws(2),), False),       # "public"."workspaces", extended protocol
    ("memberships", (), False),            # where workspace_id = $1 and user_id = $2
    ("workspaces", (ws(4), ws(5)), False),  # IN ($1, $2)
    ("workspaces", (ws(6), ws(7)), False),  # in ('...', '...')
    ("workspaces", (ws(8), ws(9)), False),  # = any($1::uuid[])
    ("workspaces", (ws(10),), True),       # the delete itself failed (a user still points at it)
    ("workspaces", (ws(11),), True),       # its transaction failed afterwards
    ("workspaces", (ws(12),), False),      # a multi-line literal
    ("workspaces", (ws(13),), False),      # a named prepared statement (_pg3_0)
    ("workspaces", (ws(40),), False),      # after the prefix changed to '%t [%p] %c %x %d '
    ("workspaces", (ws(6),), True),        # its transaction failed afterwards
]


def _deletes(events):
    return [(e.table, e.ids, e.failed) for e in events if e.kind == "delete"]


@pytest.mark.parametrize("path", [STDERR, CSV, JSON], ids=["stderr", "csvlog", "jsonlog"])
def test_the_real_servers_deletions_in_each_format(path):
    scan = scan_server_logs(path, database="ik_app", include_failed=True, log_line_prefix=SAMPLE_PREFIXES)
    assert _deletes(scan.events) == EXPECTED_DELETES
    assert scan.skipped_lines == 0 and scan.failed_statements == 3
    member = next(e for e in scan.events if e.table == "memberships" and e.kind == "delete")
    assert member.key("workspace_id") == (ws(3),) and member.key("user_id") == ("did:privy:m",)
    assert all(e.database == "ik_app" and e.pid for e in scan.events)
    assert {e.status for e in scan.events} == {STATUS_LOGGED, STATUS_FAILED}


@pytest.mark.parametrize("path", [STDERR, CSV, JSON], ids=["stderr", "csvlog", "jsonlog"])
def test_failed_statements_are_left_out_by_default_and_other_databases_ignored(path):
    # Yielded as settled (a session's last statement at the end of the files): not in file order.
    events = sorted(iter_server_log_events(path, database="ik_app", log_line_prefix=SAMPLE_PREFIXES),
                    key=lambda e: e.line)
    assert _deletes(events) == [d for d in EXPECTED_DELETES if not d[2]]
    assert all(e.status == "statement logged, commit not observed" for e in events)
    everything = scan_server_logs(path, log_line_prefix=SAMPLE_PREFIXES).events
    assert [e.database for e in everything if ws(30) in e.ids] == ["ik_other"]


def test_the_event_carries_where_and_when_it_was_logged():
    [e] = [e for e in scan_server_logs(CSV, database="ik_app").events if e.ids == (ws(2),) and e.kind == "delete"]
    assert e.to_dict() == {
        "kind": "delete", "table": "workspaces", "relation": "public.workspaces", "ids": [ws(2)],
        "keys": {"id": [ws(2)]}, "logged_at": "2026-11-25T05:47:43.799Z", "database": "ik_app",
        "session": "6b06767f.7e33", "pid": 32307, "vxid": "4/20", "file": str(CSV), "line": 20,
        "format": "pg_csv", "via": "execute",
        "statement": 'delete from "public"."workspaces" where "workspaces"."id" = $1',
        "status": "statement logged, commit not observed", "failed": False,
        "sources": [{"file": str(CSV), "line": 20}], "user": "postgres", "application_name": None,
    }


def test_session_and_xid_from_the_stderr_prefix():
    late = [e for e in scan_server_logs(STDERR, database="ik_app", log_line_prefix=SAMPLE_PREFIXES).events
            if e.ids == (ws(40),)]
    assert [(e.kind, e.session, e.pid, e.line) for e in late] == [("insert", "6b067680.7e3c", 32316, 61),
                                                                  ("delete", "6b067680.7e3c", 32316, 63)]


def test_a_mapped_table_in_another_schema():
    scan = scan_server_logs(JSON, {"workspaces": "app.teams"}, database="ik_app")
    assert [(e.kind, e.table, e.relation, e.ids) for e in scan.events] == [
        ("delete", "workspaces", "app.teams", (ws(20),))]


def test_insertions_are_creation_evidence():
    inserts = [e for e in scan_server_logs(CSV, database="ik_app", kinds=["insert"]).events]
    assert [e.ids for e in inserts if e.table == "workspaces"][:2] == [(ws(1),), (ws(2), ws(3))]
    assert {e.kind for e in inserts} == {"insert"}
    assert any(e.table == "memberships" and e.key("user_id") == ("did:privy:m",) for e in inserts)


def test_one_statement_in_three_files_is_one_event():
    scan = scan_server_logs([STDERR, CSV, JSON], database="ik_app", log_line_prefix=SAMPLE_PREFIXES)
    assert len(scan.files) == 3 and scan.skipped_lines == 0
    first = next(e for e in scan.events if e.ids == (ws(1),) and e.kind == "delete")
    assert sorted(Path(f).name for f, _ in first.seen_in) == ["postgresql", "postgresql.csv", "postgresql.json"]
    assert _deletes(scan.events) == [d for d in EXPECTED_DELETES if not d[2]]


def test_gzip_and_an_overlong_line(tmp_path):
    text = STDERR.read_text()
    cut = text.index("2026-11-25 05:47:43.799 UTC [32307] postgres@ik_app/[unknown] LOG:  statement: delete")
    (tmp_path / "huge").write_text(text[:cut] + "x" * (1 << 21) + "\n" + text[cut:])
    with gzip.open(tmp_path / "huge.gz", "wt") as fh:
        fh.write(text)
    plain = scan_server_logs(tmp_path / "huge", database="ik_app", log_line_prefix=SAMPLE_PREFIXES)
    assert plain.skipped_lines == 1 and _deletes(plain.events) == [d for d in EXPECTED_DELETES if not d[2]]
    zipped = scan_server_logs(tmp_path / "huge.gz", database="ik_app", log_line_prefix=SAMPLE_PREFIXES)
    assert _deletes(zipped.events) == _deletes(plain.events)


def test_bad_inputs():
    with pytest.raises(LogReadError):
        scan_server_logs("/nonexistent/postgresql.log")
    with pytest.raises(ConfigError, match="unknown event kind"):
        scan_server_logs(CSV, kinds=["update"])
    with pytest.raises(ConfigError):
        scan_server_logs(CSV, log_line_prefix="%p ")


# -- pgaudit and transactions (lines in the formats above, written by hand) ----------------------
def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "postgresql.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pgaudit_lines(tmp_path):
    """pgaudit's format (its README): AUDIT_TYPE,STATEMENT_ID,SUBSTATEMENT_ID,CLASS,COMMAND,
    OBJECT_TYPE,OBJECT_NAME,STATEMENT,PARAMETER."""
    p = "2025-10-08 09:41:27.118 UTC [77] "
    path = _write(tmp_path, [
        p + f'LOG:  AUDIT: SESSION,1,1,WRITE,DELETE,TABLE,public.workspaces,"delete from workspaces where id = \'{ws(1)}\'",<not logged>',
        p + 'LOG:  AUDIT: SESSION,2,1,WRITE,DELETE,TABLE,app.teams,"delete from ""app"".""teams"" where ""teams"".""id"" = $1",' + ws(2),
        p + "LOG:  AUDIT: SESSION,3,1,READ,SELECT,TABLE,public.workspaces,select 1,<not logged>",
        p + 'LOG:  AUDIT: SESSION,4,1,WRITE,INSERT,TABLE,public.workspaces,"insert into workspaces (id) values ($1)",' + ws(3),
        p + f'LOG:  AUDIT: SESSION,5,1,WRITE,DELETE,TABLE,public.workspaces,"delete from workspaces where id = \'{ws(4)}\'",<not logged>',
        p + "LOG:  AUDIT: SESSION,5,2,WRITE,DELETE,TABLE,public.workspaces,<previously logged>,<not logged>",
    ])
    events = scan_server_logs(path, {"workspaces": "public.workspaces", "teams": "app.teams"}).events
    assert [(e.kind, e.table, e.ids, e.via) for e in events] == [
        ("delete", "workspaces", (ws(1),), "pgaudit"), ("delete", "teams", (ws(2),), "pgaudit"),
        ("insert", "workspaces", (ws(3),), "pgaudit"), ("delete", "workspaces", (ws(4),), "pgaudit")]
    assert len(events[-1].seen_in) == 2  # the substatement's line names the same deletion


def test_duration_lines_and_disconnections(tmp_path):
    """``log_min_duration_statement`` lines count; a session's end settles its last statement."""
    path = _write(tmp_path, [
        f"2025-10-08 09:41:27.118 UTC [77] LOG:  duration: 0.412 ms  statement: delete from workspaces where id = '{ws(1)}'",
        "2025-10-08 09:41:27.120 UTC [77] LOG:  disconnection: session time: 0:00:00.010 user=app database=app",
        "2025-10-08 09:41:28.000 UTC [78] LOG:  duration: 0.300 ms  execute <unnamed>: delete from workspaces where id = $1",
        f"2025-10-08 09:41:28.000 UTC [78] DETAIL:  parameters: $1 = '{ws(2)}'",
    ])
    events = list(iter_server_log_events(path))
    assert [(e.ids, e.pid, e.via) for e in events] == [((ws(1),), 77, "statement"), ((ws(2),), 78, "execute")]


def test_an_error_counts_only_in_its_own_transaction_when_the_vxid_says(tmp_path):
    def line(vxid: str, sev: str, msg: str) -> str:
        return f"2025-10-08 09:41:27.118 UTC [77] [{vxid}] {sev}:  {msg}"

    path = _write(tmp_path, [
        line("3/1", "LOG", f"statement: delete from workspaces where id = '{ws(1)}'"),  # autocommitted
        line("3/2", "ERROR", "relation \"nope\" does not exist"),  # a later transaction's error
        line("3/3", "LOG", "statement: begin"),
        line("3/3", "LOG", f"statement: delete from workspaces where id = '{ws(2)}'"),
        line("3/3", "LOG", "statement: select 1"),  # log_statement = 'all': a later statement...
        line("3/3", "ERROR", "division by zero"),  # ...but the same transaction fails
        line("3/4", "LOG", f"statement: delete from workspaces where id = '{ws(3)}'"),
        line("3/4", "LOG", "statement: rollback"),
    ])
    scan = scan_server_logs(path, include_failed=True, log_line_prefix="%m [%p] [%v] ")
    assert [(e.ids, e.failed) for e in scan.events] == [((ws(1),), False), ((ws(2),), True), ((ws(3),), True)]
    # Without the vxid, the rule is the session's next statement: the error right after fails it.
    plain = scan_server_logs(path, include_failed=True)  # the loose match: no vxid group
    assert [(e.ids, e.failed) for e in plain.events] == [((ws(1),), True), ((ws(2),), False), ((ws(3),), True)]


# -- against the session's embedded server ---------------------------------------------------------
def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _wait_for(log_dir: Path, marker: str, files=("postgresql", "postgresql.csv", "postgresql.json")) -> None:
    """Until every log file holds ``marker`` (the logging collector writes asynchronously)."""
    for _ in range(200):
        if all(marker in (log_dir / f).read_text(errors="replace") for f in files if (log_dir / f).exists()):
            return
        time.sleep(0.05)
    pytest.fail(f"the server's logs never showed {marker}")


@pytest.fixture
def other_db(pg_server, reference_template):
    name = f"ik_srvlog_other_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = pg_server.create_database(name, template=reference_template)
    yield url
    pg_server.drop_database(name)


def test_the_embedded_servers_own_logs(pg_server, fresh_db, other_db, tmp_path):
    db, other = _dbname(fresh_db), _dbname(other_db)
    with pg_server.admin() as conn:
        for name in (db, other):
            conn.execute(f'alter database "{name}" set log_statement = \'mod\'')
    ids = {k: str(uuid.uuid4()) for k in ("hand", "orm", "in1", "in2", "any1", "any2", "prep", "rolled", "other",
                                          "team", "marker")}
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create schema app; create table app.teams (id uuid primary key)")
        for k, v in ids.items():
            if k not in ("other", "team"):
                c.execute("insert into workspaces (id, name) values (%s, %s)", (v, k))
        c.execute("insert into app.teams (id) values (%s)", (ids["team"],))
        c.execute(f"delete from workspaces where id = '{ids['hand']}'")  # simple query, literal
        c.execute('delete from "public"."workspaces" where "workspaces"."id" = %s', (ids["orm"],))
        c.execute("delete from workspaces where id in (%s, %s)", (ids["in1"], ids["in2"]))
        c.execute("delete from workspaces where id = any(%s::uuid[])", ([ids["any1"], ids["any2"]],))
        c.execute('delete from "app"."teams" where "teams"."id" = %s', (ids["team"],))
        with pytest.raises(psycopg.errors.DivisionByZero), c.transaction():
            c.execute("delete from workspaces where id = %s", (ids["rolled"],))
            c.execute("select 1 / 0")
    with psycopg.connect(fresh_db, autocommit=True, prepare_threshold=0) as c:
        c.execute("delete from workspaces where id = %s", (ids["prep"],))
    with psycopg.connect(other_db, autocommit=True) as c:
        c.execute("insert into workspaces (id, name) values (%s, 'x')", (ids["other"],))
        c.execute("delete from workspaces where id = %s", (ids["other"],))
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute(f"delete from workspaces where id = '{ids['marker']}'")
    _wait_for(pg_server.log_dir, ids["marker"])

    expected = [(ids["hand"],), (ids["orm"],), (ids["in1"], ids["in2"]), (ids["any1"], ids["any2"]),
                (ids["prep"],), (ids["marker"],)]
    logs = {f: pg_server.log_dir / f for f in ("postgresql", "postgresql.csv", "postgresql.json")}
    for name, path in logs.items():
        scan = scan_server_logs(path, database=db, kinds=["delete"])
        assert [e.ids for e in scan.events] == expected, name
        assert all(e.database == db and e.table == "workspaces" and not e.failed for e in scan.events), name
        failed = scan_server_logs(path, database=db, kinds=["delete"], include_failed=True).events
        assert [e.ids for e in failed if e.failed] == [(ids["rolled"],)], name
        teams = scan_server_logs(path, {"workspaces": "app.teams"}, database=db, kinds=["delete"]).events
        assert [e.ids for e in teams] == [(ids["team"],)], name
        created = scan_server_logs(path, database=db, kinds=["insert"]).events
        assert {i for e in created for i in e.ids} == {v for k, v in ids.items() if k not in ("other", "team")}
        assert [e.database for e in scan_server_logs(path, database=other).events] == [other, other]
    for name, path in logs.items():  # the server's three files of one run: each statement once
        shutil.copy(path, tmp_path / name)
    both = scan_server_logs(tmp_path, database=db, kinds=["delete"]).events
    assert [e.ids for e in both] == expected and all(len(e.seen_in) == 3 for e in both)


def test_two_deletions_of_a_composite_key_sharing_a_column_are_two_events(tmp_path):
    log = tmp_path / "postgresql"
    log.write_text(
        "2025-10-08 09:41:27.118 UTC [101] LOG:  statement: delete from workspaces where id = "
        "'00000000-0000-4000-8000-000000000001' and region = 'eu'\n"
        "2025-10-08 09:41:27.412 UTC [101] LOG:  statement: delete from workspaces where id = "
        "'00000000-0000-4000-8000-000000000001' and region = 'us'\n")
    events = scan_server_logs(log).events
    assert [e.key("region") for e in events] == [("eu",), ("us",)]


def _jsonlog_mix(tmp_path, seed: int, gz: bool = False) -> Path:
    """A jsonlog built from the real sample's lines, shuffled with junk, blank, overlong and
    broken lines, CRLF endings and invalid UTF-8, sometimes with no final newline."""
    import random

    rng = random.Random(seed)
    real = [ln for ln in (SAMPLES / "postgresql.json").read_bytes().splitlines() if ln.strip()]
    out = []
    for _ in range(400):
        r = rng.random()
        if r < 0.55:
            out.append(rng.choice(real))
        elif r < 0.65:
            out.append(b"")
        elif r < 0.72:
            out.append(b'{"timestamp": "2025-10-08 09:41:27.118 UTC", "message": "statement: ' + b"x" * 3000 + b'"}')
        elif r < 0.78:
            out.append(b'{"broken": "statement: delete from workspaces where id = \'x\'')
        elif r < 0.84:
            out.append(b'{"timestamp": "2025-10-08 09:41:27.118 UTC", "message": "\xff\xfe statement: bad utf8"}')
        else:
            out.append(b'{"timestamp": "2025-10-08 09:41:27.100 UTC", "message": "checkpoint starting: time"}')
    sep = b"\r\n" if seed % 2 else b"\n"
    data = sep.join(out) + (sep if seed % 3 else b"")
    path = tmp_path / (f"mix{seed}.json" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("seed", range(6))
def test_jsonlog_skim_equals_reading_every_line(tmp_path, monkeypatch, seed):
    """The byte-level pass over jsonlog gives what reading every line gives: the same events,
    the same skipped lines, across small blocks and overlong lines."""
    import incidentkit.evidence.server_log as sl

    paths = [SAMPLES / "postgresql.json", _jsonlog_mix(tmp_path, seed), _jsonlog_mix(tmp_path, seed + 10, gz=True)]
    monkeypatch.setattr(sl, "READ_BLOCK", 2048)
    monkeypatch.setattr(sl, "MAX_LINE_BYTES", 1500)

    def run(skim: bool):
        monkeypatch.setattr(sl, "SKIM", skim)
        out = []
        for p in paths:
            scan = scan_server_logs(p, include_failed=True)
            out.append(([e.to_dict() for e in scan.events], scan.skipped_lines, scan.failed_statements))
        return out

    assert run(True) == run(False)
