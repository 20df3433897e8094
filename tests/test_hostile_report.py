"""A log is untrusted input: a report rendered from a hostile log runs no script and still renders.

The log is the demo's, with HTML, Markdown and JavaScript put in every field the kit reads from
it (the key in ``Detail:``, the message, a second failure's key written as a Markdown link and
image, and the file's own name). The report is opened in Debian's headless Chromium: no script
may run (each payload would set ``window.__pwned``), no dialog may open, nothing may be fetched,
and the pages still show their headings and figures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from incidentkit.config import demo_log_path
from incidentkit.report.page import CSP, has_csp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
WORKSPACE = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"
PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    "[click me](javascript:window.__pwned=3)",
    "![x](https://example.invalid/x.png)<svg/onload=window.__pwned=5>",
]
FILE_NAME = "<svg onload=window.__pwned=4>.log"


def _hostile_log(folder: Path) -> Path:
    text = demo_log_path().read_text()
    text = text.replace(f"=({WORKSPACE})", f"=({PAYLOADS[0]})")
    text = text.replace("tRPC failed on workspace.getOrCreateWorkspaceV2",
                        f"tRPC failed on {PAYLOADS[1]} **bold** {PAYLOADS[2]}")
    # a second failure whose key is a Markdown link and image
    second = [ln for ln in text.splitlines() if "violates foreign key constraint" in ln][0]
    text += (f"2025-10-08T09:41:40.000Z error [web] tRPC failed {PAYLOADS[3]} "
             "user=did:privy:cmgiqkpg0001wl40cqhofcvo4\n"
             f"{second}\nDetail: Key (primary_workspace_id)=({PAYLOADS[2]}) is not present in table \"workspaces\".\n")
    path = folder / FILE_NAME
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory, pg_server):
    folder = tmp_path_factory.mktemp("hostile")
    log = _hostile_log(folder)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.run([shutil.which("incidentkit"), "report", "--demo", "--logs", str(log), "--out",
                           str(folder / "R"), "--no-race-lab", "--date", "2025-10-08"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return folder / "R"


@pytest.mark.slow
def test_no_payload_survives_as_markup(hostile_report):
    pages = sorted(hostile_report.rglob("*.html"))
    assert len(pages) >= 5
    shown = 0
    for page in pages:
        html = page.read_text()
        assert has_csp(html), page.name
        assert not re.search(r"<(img|svg|script)\b[^>]*(onerror|onload|__pwned)", html, re.I), page.name
        assert "<script>window.__pwned" not in html
        assert 'href="javascript:' not in html.lower()
        shown += html.count("&lt;img src=x onerror=")
    assert shown > 0, "the hostile key is shown, as text"
    for md in hostile_report.rglob("*.md"):
        text = md.read_text()
        assert "<img src=x" not in text and "<script>" not in text and "<svg" not in text, md.name
        assert "](javascript:" not in text, md.name


@pytest.mark.slow
def test_hostile_report_runs_no_script_in_chromium(hostile_report):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (tests/run installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    pages = sorted(hostile_report.rglob("*.html"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for path in pages:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                dialogs: list[str] = []
                requests: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.on("request", lambda r: requests.append(r.url))
                page.goto(path.as_uri(), wait_until="load")
                for link in page.query_selector_all("a[href]"):  # clicking a link runs nothing either
                    href = link.get_attribute("href") or ""
                    assert not href.lower().startswith("javascript:"), (path.name, href)
                facts = page.evaluate("""() => ({
                    pwned: window.__pwned === undefined ? null : window.__pwned,
                    heading: (document.querySelector('h1') || {}).textContent || '',
                    text: document.body.innerText.length,
                })""")
                page.close()
                assert facts["pwned"] is None, (path.name, facts["pwned"])
                assert dialogs == [], (path.name, dialogs)
                assert facts["heading"] and facts["text"] > 100, (path.name, facts)
                fetched = [u for u in requests if not u.startswith(("file:", "data:"))]
                assert fetched == [], (path.name, fetched)
        finally:
            browser.close()


def test_policy_forbids_script():
    assert "script-src 'none'" in CSP and "default-src 'none'" in CSP
    page = f'<html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head><body></body></html>'
    assert has_csp(page)
    assert not has_csp("<html><head></head><body><meta http-equiv=\"Content-Security-Policy\"></body></html>")
