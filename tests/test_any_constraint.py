"""Any foreign key, from its name or its error message (issue 14, items 1 (parsing), 2 and 3).

The schema (``samples/any_fk.sql``) holds keys the kit has never seen: composite (MATCH SIMPLE and
FULL), ON DELETE CASCADE / SET NULL, DEFERRABLE INITIALLY DEFERRED, NOT VALID with stored
violations, a partitioned referencing table, quoted identifiers, two keys into one table, and one
constraint name in two schemas. The error texts are provoked on the real server; the figures are
the hand counts written beside the rows in the SQL file.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from incidentkit.analysis import constraints
from incidentkit.analysis.constraints import (
    ConstraintDiagnosis,
    ParsedError,
    diagnose_constraint,
    discover,
    from_diag,
    parse_error,
)
from incidentkit.db.connection import Database
from incidentkit.exceptions import ConfigError

SCHEMA_SQL = Path(__file__).parent / "samples" / "any_fk.sql"
DEMO_LOG = Path(__file__).resolve().parents[1] / "lib" / "incidentkit" / "data" / "demo-app.log"
EXE = shutil.which("incidentkit") or ""
_copies = itertools.count()


# -- fixtures and helpers (this module's own) -------------------------------------------------------
@pytest.fixture(scope="module")
def any_fk_template(pg_server):
    """A template database holding ``samples/any_fk.sql`` with its rows."""
    name = f"ik_tpl_any_fk_{os.getpid()}"
    url = pg_server.create_database(name, replace=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
    yield name
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def any_db(pg_server, any_fk_template):
    """A copy of the template that the tests only read (violations provoked here roll back)."""
    name = f"ik_any_fk_ro_{os.getpid()}"
    url = pg_server.create_database(name, template=any_fk_template, replace=True)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def any_db_rw(pg_server, any_fk_template):
    """A fresh copy a test may write to."""
    name = f"ik_any_fk_{os.getpid()}_{next(_copies)}"
    url = pg_server.create_database(name, template=any_fk_template)
    yield url
    pg_server.drop_database(name)


def provoke(url: str, statement: str) -> psycopg.errors.ForeignKeyViolation:
    """Run ``statement`` and return the foreign-key violation the server raises (rolled back)."""
    with psycopg.connect(url) as conn:
        try:
            conn.execute(statement)
            conn.execute("set constraints all immediate")  # a deferred key is checked now
        except psycopg.errors.ForeignKeyViolation as e:
            return e
        finally:
            conn.rollback()
    raise AssertionError(f"no foreign-key violation from {statement!r}")


def write_unchecked(url: str, *statements: str) -> None:
    """Rows a restore with --disable-triggers could leave: foreign-key triggers off."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")
        for s in statements:
            conn.execute(s)


