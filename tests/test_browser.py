"""The reports in a real browser: Debian's headless Chromium, driven by Playwright (no downloaded browser).

For each page: no console errors, every image loads, nothing wider than a 1280-px window,
and every relative link resolves to a page that loads. Screenshots are kept in
``tests/artifacts/screenshots/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytestmark = pytest.mark.slow  # a browser, and the session's demo report

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _pages(demo_report) -> list[Path]:
    folder, out, _ = demo_report
    return [out / "index.html", folder / "index.html", *sorted(folder.glob("0*.html"))]


def inspect(browser, path: Path, shot: Path) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    facts = page.evaluate("""() => ({
        width: document.documentElement.scrollWidth,
        images: [...document.images].map(i => ({src: i.src.slice(0, 60), ok: i.complete && i.naturalWidth > 0})),
        links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    })""")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return {**facts, "errors": errors, "failed": failed}


def test_report_pages_in_chromium(browser, demo_report):
    pages = _pages(demo_report)
    assert len(pages) >= 4, pages
    for path in pages:
        facts = inspect(browser, path, ARTIFACTS / f"{path.parent.name}-{path.stem}.png")
        assert facts["errors"] == [], (path, facts["errors"])
        assert facts["failed"] == [], (path, facts["failed"])
        assert facts["width"] <= 1280, (path, facts["width"])
        assert all(i["ok"] for i in facts["images"]), (path, facts["images"])
        for href in facts["links"]:
            parsed = urlparse(href)
            if parsed.scheme in ("http", "https", "mailto") or href.startswith("#"):
                continue
            target = (path.parent / unquote(parsed.path)).resolve()
            assert target.is_file(), f"{path.name}: broken link {href}"
        if path.stem.startswith(("01", "02", "03")):  # the notebooks that draw a figure
            assert facts["images"], f"{path.name} shows no figure"


def test_entry_page_links_every_notebook_in_order(browser, demo_report):
    folder, out, _ = demo_report
    facts = inspect(browser, folder / "index.html", ARTIFACTS / "entry-page.png")
    html_links = [h for h in facts["links"] if h.endswith(".html")]
    assert html_links == sorted(html_links), html_links  # numbered in reading order
    assert {Path(h).name for h in html_links} == {p.name for p in folder.glob("0*.html")}
    index = inspect(browser, out / "index.html", ARTIFACTS / "index.png")
    assert f"{folder.name}/index.html" in index["links"]
