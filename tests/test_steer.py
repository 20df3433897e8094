"""The notebooks' control (report.steer): interactive only in a kernel with a front end, static
under a report run or INCIDENTKIT_STATIC; its choices are the users whose logins failed."""

from __future__ import annotations

import pytest

from incidentkit import Database, config
from incidentkit.report import steer
from incidentkit.report.notebook import SHARE_ENV

DEMO_USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"
DEMO_WS = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"


def test_static_outside_a_kernel_in_a_report_run_and_when_asked(monkeypatch, tmp_path):
    assert steer.interactive() is False  # pytest is no kernel
    monkeypatch.setenv(SHARE_ENV, str(tmp_path))
    assert steer.interactive() is False
    monkeypatch.delenv(SHARE_ENV)
    monkeypatch.setenv(steer.STATIC_ENV, "1")
    assert steer.interactive() is False


def test_static_control_shows_nothing(demo_db):
    assert steer.timeline_control(Database(demo_db), user_id=DEMO_USER, logs=[config.demo_log_path()]) is None


def test_the_choices_are_the_users_whose_logins_failed(demo_db):
    assert steer.failed_users(Database(demo_db), [config.demo_log_path()]) == [(DEMO_USER, DEMO_WS)]
    assert steer.failed_users(Database(demo_db), None) == []  # not the demo's own database name: no logs


@pytest.mark.slow
def test_in_a_real_kernel_the_control_redraws_for_another_user(demo_db, tmp_path, monkeypatch):
    """A real kernel (nbclient) with the control: it displays a widget, and setting the drop-down
    to another value redraws (the Output widget's content changes)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv(steer.STATIC_ENV, raising=False)
    monkeypatch.setenv("IK_STEER_URL", demo_db)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import incidentkit as ik\n"
        "from incidentkit.report import steer\n"
        "db = ik.Database.from_env('IK_STEER_URL')\n"
        f"box = steer.timeline_control(db, user_id={DEMO_USER!r}, logs=[{str(config.demo_log_path())!r}])\n"
        "print(type(box).__name__)"),
        nbformat.v4.new_code_cell(
        "who, window = box.children[0].children[:2]\n"
        "out = box.children[1]\n"
        "before = str(out.outputs)\n"
        "window.value = 1.0"),
        nbformat.v4.new_code_cell(  # the front end syncs the Output widget's outputs back between cells
        "after = str(out.outputs)\n"
        "print('redrawn', 'the 5 s window' in before, 'the 1 s window' in after, 'image/png' in after)")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.outputs if o.get("output_type") == "stream")
    assert "VBox" in text and "redrawn True True True" in text
    views = [o for o in nb.cells[0].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, "the control is a widget view"