def run_cli(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    cmd = [EXE] if EXE else [sys.executable, "-m", "incidentkit"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=120, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    return lines[0]


# -- 1. parsing the error ---------------------------------------------------------------------------
#: (statement, constraint, table, direction, referenced_table, key) as the server reports them.
PROVOKED = [
    ("insert into shop.bins values (100, 'north', 9)",
     "bins_warehouse_fk", "bins", "insert", "warehouses", {"region": "north", "code": "9"}),
    # bins: ON UPDATE NO ACTION (pallets cascade the update)
    ("update shop.warehouses set code = 5 where region = 'north' and code = 2",
     "bins_warehouse_fk", "bins", "delete", "warehouses", {"region": "north", "code": "2"}),
    ("insert into shop.events values (9, '2025-05-01', 77)",  # reported on the partition
     "events_customer_fk", "events_2025", "insert", "customers", {"customer_id": "77"}),
    ('insert into shop."Gift Cards" values (9, 555)',
     "gift cards → orders", "Gift Cards", "insert", "orders", {"Order Ref": "555"}),
    ("delete from shop.orders where id = 10",  # gift card 1 still points at order 10 (NO ACTION)
     "gift cards → orders", "Gift Cards", "delete", "orders", {"id": "10"}),
    ("insert into shop.order_lines values (100, 97, 'x')",  # NOT VALID still checks new rows
     "order_lines_order_fk", "order_lines", "insert", "orders", {"order_id": "97"}),
    ("insert into archive.orders values (5, 9)",
     "orders_customer_fk", "orders", "insert", "customers", {"customer_id": "9"}),
]


@pytest.mark.parametrize("statement, name, table, direction, referenced, key", PROVOKED,
                         ids=[p[0].split(" values")[0].split(" set")[0].split(" where")[0] for p in PROVOKED])
def test_the_servers_own_errors_parse_in_every_pasted_form(any_db, statement, name, table, direction, referenced,
                                                           key):
    e = provoke(any_db, statement)
    text = str(e)  # message, newline, "DETAIL:  Key ..."
    expected = {"constraint": name, "table": table, "direction": direction, "referenced_table": referenced,
                "key": key, "key_exact": True}
    message, detail = e.diag.message_primary, e.diag.message_detail
    forms = {
        "psycopg str(e)": text,
        "server log": f"2025-10-08 09:41:27.164 UTC [4242] ERROR:  {message}\n"
                      f"2025-10-08 09:41:27.164 UTC [4242] DETAIL:  {detail}\n"
                      "2025-10-08 09:41:27.164 UTC [4242] STATEMENT:  insert ...",
        "node-postgres": f"error: {message}\nDetail: {detail}\n    at /app/node_modules/pg-pool/index.js:45:11",
        "python traceback": f"psycopg.errors.ForeignKeyViolation: {text}",
        "JSON record": json.dumps({"level": "error", "msg": message, "detail": detail}),
        "JSON of str(e)": json.dumps({"err": text}),
    }
    for form, pasted in forms.items():
        got = parse_error(pasted).to_dict()
        assert {k: got[k] for k in expected} == expected, form
        assert got["detail"] == detail, form
    # psycopg's diag gives the same, and the schema the message never carries.
    d = from_diag(e.diag)
    assert (d.constraint, d.table, d.direction, d.key) == (name, table, direction, key)
    assert d.schema == re.search(r"(?:into|update|from) (\w+)\.", statement).group(1)
    assert from_diag(e).to_dict() == d.to_dict()


def test_without_its_detail_line_the_key_is_unknown(any_db):
    e = provoke(any_db, "insert into shop.bins values (100, 'north', 9)")
    p = parse_error(f"ERROR:  {e.diag.message_primary}")
    assert (p.constraint, p.table, p.direction, p.key, p.key_exact) == ("bins_warehouse_fk", "bins", "insert", {},
                                                                       False)
    assert "no Detail" in p.key_note
    # The delete side names both tables in its message alone.
    e = provoke(any_db, "update shop.warehouses set code = 5 where region = 'north' and code = 2")
    p = parse_error(e.diag.message_primary)
    assert (p.table, p.referenced_table, p.direction) == ("bins", "warehouses", "delete")


def test_a_value_holding_a_comma_is_kept_whole_and_flagged(any_db):
    e = provoke(any_db, "insert into shop.bins values (101, 'east, west', 9)")
    assert e.diag.message_detail == 'Key (region, code)=(east, west, 9) is not present in table "warehouses".'
    p = parse_error(str(e))
    assert p.key == {"region, code": "east, west, 9"} and p.key_exact is False
    assert "3 values for 2 columns" in p.key_note
    assert p.key_columns == []
    # A comma without the space PostgreSQL joins with is no ambiguity.
    p = parse_error('Key (region, code)=(a,b, 9) is not present in table "warehouses". '
                    'constraint: \'bins_warehouse_fk\'')
    assert p.key == {"region": "a,b", "code": "9"} and p.key_exact


def test_match_full_mixing_nulls_is_its_own_detail(any_db):
    e = provoke(any_db, "insert into shop.pallets values (9, 'north', null)")
    p = parse_error(str(e))
    assert (p.constraint, p.table, p.direction, p.key) == ("pallets_warehouse_fk", "pallets", "insert", {})
    assert "MATCH FULL" in p.key_note and p.detail.startswith("MATCH FULL does not allow")


def test_quoted_identifiers_and_node_postgres_properties():
    p = parse_error('Key ("Order Ref", "a ""b""")=(1, 2) is not present in table "orders".\n'
                    "constraint: 'x'")
    assert p.key == {"Order Ref": "1", 'a "b"': "2"} and p.direction == "insert"
    # node-postgres prints the error object's properties: schema, table and constraint are read.
    pasted = ("error: insert or update on table \"bins\" violates foreign key constraint \"bins_warehouse_fk\"\n"
              "    at /app/node_modules/pg-pool/index.js:45:11 {\n  length: 301,\n  severity: 'ERROR',\n"
              "  code: '23503',\n  detail: 'Key (region, code)=(north, 9) is not present in table \"warehouses\".',\n"
              "  hint: undefined,\n  schema: 'shop',\n  table: 'bins',\n  column: undefined,\n"
              "  constraint: 'bins_warehouse_fk',\n}")
    p = parse_error(pasted)
    assert (p.constraint, p.schema, p.table, p.key) == ("bins_warehouse_fk", "shop", "bins",
                                                        {"region": "north", "code": "9"})


def test_the_demo_apps_log_record_parses():
    lines = DEMO_LOG.read_text(encoding="utf-8").splitlines()
    at = next(i for i, ln in enumerate(lines) if "violates foreign key constraint" in ln)
    p = parse_error("\n".join(lines[at:at + 4]))
    assert p.to_dict() | {"detail": None} == {
        "constraint": "users_primary_workspace_id_workspaces_id_fk", "table": "users", "schema": None,
        "direction": "insert", "referenced_table": "workspaces",
        "key": {"primary_workspace_id": "a7189b92-ba75-4160-8fa0-426bfe8fa33a"}, "key_exact": True, "key_note": "",
        "detail": None}


@pytest.mark.parametrize("text", [
    "",
    "   \n ",
    'ERROR:  duplicate key value violates unique constraint "users_pkey"\nDETAIL:  Key (id)=(1) already exists.',
    "connection refused",
    'Key (id)=(1) is not present in table "x".',  # a Detail alone names no constraint
])
def test_text_that_is_not_a_foreign_key_violation_is_one_clear_line(text):
    with pytest.raises(ConfigError) as e:
        parse_error(text)
    assert "\n" not in str(e.value) and str(e.value)


def test_from_diag_refuses_another_error(any_db):
    with psycopg.connect(any_db) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation) as e:
            conn.execute("insert into shop.customers values (1, 'again')")
    with pytest.raises(ConfigError, match="not a foreign-key violation.*23505"):
        from_diag(e.value.diag)


# -- 2. discovery -----------------------------------------------------------------------------------
def read(url: str, fn, *args, **kwargs):
    with Database(url).read() as r:
        return fn(r, *args, **kwargs)


EXPECTED_DEFS = {
    "bins_warehouse_fk": dict(schema="shop", table="bins", columns=["region", "code"], referenced_schema="shop",
                              referenced_table="warehouses", referenced_columns=["region", "code"], match="simple",
                              on_delete="CASCADE", on_update="NO ACTION", deferrable=False, initially_deferred=False,
                              validated=True, partitioned=False, primary_key=["id"]),
    "pallets_warehouse_fk": dict(schema="shop", table="pallets", columns=["region", "code"], match="full",
                                 on_delete="SET NULL", on_update="CASCADE", validated=True, partitioned=False),
    "order_lines_order_fk": dict(table="order_lines", columns=["order_id"], referenced_table="orders",
                                 referenced_columns=["id"], on_delete="CASCADE", validated=False,
                                 deferrable=False),
    "events_customer_fk": dict(table="events", columns=["customer_id"], referenced_table="customers",
                               on_delete="SET NULL", partitioned=True, validated=True, primary_key=["id", "at"]),
    "gift cards → orders": dict(table="Gift Cards", columns=["Order Ref"], referenced_table="orders",
                                primary_key=["Card Id"], on_delete="NO ACTION"),
    "categories_parent_id_fkey": dict(table="categories", columns=["parent_id"], referenced_table="categories",
                                      referenced_columns=["id"], on_delete="SET NULL"),
}


@pytest.mark.parametrize("name", list(EXPECTED_DEFS))
def test_discover_reads_the_definition_from_the_catalog(any_db, name):
    fk = read(any_db, discover, name)
    got = fk.to_dict()
    assert {k: got[k] for k in EXPECTED_DEFS[name]} == EXPECTED_DEFS[name]
    assert got["name"] == name and got["definition"].startswith("FOREIGN KEY")


def test_a_deferrable_key_says_so(any_db):
    fk = read(any_db, discover, "orders_customer_fk", schema="shop")
    assert (fk.deferrable, fk.initially_deferred, fk.table, fk.schema) == (True, True, "orders", "shop")
    assert "DEFERRABLE INITIALLY DEFERRED" in fk.properties()
    assert "NOT DEFERRABLE" in read(any_db, discover, "orders_customer_fk", schema="archive").properties()


def test_paths_are_the_other_keys_into_the_referenced_table(any_db):
    def paths(name, **kw):
        return sorted(p.name for p in read(any_db, discover, name, **kw).paths)

    assert paths("bins_warehouse_fk") == ["pallets_warehouse_fk"]
    assert paths("pallets_warehouse_fk") == ["bins_warehouse_fk"]
    assert paths("order_lines_order_fk") == ["gift cards → orders"]
    # Into shop.customers: the partitioned events (once, not once per partition) and the deferrable orders.
    assert paths("orders_customer_fk", schema="shop") == ["events_customer_fk"]
    assert paths("events_customer_fk") == ["orders_customer_fk"]
    assert paths("orders_customer_fk", table="orders", schema="archive") == []
    assert paths("categories_parent_id_fkey") == []
    p = read(any_db, discover, "events_customer_fk").paths[0]
    assert (p.schema, p.table, p.deferrable, p.paths) == ("shop", "orders", True, [])


def test_a_partitions_clones_are_not_separate_answers(any_db):
    with psycopg.connect(any_db) as conn:
        rows = conn.execute("select conrelid::regclass::text, conparentid <> 0 from pg_constraint"
                            " where conname = 'events_customer_fk' order by 1").fetchall()
    assert rows == [("shop.events", False), ("shop.events_2025", True), ("shop.events_2026", True)]
    for table in (None, "events", "events_2025", "events_2026"):
        fk = read(any_db, discover, "events_customer_fk", table=table)
        assert (fk.table, fk.partitioned) == ("events", True), table
    # Without a name, a table's only foreign key; its partition leads to it too.
    assert read(any_db, discover, table="events_2026").name == "events_customer_fk"


def test_a_name_in_two_schemas_asks_for_the_table(any_db):
    with pytest.raises(ConfigError) as e:
        read(any_db, discover, "orders_customer_fk")
    message = str(e.value)
    assert "2 foreign keys match" in message and "archive.orders" in message and "shop.orders" in message
    assert "--table" in message and "\n" not in message
    # the table alone does not settle it (orders in both schemas), the schema does
    with pytest.raises(ConfigError, match="2 foreign keys match"):
        read(any_db, discover, "orders_customer_fk", table="orders")
    assert read(any_db, discover, "orders_customer_fk", table="orders", schema="archive").schema == "archive"


def test_an_unknown_name_lists_the_nearest(any_db):
    with pytest.raises(ConfigError) as e:
        read(any_db, discover, "bin_warehouse_fkey")
    assert "no foreign key named 'bin_warehouse_fkey'" in str(e.value)
    assert "bins_warehouse_fk" in str(e.value).split("nearest:")[1]
    with pytest.raises(ConfigError, match="the database has 8 foreign keys"):
        read(any_db, discover, "zzzzzzzzzz")
    with pytest.raises(ConfigError, match="exists on shop.bins"):
        read(any_db, discover, "bins_warehouse_fk", table="pallets")
    with pytest.raises(ConfigError, match="no foreign key on table shop.customers$"):
        read(any_db, discover, table="customers", schema="shop")


# -- 3. the figures ---------------------------------------------------------------------------------
def nulls(any_null, all_null, match, not_checked, violating=0):
    return {"any_null": any_null, "all_null": all_null, "match": match, "not_checked": not_checked,
            "violating": violating}


def test_the_figures_are_the_hand_counts(any_db):
    # shop.bins: 6 rows, (north, null) and (null, null): 2 with a NULL column, 1 all NULL, none dangling
    d = diagnose_constraint(Database(any_db), "bins_warehouse_fk")
    assert d.figures == {"referencing_rows": 6, "null_keys": nulls(2, 1, "simple", 2), "dangling_keys": 0}
    assert d.samples == {"dangling": []} and d.clean
    [path] = d.paths
    assert path.constraint.name == "pallets_warehouse_fk"
    assert path.figures == {"referencing_rows": 4, "null_keys": nulls(1, 1, "full", 1), "dangling_keys": 0}
    # shop.order_lines: 8 rows, 1 NULL key, 3 dangling (order 98 twice, 99 once): NOT VALID kept them
    d = diagnose_constraint(Database(any_db), "order_lines_order_fk")
    assert d.figures == {"referencing_rows": 8, "null_keys": nulls(1, 1, "simple", 1), "dangling_keys": 3}
    assert d.samples["dangling"] == [{"key": {"order_id": 98}, "row": {"id": 6}},
                                     {"key": {"order_id": 98}, "row": {"id": 7}},
                                     {"key": {"order_id": 99}, "row": {"id": 8}}]
    assert not d.clean and d.constraint.validated is False
    [path] = d.paths
    assert (path.constraint.name, path.figures["referencing_rows"], path.figures["dangling_keys"]) == (
        "gift cards → orders", 2, 0)
    # the partitioned events: every partition's rows, once
    d = diagnose_constraint(Database(any_db), "events_customer_fk")
    assert d.figures == {"referencing_rows": 5, "null_keys": nulls(1, 1, "simple", 1), "dangling_keys": 0}
    assert [p.figures["referencing_rows"] for p in d.paths] == [5]  # shop.orders


def test_the_figures_agree_with_a_plain_count_after_writes(any_db_rw):
    """Against an independent count: rows and dangling keys the triggers never saw, across partitions."""
    write_unchecked(any_db_rw,
                    "insert into shop.events values (6, '2025-06-01', 404), (7, '2026-06-01', 404),"
                    " (8, '2026-07-01', 405)",
                    'insert into shop."Gift Cards" values (3, 777)')
    d = diagnose_constraint(Database(any_db_rw), "events_customer_fk")
    with psycopg.connect(any_db_rw) as conn:
        dangling = conn.execute("select count(*) from shop.events e where e.customer_id is not null and"
                                " e.customer_id not in (select id from shop.customers)").fetchone()[0]
        total = conn.execute("select count(*) from shop.events").fetchone()[0]
    assert (d.figures["referencing_rows"], d.figures["dangling_keys"]) == (total, dangling) == (8, 3)
    assert d.samples["dangling"] == [
        {"key": {"customer_id": 404}, "row": {"id": 6, "at": "2025-06-01"}},
        {"key": {"customer_id": 404}, "row": {"id": 7, "at": "2026-06-01"}},
        {"key": {"customer_id": 405}, "row": {"id": 8, "at": "2026-07-01"}}]
    g = diagnose_constraint(Database(any_db_rw), "gift cards → orders")
    assert g.samples["dangling"] == [{"key": {"Order Ref": 777}, "row": {"Card Id": 3}}]
    assert [p.figures["dangling_keys"] for p in g.paths] == [3]  # order_lines, untouched


def test_a_table_without_a_primary_key_names_its_rows_by_ctid(any_db_rw):
    with psycopg.connect(any_db_rw, autocommit=True) as conn:
        conn.execute("create table shop.notes (order_id integer, body text)")
        conn.execute("insert into shop.notes values (99, 'x'), (10, 'y')")
        conn.execute("alter table shop.notes add constraint notes_order_fk foreign key (order_id)"
                     " references shop.orders (id) not valid")
    d = diagnose_constraint(Database(any_db_rw), "notes_order_fk")
    assert d.constraint.primary_key == []
    assert d.samples["dangling"] == [{"key": {"order_id": 99}, "row": {"tableoid": "shop.notes", "ctid": "(0,1)"}}]
    assert sorted(p.constraint.name for p in d.paths) == ["gift cards → orders", "order_lines_order_fk"]


def test_null_keys_under_match_simple_and_match_full(any_db_rw):
    # MATCH SIMPLE lets a half-NULL key through unchecked, whatever its other column says:
    with psycopg.connect(any_db_rw, autocommit=True) as conn:
        conn.execute("insert into shop.bins values (10, 'nowhere', null), (11, null, 42)")
    # MATCH FULL refuses it...
    e = provoke(any_db_rw, "insert into shop.pallets values (10, 'north', null)")
    assert "MATCH FULL" in e.diag.message_detail
    # ... unless the triggers were off: then it is a stored violation.
    write_unchecked(any_db_rw, "insert into shop.pallets values (10, 'north', null), (11, null, 42)")
    bins = diagnose_constraint(Database(any_db_rw), "bins_warehouse_fk")
    assert bins.figures == {"referencing_rows": 8, "null_keys": nulls(4, 1, "simple", 4, 0), "dangling_keys": 0}
    assert bins.clean
    assert bins.paths[0].figures == {"referencing_rows": 6, "null_keys": nulls(3, 1, "full", 1, 2),
                                     "dangling_keys": 0}
    pallets = diagnose_constraint(Database(any_db_rw), "pallets_warehouse_fk")
    assert pallets.figures["null_keys"]["violating"] == 2 and not pallets.clean
    assert "2 mixing NULL and non-NULL" in pallets.text()


def test_samples_are_capped_but_the_count_is_not(any_db_rw):
    write_unchecked(any_db_rw, "insert into shop.order_lines select 1000 + g, 500 + g % 7, 'z'"
                               " from generate_series(1, 40) g")
    db = Database(any_db_rw)
    d = diagnose_constraint(db, "order_lines_order_fk", sample_limit=5)
    assert d.figures["dangling_keys"] == 43
    assert len(d.samples["dangling"]) == 5
    keys = [s["key"]["order_id"] for s in d.samples["dangling"]]
    assert keys == sorted(keys) and keys[:2] == [98, 98]
    assert diagnose_constraint(db, "order_lines_order_fk", sample_limit=0).samples == {"dangling": []}
    assert len(diagnose_constraint(db, "order_lines_order_fk", sample_limit=100).samples["dangling"]) == 43
    for bad in (-1, 10_001, 2.5, True):
        with pytest.raises(ConfigError, match="sample limit"):
            diagnose_constraint(db, "order_lines_order_fk", sample_limit=bad)


def test_one_read_only_snapshot(any_db, monkeypatch):
    opened = []
    real = Database.read

    def counting(self):
        opened.append(self)
        return real(self)

    monkeypatch.setattr(Database, "read", counting)
    d = diagnose_constraint(Database(any_db), "order_lines_order_fk")
    assert len(opened) == 1 and len(d.paths) == 1
    with Database(any_db).read() as r:
        assert r.scalar("select current_setting('transaction_read_only')") == "on"


def test_from_the_error_text_alone(any_db):
    db = Database(any_db)
    # an insert into a partition: the parent's constraint, and the key's rows now
    e = provoke(any_db, "insert into shop.events values (9, '2025-05-01', 77)")
    d = diagnose_constraint(db, error=str(e))
    assert (d.constraint.name, d.constraint.table, d.error.table) == ("events_customer_fk", "events", "events_2025")
    assert d.error_key == {"key": {"customer_id": "77"}, "referenced_rows": 0, "referencing_rows": 0}
    # the delete side: the key is the referenced row's, which still exists with its referencing rows
    e = provoke(any_db, "update shop.warehouses set code = 5 where region = 'north' and code = 2")
    d = diagnose_constraint(db, error=str(e))
    assert d.constraint.name == "bins_warehouse_fk" and d.error.direction == "delete"
    assert d.error_key == {"key": {"region": "north", "code": "2"}, "referenced_rows": 1, "referencing_rows": 1}
    # a name in two schemas: the message alone cannot settle it, psycopg's diag (its schema) can
    e = provoke(any_db, "insert into archive.orders values (5, 9)")
    with pytest.raises(ConfigError, match="2 foreign keys match named 'orders_customer_fk' on table orders"):
        diagnose_constraint(db, error=str(e))
    d = diagnose_constraint(db, error=from_diag(e.diag))
    assert (d.constraint.schema, d.paths) == ("archive", [])
    # a name and an error that disagree
    with pytest.raises(ConfigError, match="not the one the error names"):
        diagnose_constraint(db, "bins_warehouse_fk", error=str(e))
    with pytest.raises(ConfigError, match="name a foreign key"):
        diagnose_constraint(db)


def test_the_reference_schemas_key_from_the_demo_log(fresh_db):
    lines = DEMO_LOG.read_text(encoding="utf-8").splitlines()
    at = next(i for i, ln in enumerate(lines) if "violates foreign key constraint" in ln)
    d = diagnose_constraint(Database(fresh_db), error="\n".join(lines[at:at + 2]))
    assert d.constraint.describe() == "public.users (primary_workspace_id) -> public.workspaces (id)"
    assert [p.constraint.name for p in d.paths] == ["workspace_members_workspace_id_workspaces_id_fk"]
    assert d.error_key["referenced_rows"] == 0
    assert d.figures["referencing_rows"] == 0


def test_to_dict_and_text(any_db):
    d = diagnose_constraint(Database(any_db), "order_lines_order_fk", sample_limit=2)
    assert isinstance(d, ConstraintDiagnosis)
    data = json.loads(json.dumps(d.to_dict()))
    assert {"constraint", "figures", "samples", "paths", "snapshot_at"} <= set(data)
    assert set(data["figures"]) == set(constraints.FIGURES)
    assert data["constraint"]["name"] == "order_lines_order_fk" and data["constraint"]["validated"] is False
    assert data["samples"]["dangling"] == [{"key": {"order_id": 98}, "row": {"id": 6}},
                                           {"key": {"order_id": 98}, "row": {"id": 7}}]
    assert [p["constraint"]["name"] for p in data["paths"]] == ["gift cards → orders"]
    assert set(data["paths"][0]) == {"constraint", "figures", "samples"}
    assert data["snapshot_at"].endswith("Z") and "error" not in data
    text = d.text()
    assert "order_lines_order_fk: shop.order_lines (order_id) -> shop.orders (id)" in text
    assert "NOT VALID" in text and "dangling keys     3" in text and "key (order_id=98) in row (id=6)" in text
    assert 'gift cards → orders: shop."Gift Cards" ("Order Ref") -> shop.orders (id)' in text
    assert isinstance(parse_error(str(provoke(any_db, "insert into shop.bins values (100, 'x', 1)"))), ParsedError)


# -- 4. the command ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_diagnose_constraint(any_db):
    env = {"DATABASE_URL": any_db}
    p = run_cli("diagnose", "--constraint", "order_lines_order_fk", "--json", "--sample-limit", "1", env=env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert {"constraint", "figures", "samples", "paths", "snapshot_at"} <= set(data)
    assert data["figures"]["dangling_keys"] == 3 and data["samples"]["dangling"] == [
        {"key": {"order_id": 98}, "row": {"id": 6}}]
    assert data["paths"][0]["figures"]["referencing_rows"] == 2
    error = str(provoke(any_db, "insert into shop.events values (9, '2026-05-01', 77)"))
    p = run_cli("diagnose", "--error", error, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("foreign key events_customer_fk: shop.events (customer_id) -> shop.customers (id)")
    # a multi-line paste from stdin, the delete side
    error = str(provoke(any_db, "delete from shop.orders where id = 10"))
    p = run_cli("diagnose", "--error", "-", "--json", env=env, stdin=error)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert (data["constraint"]["name"], data["error"]["direction"], data["error_key"]) == (
        "gift cards → orders", "delete", {"key": {"id": "10"}, "referenced_rows": 1, "referencing_rows": 1})
    p = run_cli("diagnose", "--constraint", "orders_customer_fk", "--table", "archive.orders", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["constraint"]["schema"] == "archive"
    # without --constraint/--error: the seed's diagnosis, as before (its tables are not in this database)
    p = run_cli("diagnose", "--json", env=env)
    assert p.returncode == 2 and "users" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["--constraint", "no_such_fk"], "no foreign key named 'no_such_fk'"),
    (["--constraint", "orders_customer_fk"], "2 foreign keys match"),
    (["--error", 'ERROR:  duplicate key value violates unique constraint "x"'], "not a foreign-key violation"),
    (["--error", ""], "the error text is empty"),
    (["--constraint", "bins_warehouse_fk", "--sample-limit", "20000"], "sample limit"),
])
def test_cli_errors_are_one_line_exit_2(any_db, args, expected):
    line = one_error_line(run_cli("diagnose", *args, env={"DATABASE_URL": any_db}))
    assert expected in line
    assert any_db not in line
