"""The real ``incidentkit`` command, run as a user runs it."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys

import pytest

from incidentkit.db.demo import EXPECTED

EXE = shutil.which("incidentkit") or ""


def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    cmd = [EXE] if EXE else [sys.executable, "-m", "incidentkit"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_clean_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_entry_point_is_installed():
    assert EXE, "the console script 'incidentkit' is not on PATH"
    p = run("--version")
    assert p.returncode == 0 and p.stdout.startswith("incidentkit ")


def test_diagnose_demo_json_prints_the_reports_figures():
    p = run("diagnose", "--demo", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert {k: data[k] for k in EXPECTED} == EXPECTED
    assert data["samples"] == {"invalid_primary_workspace": [], "orphaned_memberships": []}
    assert {fk["name"] for fk in data["foreign_keys"]} == {
        "users_primary_workspace_id_workspaces_id_fk", "workspace_members_workspace_id_workspaces_id_fk"}
    assert dt.datetime.fromisoformat(data["snapshot_at"].replace("Z", "+00:00")).tzinfo is not None


def test_diagnose_and_check_read_database_url(broken_db):
    fresh_db = broken_db
    env = {"DATABASE_URL": fresh_db}
    p = run("diagnose", "--json", env=env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["users_with_invalid_primary_workspace"] == 2 and data["orphaned_memberships"] == 3
    assert data["samples"]["orphaned_memberships"][0] == {
        "membership_id": "aaaaaaaa-0000-4000-8000-000000000001", "user_id": "did:privy:bad1",
        "workspace_id": "22222222-2222-4222-8222-222222222222"}
    p = run("check", env=env)
    assert p.returncode == 1
    assert "check failed" in p.stdout and "orphaned memberships: 3 (max 0)" in p.stdout
    assert len(p.stdout.splitlines()) <= 24  # one screen
    p = run("check", "--max-invalid-primary", "2", "--max-orphaned-memberships", "3", env=env)
    assert p.returncode == 0, p.stdout
    # Another variable name, as --database-url-env says.
    p = run("check", "--database-url-env", "INCIDENT_DB", env={"INCIDENT_DB": fresh_db})
    assert p.returncode == 1


def test_check_passes_on_the_demo():
    p = run("check", "--demo")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("check passed")


@pytest.mark.parametrize("env, args, expected", [
    ({}, ["diagnose"], "DATABASE_URL is not set"),
    ({"DATABASE_URL": "mysql://u:p@h/db"}, ["diagnose"], "must start with postgresql://"),
    ({"DATABASE_URL": "postgresql://u:p@h:notaport/db"}, ["check"], "malformed"),
    ({"DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/db"}, ["diagnose"], "connection refused"),
    ({}, ["report", "--demo", "--date", "2025-13-40"], "not a real date"),
    ({}, ["diagnose", "--demo", "--sample-limit", "-3"], "sample-limit"),
    ({}, ["nonsense-verb"], "invalid choice"),
])
def test_bad_input_is_one_clear_line(env, args, expected):
    line = assert_clean_error(run(*args, env=env, timeout=60))
    assert expected in line
    assert "hunter2" not in line


def test_a_url_on_the_command_line_is_refused_without_echoing_its_password():
    line = assert_clean_error(run("diagnose", "--database-url", "postgresql://me:s3cr3t-pw@db.example/prod"))
    assert "s3cr3t-pw" not in line


@pytest.mark.slow
def test_report_writes_a_dated_folder(tmp_path):
    p = run("report", "--demo", "--out", str(tmp_path), "--date", "2025-10-08", "--no-race-lab")
    assert p.returncode == 0, p.stderr
    folder = tmp_path / "2025-10-08"
    assert str(folder) in p.stdout
    for suffix in (".ipynb", ".html", ".md"):
        assert (folder / f"01-diagnosis{suffix}").is_file()
    md = (folder / "01-diagnosis.md").read_text()
    assert "| Total users | 179 |" in md
    assert "127.0.0.1/incidentkit_demo" in md  # host/dbname only
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_demo_renders_the_full_report(demo_report):
    folder, out, p = demo_report
    assert folder.is_dir() and p.stdout.splitlines()[0] == str(folder)
    names = {f.name for f in folder.iterdir()}
    assert {"01-diagnosis.ipynb", "01-diagnosis.html", "01-diagnosis.md", "README.md", "index.html"} <= names
    for line in p.stdout.splitlines()[1:]:
        assert os.path.exists(line.strip()), line
    assert (out / "index.md").is_file() and (out / "index.html").is_file()
