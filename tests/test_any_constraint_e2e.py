"""Issue 14, end to end: given only an error message copied from a log, on a schema the kit has never
seen, ``diagnose``, ``affected``, ``timeline``, ``race`` and a full ``report`` each find the constraint,
count what breaks it, decide the failure (the same verdict in the timeline) and run the race lab for it.

The schema is ``samples/any_fk.sql``: a composite key, MATCH FULL with ON DELETE SET NULL, a NOT VALID
key with stored violations, a key on a partitioned table, a self-referencing table. Each error is
provoked on the real server and logged as the application would log it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from incidentkit import cli
from incidentkit.evidence import registry
from incidentkit.text import iso_utc

pytestmark = pytest.mark.slow  # five full reports

SCHEMA_SQL = Path(__file__).parent / "samples" / "any_fk.sql"

#: (constraint, the insert that violates it)
CASES = [
    ("bins_warehouse_fk", "insert into shop.bins values (100, 'west', 9)"),  # composite
    ("pallets_warehouse_fk", "insert into shop.pallets values (100, 'west', 9)"),  # MATCH FULL, SET NULL
    ("order_lines_order_fk", "insert into shop.order_lines values (100, 555, 'z')"),  # NOT VALID
    ("events_customer_fk", "insert into shop.events values (100, '2025-05-01', 777)"),  # partitioned
    ("categories_parent_id_fkey", "insert into shop.categories values (100, 4242)"),  # self-referencing
]


@pytest.fixture(scope="module")
def shop(pg_server, tmp_path_factory):
    name = f"ik_any_e2e_{os.getpid()}"
    url = pg_server.create_database(name, replace=True)
    tmp = tmp_path_factory.mktemp("any_e2e")
    errors = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
        for constraint, sql in CASES:
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as info:
                conn.execute(sql)
            errors[constraint] = info.value
    logs = {}
    for constraint, err in errors.items():
        log = tmp / f"{constraint}.log"
        at = datetime.now(timezone.utc)
        log.write_text(f"{iso_utc(at)} error [api] request failed\n"
                       f"error: {err.diag.message_primary}\nDetail: {err.diag.message_detail}\n"
                       f"{iso_utc(at)} info  [api] POST /items 500\n")
        logs[constraint] = (log, f"{err.diag.message_primary}\nDETAIL:  {err.diag.message_detail}")
    yield {"url": url, "logs": logs, "tmp": tmp}
    pg_server.drop_database(name)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("constraint", [c for c, _ in CASES])
def test_from_the_error_text_alone(shop, constraint, capsys, monkeypatch):
    monkeypatch.setenv("IK_SHOP_URL", shop["url"])
    log, error = shop["logs"][constraint]
    target = ["--database-url-env", "IK_SHOP_URL"]

    code, out, err = _cli(capsys, "diagnose", *target, "--error", error, "--json")
    assert code == 0, err
    assert json.loads(out)["constraint"]["name"] == constraint

    code, out, err = _cli(capsys, "affected", *target, "--error", error, "--logs", str(log), "--json")
    assert code == 0, err
    data = json.loads(out)
    [failure] = data["failures"]
    assert failure["constraint"] == constraint and failure["direction"] == "insert" and failure["key"]
    assert failure["verdict"] in registry.names("generic")

    values = [str(v) for v in failure["key"].values()]
    code, out, err = _cli(capsys, "timeline", "--constraint", constraint, *values, *target, "--logs", str(log), "--json")
    assert code == 0, err
    timeline = json.loads(out)
    assert len(timeline["failures"]) == 1 and timeline["failures"][0]["verdict"] == failure["verdict"]

    code, out, err = _cli(capsys, "race", *target, "--error", error, "--json")
    assert code == 0, err
    race = json.loads(out)
    assert len(race["cells"]) == 30  # six generic strategies under five interleavings

    out_dir = shop["tmp"] / f"report-{constraint}"
    code, out, err = _cli(capsys, "report", *target, "--error", error, "--logs", str(log), "--out", str(out_dir),
                          "--date", "2025-10-08", "--max-users", "1")
    assert code == 0, err
    run = json.loads((out_dir / "2025-10-08" / "run.json").read_text())
    assert run["constraint"] == constraint
    assert all(n["status"] == "ok" for n in run["notebooks"])
