"""A report for any foreign key (issue 14 item 6): the demo's second incident, end to end.

The demo database holds, beside the seed's users and workspaces, a small shop (``orders``,
``order_items``) whose foreign key ``order_items_order_id_fkey`` failed three times
(``data/demo-second-app.log``): a cart sweeper's deletion racing an insert, a stale cart, an
order id that never existed. ``incidentkit report --demo --constraint ...`` renders its report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import psycopg
import pytest

from incidentkit.db import demo

EXE = shutil.which("incidentkit")
FK = demo.SECOND_CONSTRAINT
DATE = "2025-10-10"
#: Words of the seed's incident that a report of another foreign key must not carry.
SEED_WORDING = re.compile(r"workspace|login|\busers?\b|membership|ensureUserWorkspace|did:privy", re.I)

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


@pytest.fixture(scope="module")
def second_report(tmp_path_factory, pg_server):
    """``incidentkit report --demo --constraint order_items_order_id_fkey``, run once as a user runs it."""
    out = tmp_path_factory.mktemp("second-incident")
    proc = subprocess.run([EXE, "report", "--demo", "--constraint", FK, "--out", str(out), "--date", DATE],
                          capture_output=True, text=True, env=_env(), timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return out / DATE, proc


def test_report_files_and_manifest(second_report):
    folder, proc = second_report
    names = sorted(p.name for p in folder.glob("*.md"))
    assert names == ["00-postmortem.md", "01-diagnosis.md", "02-failures.md", "03-key-timeline-01.md",
                     "03-key-timeline-02.md", "03-key-timeline-03.md", "04-race-lab.md", "README.md"]
    facts = json.loads((folder / "run.json").read_text())
    assert facts["constraint"] == FK
    assert facts["parameters"]["constraint"] == FK
    assert facts["definition"]["table"] == "order_items"
    assert facts["figures"]["constraint"]["referencing_rows"] == demo.SECOND_EXPECTED["order_items"]
    assert facts["figures"]["constraint"]["dangling_keys"] == 0
    assert all(n["status"] == "ok" for n in facts["notebooks"])
    # each failure's record copied from the second incident's log
    assert [p.name.startswith("demo-second-app.log") for p in (folder / "evidence").iterdir()] == [True]


def test_verdicts(second_report):
    folder, _ = second_report
    failures = json.loads((folder / "run.json").read_text())["figures"]["failures"]
    assert failures["failures"] == 3
    assert {k: v for k, v in failures["by_verdict"].items() if v} == {
        "concurrent_deletion": 1, "stale_read": 1, "key_never_existed": 1}
    assert failures["keys"] == [[str(demo.SECOND_ORDER)], [str(demo.STALE_ORDER)], [str(demo.NEVER_ORDER)]]
    table = (folder / "02-failures.md").read_text()
    assert re.search(r"\| 2025-10-07 14:02:11\.531 UTC \| insert \| order_id=1042 \| concurrent_deletion \| "
                     r"recorded \| 0\.031 \|", table)
    timeline = (folder / "03-key-timeline-01.md").read_text()
    assert "| 2025-10-07 14:02:11.500 UTC | deleted |" in timeline
    assert "`concurrent_deletion`" in timeline


def test_race_lab_summary(second_report):
    folder, _ = second_report
    race = json.loads((folder / "run.json").read_text())["figures"]["race_lab"]
    assert race["constraint"] == FK
    assert race["cells"] == 30
    # Observed, not predicted: a plain insert fails when the deletion lands before it; locking the
    # order FOR KEY SHARE first never fails it and never leaves an orphan.
    assert race["strategies"]["plain_insert"]["insert_failures"]
    assert "plain_insert" in race["fail_the_insert"]
    assert "lock_parent_for_key_share" in race["never_fail_and_no_orphan"]
    assert not race["leave_an_orphan"]
    doc = (folder / "00-postmortem.md").read_text()
    assert "lock_parent_for_key_share never fails the insert" in doc


def test_no_seed_wording_in_the_constraint_report(second_report):
    folder, _ = second_report
    for name in ("00-postmortem.md", "02-failures.md", "01-diagnosis.md", "04-race-lab.md",
                 "03-key-timeline-01.md", "README.md"):
        text = (folder / name).read_text()
        assert not SEED_WORDING.search(text), (name, SEED_WORDING.search(text).group(0))
        assert FK in text, name
    doc = (folder / "00-postmortem.md").read_text()
    assert doc.startswith(f"# 00 · Incident document: the `{FK}` failures")


def test_unknown_constraint_is_one_line_exit_2(tmp_path, pg_server):
    proc = subprocess.run([EXE, "report", "--demo", "--constraint", "no_such_fkey", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=_env(), timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "no_such_fkey" in proc.stderr
    assert not any(tmp_path.glob("20*")), "nothing is published for a refused report"


def test_error_text_names_the_report(tmp_path, pg_server):
    """``--error`` with a non-foreign-key error: refused before any notebook runs."""
    proc = subprocess.run([EXE, "report", "--demo", "--error", 'duplicate key value violates unique constraint "x"',
                           "--out", str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_second_incident_rows_and_log_are_what_the_generator_makes(demo_db):
    # Last in this module: the session's demo template is loaded only after the reports above used
    # the demo database (the seed's audit transaction ids, which other tests read, depend on it).
    with psycopg.connect(demo_db, autocommit=True) as conn:
        figures = conn.execute("select (select count(*) from orders), (select count(*) from order_items),"
                               " (select count(*) from users), (select count(*) from workspaces),"
                               " (select count(*) from workspace_members)").fetchone()
        assert figures == (demo.SECOND_EXPECTED["orders"], demo.SECOND_EXPECTED["order_items"],
                           demo.EXPECTED["total_users"], demo.EXPECTED["total_workspaces"],
                           demo.EXPECTED["total_memberships"])
        # The shipped log is exactly what the generator writes from the server's own error texts.
        assert demo.second_log_text(conn) == demo.second_log_path().read_text(encoding="utf-8")
        # Provoking the errors left nothing behind.
        assert conn.execute("select count(*) from order_items").fetchone()[0] == demo.SECOND_EXPECTED["order_items"]
