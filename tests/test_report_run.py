"""One report run, one truth: each analysis once, ``run.json``, ``evidence/``, runs that don't collide.

The demo report (``demo_report``, rendered once per session by ``incidentkit demo``) is read back
here: its incident document must show the very results its detail notebooks recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from incidentkit.config import demo_log_path
from incidentkit.report import render
from incidentkit.report.notebook import read_records

EXE = shutil.which("incidentkit")


def _outputs(path: Path, mime: str) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            value = (o.get("data") or {}).get(mime)
            if value:
                out.append(value if isinstance(value, str) else "".join(value))
    return out


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


# -- each analysis once ---------------------------------------------------------------------------
@pytest.mark.slow
def test_postmortem_shows_the_race_lab_its_notebook_ran(demo_report):
    folder, _, _ = demo_report
    lab = _outputs(folder / "04-race-lab.ipynb", "text/markdown")
    doc = _outputs(folder / "00-postmortem.ipynb", "text/markdown")
    conclusions = [m for m in lab if "interleaving" in m.lower() or "closes" in m.lower()]
    assert conclusions, "the race lab notebook shows its conclusions"
    for text in conclusions:
        if not text.lstrip().startswith("|"):  # the prose conclusions, not the matrix table
            assert any(text.strip() in m for m in doc), "00-postmortem states 04's conclusions word for word"
    matrix = [m for m in lab if m.lstrip().startswith("| strategy | no_concurrent_delete |")]
    assert len(matrix) == 1 and any(matrix[0].strip() in m for m in doc), "the same matrix, cell for cell"
    race_04 = read_records(nbformat.read(str(folder / "04-race-lab.ipynb"), as_version=4))["race_lab"]
    assert read_records(nbformat.read(str(folder / "00-postmortem.ipynb"), as_version=4))["postmortem"][
        "recommended"] == race_04["recommended"]


@pytest.mark.slow
def test_postmortem_figures_and_timeline_are_the_detail_notebooks(demo_report):
    folder, _, _ = demo_report
    diag = read_records(nbformat.read(str(folder / "01-diagnosis.ipynb"), as_version=4))["diagnosis"]
    doc_md = (folder / "00-postmortem.md").read_text()
    assert f"{diag['total_users']:,} users" in doc_md
    # the timeline figure of the first affected user is the very figure 03 drew
    timeline_png = _outputs(folder / "03-user-timeline-01.ipynb", "image/png")
    doc_png = _outputs(folder / "00-postmortem.ipynb", "image/png")
    assert timeline_png and timeline_png[0] in doc_png
    # and the failure counts agree
    affected = read_records(nbformat.read(str(folder / "02-affected-users.ipynb"), as_version=4))["affected"]
    doc = read_records(nbformat.read(str(folder / "00-postmortem.ipynb"), as_version=4))["postmortem"]
    assert doc["failures"] == affected["failures"]
    assert doc["by_verdict"] == {k: v for k, v in affected["by_verdict"].items() if v}


# -- run.json -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_run_manifest(demo_report):
    folder, out, _ = demo_report
    m = json.loads((folder / "run.json").read_text())
    from incidentkit import __version__

    assert m["kit_version"] == __version__
    assert m["database"] == "127.0.0.1/incidentkit_demo"
    assert re.fullmatch(r"\d+(\.\d+)?", m["server_version"].split()[0])
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", m["wal_lsn"]), m["wal_lsn"]
    assert m["snapshot_at"].endswith("Z")
    names = [n["name"] for n in m["notebooks"]]
    assert names == sorted(names) and "00-postmortem" in names and "04-race-lab" in names
    assert all(n["status"] == "ok" and n["seconds"] > 0 for n in m["notebooks"])
    assert "postgresql://" not in json.dumps(m) and "password" not in json.dumps(m).lower()
    [log] = m["logs"]
    data = Path(log["path"]).read_bytes()
    assert log["size"] == len(data) and log["sha256"] == hashlib.sha256(data).hexdigest()
    assert log["lines_read"] == data.count(b"\n") and log["lines_skipped"] == 0
    assert m["window"]["seconds"] == 5.0 and m["window"]["first_failure"].startswith("2025-10-08T09:41:27")
    assert m["figures"]["diagnosis"]["total_users"] > 0
    # the index reads its figures from the manifest
    index = (out / "index.md").read_text()
    assert f"| {m['figures']['diagnosis']['total_users']:,} |" in index


# -- evidence/ ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_evidence_is_kept_and_linked(demo_report):
    folder, _, _ = demo_report
    files = sorted((folder / "evidence").glob("*.txt"))
    assert {p.name for p in files} >= {"deletions.txt"}
    [copy] = [p for p in files if p.name.startswith("demo-app.log")]
    text = copy.read_text()
    failing = [ln for ln in text.splitlines() if ln.startswith(">")]
    assert len(failing) == 1 and "violates foreign key constraint" in failing[0]
    assert "Detail: Key (primary_workspace_id)" in text  # the context line that names the key
    assert f"{demo_log_path()}:" in text  # file and line of origin
    # the deletion's transaction, as the report's own run.json figures and the demo's audit log give it
    deletions = (folder / "evidence" / "deletions.txt").read_text()
    assert re.search(r"workspace a7189b92-ba75-4160-8fa0-426bfe8fa33a deleted at 2025-10-08 09:41:27\.118 UTC "
                     r"\(audit transaction \d+", deletions)
    md = (folder / "00-postmortem.md").read_text()
    links = re.findall(r"\]\((evidence/[^)]+)\)", md)
    assert links and all((folder / link).is_file() for link in links)


# -- remediation says what it runs ------------------------------------------------------------------------
@pytest.mark.slow
def test_remediation_uses_the_latest_runs_race_lab(demo_report, tmp_path):
    folder, out, _ = demo_report
    proc = subprocess.run([EXE, "remediation", "--out", str(tmp_path), "--reports", str(out)],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"verified by the race lab of the report run {folder}" in proc.stderr
    cells = json.loads((folder / "race-lab.json").read_text())["cells"]
    assert (tmp_path / "02_workspace_members_cascade.sql").is_file() and len(cells) > 1


def test_latest_race_results_none_without_runs(tmp_path):
    assert render.latest_race_results(tmp_path) == (None, None)
    (tmp_path / "2025-10-08").mkdir()
    (tmp_path / "2025-10-08" / "race-lab.json").write_text("not json")
    assert render.latest_race_results(tmp_path) == (None, None)


# -- leftovers --------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    import tempfile

    dead = _dead_pid()
    stale = tmp_path / f".staging-2025-10-08-{dead}-abc123"
    live = tmp_path / f".staging-2025-10-08-{os.getpid()}-abc123"
    private = Path(tempfile.mkdtemp(prefix=f"incidentkit-run-{dead}-"))
    for d in (stale, live):
        d.mkdir()
        (d / "kernel-ipc-1").write_text("")
    removed = render.clean_leftovers(tmp_path)
    assert not stale.exists() and not private.exists()
    assert live.exists() and set(removed) >= {stale, private}


# -- concurrent runs, limits and paths passed through --------------------------------------------------------
@pytest.mark.slow
def test_two_reports_at_once_with_limits_and_relative_schema_paths(tmp_path, pg_server):
    """Two reports started together both succeed (private kernel sockets); each notebook gets the
    timeouts asked for; a relative --schema-map and ./pyproject.toml mean what they mean in the
    user's directory."""
    mapping = '[users]\ntable = "public.users"\n'
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "map.toml").write_text(mapping)
    (b / "pyproject.toml").write_text('[tool.incidentkit.schema.users]\ntable = "public.users"\n')
    common = ["report", "--demo", "--no-race-lab", "--date", "2025-10-08"]
    procs = [
        subprocess.Popen([EXE, *common, "--out", "out", "--schema-map", "map.toml", "--statement-timeout", "7",
                          "--lock-timeout", "3", "--idle-timeout", "9"], cwd=a, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen([EXE, *common, "--out", "out"], cwd=b, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    md_a = (a / "out" / "2025-10-08" / "01-diagnosis.md").read_text()
    assert "| Limits | statement 7 s, lock 3 s, idle in transaction 9 s |" in md_a
    assert str(a / "map.toml") in md_a
    for name in ("02-affected-users.md", "03-user-timeline-01.md", "00-postmortem.md"):
        if (a / "out" / "2025-10-08" / name).exists() and "Limits" in (a / "out" / "2025-10-08" / name).read_text():
            assert "statement 7 s" in (a / "out" / "2025-10-08" / name).read_text(), name
    md_b = (b / "out" / "2025-10-08" / "01-diagnosis.md").read_text()
    assert "| Schema mapping | pyproject.toml \\[tool.incidentkit.schema\\] |" in md_b  # b's own, read in b
    assert "statement 30 s" in md_b
    notebooks = Path(render.config.notebooks_dir())
    assert not list(notebooks.glob("kernel-ipc*")), "no kernel socket is left beside the notebooks"
    assert not [p for p in (a / "out").iterdir() if p.name.startswith(".staging")]


@pytest.mark.slow
def test_a_report_stops_the_embedded_server_its_race_lab_started(tmp_path, pg_server, demo_template):
    """Against DATABASE_URL the race lab's kernel starts the embedded server on demand; the report
    stops it when done (its own cache directory here, so the session's server is not involved)."""
    from incidentkit.db import embedded

    name = f"ik_rl_{os.getpid()}"
    url = pg_server.create_database(name, template=demo_template)
    cache = tmp_path / "cache"
    env = {**_env(), "DATABASE_URL": url, "INCIDENTKIT_CACHE_DIR": str(cache)}
    try:
        proc = subprocess.run([EXE, "report", "--out", str(tmp_path / "out"), "--logs", str(demo_log_path())],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert (cache / f"pg{embedded.server_version(embedded.find_bin_dir())}" / "PG_VERSION").exists(), \
            "the race lab ran on its own embedded server"
        server = embedded.EmbeddedServer(cache / f"pg{embedded.server_version(embedded.find_bin_dir())}")
        assert not server.is_running(), "the server the race lab started was left running"
    finally:
        pg_server.drop_database(name)


# -- planning and escaping: pure functions (fast tier) ---------------------------------------------------
def test_planning_follows_the_affected_users_in_order(tmp_path, monkeypatch):
    from types import SimpleNamespace as NS

    found = NS(failures=[NS(user_id="did:privy:b"), NS(user_id=None), NS(user_id="did:privy:a"),
                         NS(user_id="did:privy:b")])
    assert render.affected_users(found) == ["did:privy:b", "did:privy:a"]
    assert render.affected_users(None) == []
    runs = render.timeline_runs({"database_url_env": ""}, ["/x.log"], 2.0, ["u1", "u2", "u3"], max_users=2)
    assert [r.name for r in runs] == ["03-user-timeline-01", "03-user-timeline-02"]
    assert runs[1].parameters == {"database_url_env": "", "logs": ["/x.log"], "window_seconds": 2.0, "user_id": "u2"}


def test_parameters_carry_limits_and_absolute_paths(tmp_path, monkeypatch):
    from incidentkit.config import Timeouts

    monkeypatch.chdir(tmp_path)
    params = render.base_parameters("PROD_URL", "map.toml", Timeouts(7000, 3000, 9000))
    assert params == {"database_url_env": "PROD_URL", "schema_map": str(tmp_path / "map.toml"),
                      "timeouts": {"statement_ms": 7000, "lock_ms": 3000, "idle_in_transaction_ms": 9000}}
    assert render._resolved_logs(["logs/*.log", "a.log"]) == [str(tmp_path / "logs/*.log"), str(tmp_path / "a.log")]


@pytest.mark.parametrize("hostile", [
    '<img src=x onerror="alert(1)">',
    "<script>alert(1)</script>",
    "[x](javascript:alert(1))",
    "[x]( JavaScript:alert(1))",
    "![t](https://tracker.invalid/p.png)",
    "<https://tracker.invalid/autolink>",
])
def test_values_in_markdown_are_inert(hostile):
    """Rendered by the Markdown renderer the HTML reports use: no tag, no image, no script link."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    from incidentkit.report.notebook import md_text, safe_markdown

    for markdown in (safe_markdown(f"the key was {hostile}."), f"| key |\n|---|\n| {md_text(hostile)} |"):
        html = markdown2html_mistune(markdown).lower()
        assert not re.search(r"<(img|script|svg)\b", html), html
        assert "javascript:" not in re.sub(r">[^<]*<", "><", html), html  # only as shown text
        assert not re.search(r"<[^>]*\ssrc=", html), html  # nothing is fetched (a bare URL may become a link: not followed)


def test_the_kits_own_links_survive():
    from incidentkit.report.notebook import safe_markdown

    text = "see [the record](evidence/app.log-1a2b3c.txt) and [docs](https://example.org/x)"
    assert safe_markdown(text) == text


def test_a_run_without_failures_still_has_its_evidence_folder(tmp_path):
    from types import SimpleNamespace as NS

    from incidentkit.report.kept_evidence import write_evidence

    [none] = write_evidence(tmp_path, None)
    assert none == tmp_path / "evidence" / "README.txt" and "no logs were read" in none.read_text()
    [empty] = write_evidence(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path, NS(failures=[]))
    assert "no record is kept" in empty.read_text()


@pytest.mark.slow
def test_every_failure_links_to_its_record(demo_report):
    folder, _, _ = demo_report
    md = (folder / "02-affected-users.md").read_text()
    links = re.findall(r"\[line (\d+)\]\((evidence/[^)]+)\)", md)
    assert links, "the affected-users table links each failure to its record"
    for line, link in links:
        assert f":{line} -- failure at" in (folder / link).read_text()


def test_links_only_to_the_reports_own_files():
    from incidentkit.report.notebook import Link

    assert Link("line 7", "evidence/a.log-1a2b3c.txt").markdown() == "[line 7](evidence/a.log-1a2b3c.txt)"
    for href in ("javascript:alert(1)", "/etc/passwd", "../x", "evidence/../../x", "https://x.invalid/"):
        assert "](" not in Link("x", href).markdown()
