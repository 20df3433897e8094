"""Report rendering: the files written, their shape, atomic publishing and failed runs."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from incidentkit import ReportFailed
from incidentkit.report import render as reports
from incidentkit.exceptions import ConfigError


@pytest.fixture(scope="module")
def diagnosis_report(tmp_path_factory, pg_server):
    out = tmp_path_factory.mktemp("reports")
    result = reports.render_report([reports.diagnosis_run(reports.base_parameters())], out, date="2025-10-08",
                                   progress=lambda _: None)
    return result


@pytest.mark.slow
def test_files_per_notebook(diagnosis_report):
    folder = diagnosis_report.folder
    assert folder.name == "2025-10-08"
    for name in ("01-diagnosis.ipynb", "01-diagnosis.html", "01-diagnosis.md", "README.md", "index.html"):
        assert (folder / name).is_file(), name
    in_folder = {p for p in diagnosis_report.files if folder in p.parents}
    assert in_folder == {p for p in folder.rglob("*") if p.is_file()}
    assert {p.name for p in diagnosis_report.files if folder not in p.parents} == {"index.md", "index.html"}


@pytest.mark.slow
def test_markdown_has_pipe_tables_and_relative_images(diagnosis_report):
    md = (diagnosis_report.folder / "01-diagnosis.md").read_text()
    assert "| figure | value |" in md and "|---|---|" in md
    assert "<table" not in md and "<style" not in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links, "the chart is linked"
    for link in links:
        assert not link.startswith(("/", "http")) and (diagnosis_report.folder / link).is_file()
    assert "import incidentkit" not in md  # code hidden by default


@pytest.mark.slow
def test_html_is_self_contained(diagnosis_report):
    html = (diagnosis_report.folder / "01-diagnosis.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"<script[^>]+src=[\"']https?://", html)
    assert not re.search(r"<link[^>]+href=[\"']https?://", html)
    assert "import incidentkit" not in re.sub(r"<[^>]+>", "", html)


@pytest.mark.slow
def test_report_states_database_snapshot_parameters_and_version(diagnosis_report):
    from incidentkit import __version__

    md = (diagnosis_report.folder / "01-diagnosis.md").read_text()
    assert "| Database | `127.0.0.1/incidentkit_demo` |" in md
    assert re.search(r"\| Snapshot \| \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3,6} UTC \|", md)
    assert "Parameter `sample_limit`" in md
    assert f"| incidentkit | {__version__} |" in md


@pytest.mark.slow
def test_show_code_keeps_the_code(tmp_path, pg_server):
    result = reports.render_report([reports.diagnosis_run(reports.base_parameters())], tmp_path, date="2025-10-09",
                                   show_code=True, progress=lambda _: None)
    assert "import incidentkit as ik" in (result.folder / "01-diagnosis.md").read_text()
    html_text = re.sub(r"<[^>]+>", "", (result.folder / "01-diagnosis.html").read_text())
    assert "import incidentkit as ik" in html_text


@pytest.mark.slow
def test_second_run_same_date_gets_its_own_folder(diagnosis_report, tmp_path, pg_server):
    out = diagnosis_report.folder.parent
    again = reports.render_report([reports.diagnosis_run(reports.base_parameters())], out, date="2025-10-08",
                                  progress=lambda _: None)
    assert again.folder.name == "2025-10-08-2"
    assert (diagnosis_report.folder / "01-diagnosis.md").is_file()


@pytest.mark.slow
def test_a_failing_notebook_is_kept_under_failed_and_not_published(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("# boom"),
        new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("raise RuntimeError('the kernel saw this fail')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src = tmp_path / "99-boom.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "out"
    with pytest.raises(ReportFailed) as e:
        reports.render_report([reports.NotebookRun(src, "99-boom", {"x": 2})], out, date="2025-10-08",
                              progress=lambda _: None)
    assert "RuntimeError: the kernel saw this fail" in str(e.value)
    failed = e.value.failed_dir
    assert failed.parent == out / "failed" and str(failed) in str(e.value)
    executed = nbformat.read(failed / "99-boom.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", []))
    assert not (out / "2025-10-08").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_bad_dates_and_unwritable_dirs(tmp_path):
    with pytest.raises(ConfigError):
        reports.parse_date("08/10/2025")
    assert reports.parse_date("2025-10-08") == "2025-10-08"
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(ConfigError):
        reports.render_report([], blocker / "sub", date="2025-10-08")
