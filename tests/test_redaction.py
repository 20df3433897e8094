"""``incidentkit report --redact``: stable pseudonyms for user ids and e-mails in every artifact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from incidentkit.db.demo import INCIDENT_USER, INCIDENT_WORKSPACE
from incidentkit.evidence.redact import Redactor

DID = re.compile(rb"did:privy:[a-z0-9]+")


def _report(tmp_path, *flags):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    p = subprocess.run([shutil.which("incidentkit"), "report", "--demo", "--out", str(tmp_path), "--date",
                        "2025-10-08", *flags], capture_output=True, text=True, env=env, timeout=600,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return tmp_path / "2025-10-08", p


def _everything(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_redacted_report_has_no_user_id_anywhere(tmp_path):
    folder, p = _report(tmp_path, "--redact")
    files = _everything(folder)
    assert any(f.suffix == ".png" for f in files) and any(f.suffix == ".ipynb" for f in files)
    for path, data in files.items():
        assert not DID.search(data), f"a user id survived in {path}"
    assert not DID.search(p.stdout.encode())
    # The same user has the same pseudonym in every artifact that names them.
    pseudonyms = set()
    for path, data in files.items():
        if path.suffix in (".md", ".ipynb", ".html"):
            pseudonyms |= set(re.findall(rb"user-[0-9a-f]{10}", data))
    timeline_md = (folder / "03-user-timeline-01.md").read_bytes()
    named = set(re.findall(rb"user-[0-9a-f]{10}", timeline_md))
    assert named and named <= pseudonyms
    postmortem = (folder / "00-postmortem.md").read_bytes()
    incident_pseudonym = Redactor(b"unknown").user(INCIDENT_USER).encode()
    assert incident_pseudonym not in postmortem  # the key is the report's own, never a fixed one
    assert named & set(re.findall(rb"user-[0-9a-f]{10}", postmortem))
    # Workspace ids stay unless asked.
    assert INCIDENT_WORKSPACE.encode() in postmortem
    # The entry page names the timeline by pseudonym too.
    assert b"did:privy" not in (folder / "README.md").read_bytes()


@pytest.mark.slow
def test_redact_workspaces_too(tmp_path):
    folder, _ = _report(tmp_path, "--redact-workspaces", "--no-race-lab")
    for path, data in _everything(folder).items():
        assert INCIDENT_WORKSPACE.encode() not in data, path
        assert not DID.search(data), path


def test_pseudonyms_are_stable_and_keyed():
    a, b = Redactor(b"k" * 32), Redactor(b"j" * 32)
    text = f"{INCIDENT_USER} wrote to ops@example.com about {INCIDENT_USER}"
    out = a.text(text)
    assert INCIDENT_USER not in out and "ops@example.com" not in out
    assert out.count(a.user(INCIDENT_USER)) == 2
    assert a.user(INCIDENT_USER) != b.user(INCIDENT_USER)
    assert a.text(out) == out  # idempotent: pseudonyms are not redacted again
    assert INCIDENT_WORKSPACE in a.text(INCIDENT_WORKSPACE)
    assert INCIDENT_WORKSPACE not in Redactor(b"k" * 32, workspaces=True).text(INCIDENT_WORKSPACE)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["00-postmortem", "01-diagnosis", "02-affected-users", "03-user-timeline-01"])
def test_markdown_reads_well_on_github(demo_report, name):
    folder, _, _ = demo_report
    md = (folder / f"{name}.md").read_text()
    assert "<style" not in md.lower() and "<table" not in md.lower() and "<div" not in md.lower()
    for link in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", md):
        if not link.startswith(("http://", "https://", "#")):
            assert (folder / link).is_file(), f"{name}.md links {link}, which is not there"
    if name != "00-postmortem":
        assert re.search(r"^\|.*\|\n\|(---\|)+$", md, re.M), "a pipe table"
