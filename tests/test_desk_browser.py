"""The investigation desk in a real browser: ``incidentkit investigate`` starts a real JupyterLab,
Debian's Chromium (driven by Playwright, no downloaded browser) opens each notebook of the working
folder and runs it all, as an engineer would (issue 12's test).

For each notebook: Run All finishes, no cell has an error output, the notebooks that draw have
their figures, a screenshot is kept in ``tests/artifacts/screenshots/desk/``. In the timeline
notebook, the control switches from one user to the other and the timeline redraws. The shipped
notebooks are byte-identical afterwards, and SIGTERM leaves nothing on the port.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from incidentkit import config

pytestmark = pytest.mark.slow  # a JupyterLab, kernels, a browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "screenshots" / "desk"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHIPPED = sorted(config.notebooks_dir().glob("[0-9][0-9]-*.ipynb"))
ADMIN = "did:privy:cmepupsjwkkftpvfdaww49bkb"  # the member who deleted the workspace: no failed login
INCIDENT_USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"
#: Notebooks that draw at least one figure when run on the demo.
DRAWS = {"01-diagnosis", "02-affected-users", "03-user-timeline", "00-postmortem"}

#: The notebook's run state through the application's own model (JupyterLab exposes it with
#: ``--LabApp.expose_app_in_browser``): is the kernel idle, has every code cell run, which errors.
STATE_JS = """() => {
  const w = window.__nb;
  if (!w || !w.content || !w.sessionContext || !w.sessionContext.session) return null;
  const kernel = w.sessionContext.session.kernel;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  return {
    status: kernel ? kernel.status : 'none',
    cells: cells.length,
    pending: cells.filter(c => c.model.executionCount === null).length,
    errors: cells.flatMap(c => c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                 .map(o => o.ename + ': ' + o.evalue)),
    images: w.node.querySelectorAll('.jp-OutputArea-output img').length,
  };
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SHIPPED}


def _answers(base: str, token: str) -> bool:
    try:
        urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
        return True
    except OSError:
        return False


@pytest.fixture
def desk(tmp_path, demo_db):
    """A real JupyterLab on a new investigation of the demo (the session's embedded server)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"))
    env.pop("INCIDENTKIT_STATIC", None)  # this is the interactive desk
    ik = shutil.which("incidentkit")
    made = subprocess.run([ik, "investigate", "browser", "--no-lab"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    folder = Path(made.stdout.strip().splitlines()[-1])
    params = folder / "parameters.toml"
    text = params.read_text()
    text = re.sub(r'^user_id = .*$', f'user_id = "{ADMIN}"', text, flags=re.M)  # switch to the other in the control
    text = re.sub(r'^race_lab = .*$', "race_lab = false", text, flags=re.M)  # 04 runs it; 00 need not again
    params.write_text(text)
    reopened = subprocess.run([ik, "investigate", folder.name, "--no-lab"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert reopened.returncode == 0, reopened.stderr
    port, token = _free_port(), "ik-desk-token"
    proc = subprocess.Popen([ik, "investigate", folder.name, "--no-browser", "--port", str(port), "--",
                             f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while not _answers(base, token):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "JupyterLab did not start"
        time.sleep(0.3)
    yield {"base": base, "token": token, "folder": folder, "proc": proc}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


OPEN_JS = """async (path) => {
  const app = window.jupyterapp;
  if (window.__nb) {  // the previous notebook: saved into the investigation, then closed
    await window.__nb.context.save();
    window.__nb.dispose();
  }
  const w = await app.commands.execute('docmanager:open', {path});
  await w.context.ready;
  await w.sessionContext.ready;
  app.shell.activateById(w.id);
  window.__nb = w;
  return w.id;
}"""


def _settings(base: str, token: str, plugin: str, raw: dict) -> None:
    """Save a JupyterLab user setting through its REST API (as the settings editor does)."""
    body = json.dumps({"raw": json.dumps(raw)}).encode()
    req = urllib.request.Request(f"{base}/lab/api/settings/{plugin}?token={token}", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()


def _run_all(page, base: str, token: str, name: str, timeout: float = 240.0) -> dict:
    """Open ``name`` (the previous notebook saved and closed) and run all its cells; its final state."""
    page.evaluate(OPEN_JS, name)
    page.wait_for_function("() => window.__nb.sessionContext.session && window.__nb.sessionContext.session.kernel"
                           " && ['idle', 'busy'].includes(window.__nb.sessionContext.session.kernel.status)",
                           timeout=120_000)
    run_all = ("async () => { window.jupyterapp.shell.activateById(window.__nb.id);"
               " return String(await window.jupyterapp.commands.execute('notebook:run-all-cells')); }")
    page.evaluate(run_all)
    deadline = time.monotonic() + timeout
    asked = time.monotonic()
    while True:
        state = page.evaluate(STATE_JS)
        if state and state["status"] == "idle" and state["pending"] == 0:
            return state
        if state and state["status"] == "idle" and state["pending"] == state.get("cells") and \
                time.monotonic() - asked > 20:
            page.evaluate(run_all)  # the kernel was not connected yet when first asked: ask again
            asked = time.monotonic()
        if time.monotonic() > deadline:
            page.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}-stuck.png"))
            raise AssertionError(f"{name} did not finish: {state}")
        time.sleep(0.5)


def test_each_notebook_runs_in_jupyterlab_and_the_control_switches_the_user(desk):
    from playwright.sync_api import sync_playwright

    before = _digests()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        # every cell rendered (no windowing), so the control is in the page wherever it scrolled
        _settings(desk["base"], desk["token"], "@jupyterlab/notebook-extension:tracker", {"windowingMode": "none"})
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console: list[str] = []
        page.on("pageerror", lambda e: console.append(str(e)))
        page.goto(f"{desk['base']}/lab?reset&token={desk['token']}", wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=90_000)
        page.evaluate("() => window.jupyterapp.started")
        for nb in SHIPPED:
            state = _run_all(page, desk["base"], desk["token"], nb.name)
            assert state["errors"] == [], (nb.name, state["errors"])
            if nb.stem in DRAWS:
                assert state["images"] > 0, f"{nb.name}: no figure"
            page.screenshot(path=str(ARTIFACTS / f"{nb.stem}.png"), full_page=False)
            if nb.stem == "03-user-timeline":
                panel = "#" + page.evaluate("() => window.__nb.id")
                control = page.locator(f"{panel} .widget-dropdown select").first
                control.wait_for(timeout=30_000)
                output = page.locator(f"{panel} .widget-output").first
                assert "No failed login" in output.inner_text(timeout=30_000)  # the admin's timeline first
                label = next(o for o in control.locator("option").all_inner_texts() if INCIDENT_USER in o)
                control.select_option(label=label)
                page.wait_for_function(
                    "() => [...window.__nb.node.querySelectorAll('.widget-output')]"
                    ".some(e => e.innerText.includes('concurrent_deletion'))", timeout=60_000)
                control.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "03-user-timeline-switched.png"), full_page=False)
        assert not [e for e in console if "Error" in e], console
        browser.close()
    # the investigation's copies ran; the shipped notebooks were never written
    assert _digests() == before
    proc = desk["proc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert proc.returncode == 0
    assert not _answers(desk["base"], desk["token"]), "JupyterLab still answers on its port after SIGTERM"
