"""Dated reports: papermill executes the notebooks, nbconvert turns them into HTML and Markdown.

``render_report`` writes ``OUT/YYYY-MM-DD/`` holding, per notebook, the executed ``.ipynb``,
a self-contained ``.html`` (figures inline, code hidden unless ``show_code``) and a ``.md``
(pipe tables, figures as PNG files beside it behind relative links), plus an entry page
(``index.html``, ``README.md``) linking them in reading order.

A report folder appears whole or not at all: everything is written into a hidden staging
folder in ``OUT`` and renamed into place at the end; a second run for the same date gets
a suffixed folder (``2025-10-08-2``). When a notebook fails, the staging folder, with the
failing cell marked by papermill, is moved to ``OUT/failed/<date>-<time>/`` and
:class:`ReportFailed` says where; nothing is published as a dated report.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import html
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from .. import config
from ..exceptions import ConfigError, ReportFailed

TEMPLATES_DIR = config.PACKAGE_DIR / "templates"


@dataclass
class NotebookRun:
    """One notebook to execute: its source, the output name, and its parameters."""

    notebook: Path
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str = ""


@dataclass
class ReportResult:
    folder: Path
    date: str
    files: list[Path]
    runs: list[NotebookRun]

    def lines(self) -> list[str]:
        return [str(self.folder)] + [f"  {p}" for p in self.files]


def _kernel_manager_class():
    """Kernels over IPC sockets, not TCP: nothing listens on the network, and ipykernel has
    nothing to warn about on stderr (which would break the CLI's one-line error contract)."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

    return IpcKernelManager


def parse_date(value: str | None) -> str:
    """``YYYY-MM-DD`` (validated) or today's date in UTC."""
    if not value:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ConfigError(f"--date must be YYYY-MM-DD (got {value!r})")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date is not a real date: {value!r}") from None


def notebook_path(name: str) -> Path:
    """A numbered notebook of the kit by file name (``01-diagnosis.ipynb``)."""
    path = config.notebooks_dir() / name
    if not path.is_file():
        raise ConfigError(f"notebook not found: {path} (set INCIDENTKIT_NOTEBOOKS to the kit's notebooks folder)")
    return path


def declared_parameters(path: Path) -> set[str]:
    """The names the notebook's ``parameters`` cell declares."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def progress_printer(enabled: bool | None = None) -> Callable[[str], None]:
    """Progress on a terminal, silence otherwise."""
    on = sys.stderr.isatty() if enabled is None else enabled

    def say(message: str) -> None:
        if on:
            print(f"  {message}", file=sys.stderr, flush=True)

    return say


def _writable_out(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the reports directory {out_dir}: {e.strerror or e}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"the reports directory {out_dir} is not writable")
    return out_dir


def _publish(staging: Path, out_dir: Path, date: str) -> Path:
    """Rename the finished staging folder to ``out/date`` (or ``date-2``, ...), atomically."""
    for n in range(1, 1000):
        target = out_dir / (date if n == 1 else f"{date}-{n}")
        if target.exists():
            continue
        try:
            os.rename(staging, target)  # fails if another run claimed ``target`` meanwhile
            return target
        except OSError:
            if target.exists():
                continue
            raise
    raise ReportFailed(f"too many reports for {date} in {out_dir}")


def _fail(staging: Path, out_dir: Path, message: str) -> ReportFailed:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d-%H%M%S")
    failed_root = out_dir / "failed"
    failed_root.mkdir(parents=True, exist_ok=True)
    target = failed_root / stamp
    n = 1
    while target.exists():
        n += 1
        target = failed_root / f"{stamp}-{n}"
    shutil.move(str(staging), str(target))
    return ReportFailed(f"{message}; the executed notebooks, error marked, are in {target}", failed_dir=target)


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


class Converter:
    """nbconvert exporters, created once per run and used in-process for every notebook."""

    def __init__(self, show_code: bool = False):
        from nbconvert import HTMLExporter, MarkdownExporter

        self.html = HTMLExporter(template_name="incidentkit", extra_template_basedirs=[str(TEMPLATES_DIR)],
                                 exclude_input=not show_code, exclude_input_prompt=True,
                                 exclude_output_prompt=True)
        self.markdown = MarkdownExporter(exclude_input=not show_code)
        # Markdown reports prefer our pipe tables (text/markdown) over raw HTML renderings.
        self.markdown.display_data_priority = ["text/markdown", "image/png", "image/svg+xml", "image/jpeg",
                                               "text/plain", "text/html"]
        self.show_code = show_code

    def write(self, nb, folder: Path, stem: str, title: str) -> list[Path]:
        from .notebook import RECORD_MIME

        written = []
        nb = copy.deepcopy(nb)
        for cell in nb.cells:  # recorded figures stay in the .ipynb; HTML and Markdown show nothing for them
            if cell.get("outputs"):
                cell.outputs = [o for o in cell.outputs if RECORD_MIME not in (o.get("data") or {})]
        nb.metadata["title"] = title or stem
        body, _ = self.html.from_notebook_node(nb, resources={"metadata": {"name": stem}})
        html_path = folder / f"{stem}.html"
        html_path.write_text(body, encoding="utf-8")
        written.append(html_path)

        files_dir = f"{stem}_files"
        body, resources = self.markdown.from_notebook_node(
            nb, resources={"output_files_dir": files_dir, "unique_key": stem, "metadata": {"name": stem}})
        for rel, data in (resources.get("outputs") or {}).items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
        md_path = folder / f"{stem}.md"
        md_path.write_text(_clean_markdown(body), encoding="utf-8")
        written.append(md_path)
        return written


def _clean_markdown(body: str) -> str:
    """Drop raw ``<style>`` blocks and collapse runs of blank lines."""
    body = re.sub(r"<style[^>]*>.*?</style>", "", body, flags=re.S | re.I)
    body = re.sub(r"\n{3,}", "\n\n", body)
    return body.strip() + "\n"


@contextlib.contextmanager
def _kernel_env(extra: dict[str, str]):
    """Environment the kernels inherit for this run (redaction key), restored afterwards."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _redact_notebook(path: Path, redactor) -> None:
    """Pseudonymise every text field of an executed notebook (parameters, outputs, metadata)."""
    text = path.read_text(encoding="utf-8")
    path.write_text(redactor.text(text), encoding="utf-8")


def render_report(runs: list[NotebookRun], out_dir: str | Path | None = None, date: str | None = None,
                  show_code: bool = False, title: str = "Incident report",
                  progress: Callable[[str], None] | None = None, redactor=None) -> ReportResult:
    """Execute ``runs`` with papermill and publish them as one dated report folder.

    With a ``redactor`` (:class:`incidentkit.redact.Redactor`) the kernels pseudonymise what
    they draw and show, and every text artifact is pseudonymised again before it is written.
    """
    say = progress or progress_printer()
    date = parse_date(date)
    out_dir = _writable_out(Path(out_dir) if out_dir else config.reports_dir())
    staging = out_dir / f".staging-{date}-{os.getpid()}-{secrets.token_hex(3)}"
    staging.mkdir()
    converter = Converter(show_code=show_code)
    kernel_manager = _kernel_manager_class()
    if redactor is not None:
        runs = [NotebookRun(r.notebook, r.name, r.parameters, redactor.text(r.title)) for r in runs]
    try:
        with _kernel_env(redactor.env() if redactor is not None else {}):
            files = _execute_all(runs, staging, out_dir, show_code, converter, kernel_manager, say, redactor)
        files.extend(write_entry_page(staging, runs, date, title))
    except ReportFailed:
        raise
    except BaseException:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    final = _publish(staging, out_dir, date)
    index = write_index(out_dir)
    return ReportResult(final, date, [final / p.relative_to(staging) for p in files] + index, runs)


def _execute_all(runs, staging: Path, out_dir: Path, show_code: bool, converter: "Converter", kernel_manager,
                 say, redactor) -> list[Path]:
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    files: list[Path] = []
    for i, run in enumerate(runs, 1):
        say(f"[{i}/{len(runs)}] {run.name}")
        target = staging / f"{run.name}.ipynb"
        allowed = declared_parameters(run.notebook)
        params = {k: v for k, v in run.parameters.items() if k in allowed}
        try:
            papermill.execute_notebook(str(run.notebook), str(target), parameters=params,
                                       kernel_name="python3", progress_bar=False, log_output=False,
                                       report_mode=not show_code, cwd=str(run.notebook.parent),
                                       kernel_manager_class=kernel_manager)
        except PapermillExecutionError as e:
            if redactor is not None and target.exists():
                _redact_notebook(target, redactor)
            raise _fail(staging, out_dir, f"{run.name} failed at cell {e.exec_count}: "
                                          f"{e.ename}: {_first_line(e.evalue)}") from None
        except Exception as e:  # the kernel died, could not start, timed out...
            if redactor is not None and target.exists():
                _redact_notebook(target, redactor)
            raise _fail(staging, out_dir, f"{run.name} failed: {type(e).__name__}: {_first_line(e)}") from None
        if redactor is not None:
            _redact_notebook(target, redactor)
        nb = nbformat.read(str(target), as_version=4)
        files.append(target)
        files.extend(converter.write(nb, staging, run.name, run.title))
    return files


def write_entry_page(folder: Path, runs: list[NotebookRun], date: str, title: str) -> list[Path]:
    """``README.md`` and ``index.html`` linking the run's outputs in reading order."""
    md = [f"# {title} — {date}", "", f"Generated by incidentkit {__version__}. Read in this order:", ""]
    items = []
    for i, run in enumerate(runs, 1):
        label = run.title or run.name
        md.append(f"{i}. [{label}]({run.name}.md) ([HTML]({run.name}.html), [notebook]({run.name}.ipynb))")
        items.append(f'<li><a href="{html.escape(run.name)}.html">{html.escape(label)}</a> '
                     f'(<a href="{html.escape(run.name)}.md">Markdown</a>, '
                     f'<a href="{html.escape(run.name)}.ipynb">notebook</a>)</li>')
    readme = folder / "README.md"
    readme.write_text("\n".join(md) + "\n", encoding="utf-8")
    page = folder / "index.html"
    page.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)} — {date}"
        "</title><style>body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em;"
        "line-height:1.5}</style></head><body>"
        f"<h1>{html.escape(title)} — {date}</h1><p>Generated by incidentkit {__version__}. Read in this order:</p>"
        f"<ol>{''.join(items)}</ol></body></html>\n",
        encoding="utf-8",
    )
    return [readme, page]


def base_parameters(database_url_env: str = "", schema_map: str = "") -> dict[str, Any]:
    """Parameters every notebook takes: the *name* of the URL's variable (never the URL)."""
    return {"database_url_env": database_url_env or "", "schema_map": str(schema_map or "")}


def diagnosis_run(params: dict[str, Any], sample_limit: int = config.DEFAULT_SAMPLE_LIMIT) -> NotebookRun:
    return NotebookRun(notebook_path("01-diagnosis.ipynb"), "01-diagnosis",
                       {**params, "sample_limit": sample_limit}, "Diagnosis: the report's statistics, from the database")


def plan(database_url_env: str = "", schema_map: str = "", logs: list[str] | None = None,
         max_users: int = config.DEFAULT_MAX_USERS, window: float = config.DEFAULT_WINDOW_SECONDS,
         race_lab: bool = True, db=None) -> list[NotebookRun]:
    """The notebooks of a full report, in reading order, with their parameters.

    The diagnosis always; with logs (or on the demo, which has its own log) the affected
    users and one timeline per affected user (at most ``max_users``); the race lab last.
    """
    params = base_parameters(database_url_env, schema_map)
    logs = [str(Path(p).resolve()) if not any(ch in str(p) for ch in "*?[") else str(p) for p in (logs or [])]
    runs = [NotebookRun(notebook_path("00-postmortem.ipynb"), "00-postmortem",
                        {**params, "logs": logs, "window_seconds": window, "race_lab": race_lab},
                        "Incident document: the postmortem, from this run's data"),
            diagnosis_run(params)]
    if db is None:
        from .notebook import connect

        db = connect(database_url_env, schema_map)
    from ..evidence.timeline import default_logs
    from ..evidence.verdicts import affected

    effective_logs = logs or default_logs(db)
    if effective_logs:
        found = affected(db, effective_logs, window=window)
        runs.append(NotebookRun(notebook_path("02-affected-users.ipynb"), "02-affected-users",
                                {**params, "logs": logs, "window_seconds": window},
                                "Affected users: every failed login and its verdict"))
        users = []
        for failure in found.failures:
            if failure.user_id and failure.user_id not in users:
                users.append(failure.user_id)
        for i, user in enumerate(users[:max_users], 1):
            runs.append(NotebookRun(notebook_path("03-user-timeline.ipynb"), f"03-user-timeline-{i:02d}",
                                    {**params, "logs": logs, "window_seconds": window, "user_id": user},
                                    f"Timeline of {user}"))
    if race_lab and (config.notebooks_dir() / "04-race-lab.ipynb").is_file():
        runs.append(NotebookRun(notebook_path("04-race-lab.ipynb"), "04-race-lab", {},
                                "Race lab: the proposed fixes run against the race"))
    return runs


def render_for(database_url_env: str = "", schema_map: str = "", out_dir=None, date: str | None = None,
               show_code: bool = False, logs: list[str] | None = None, max_users: int = config.DEFAULT_MAX_USERS,
               window: float = config.DEFAULT_WINDOW_SECONDS, race_lab: bool = True, redact: bool = False,
               redact_workspaces: bool = False) -> ReportResult:
    """Plan and render the full report for a database (the demo when ``database_url_env`` is empty)."""
    from ..evidence.redact import Redactor

    parse_date(date)
    _writable_out(Path(out_dir) if out_dir else config.reports_dir())
    runs = plan(database_url_env, schema_map, logs, max_users, window, race_lab)
    redactor = Redactor.new(workspaces=redact_workspaces) if (redact or redact_workspaces) else None
    return render_report(runs, out_dir, date, show_code, redactor=redactor)


def render_demo(out_dir=None, date: str | None = None) -> ReportResult:
    """``incidentkit demo``: start the embedded server, load the demo if needed, render everything."""
    from ..db.demo import ensure_demo

    ensure_demo()
    return render_for("", "", out_dir, date)


# -- the index across dated runs ----------------------------------------------------------------
_RUN_DIR = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:-(\d+))?$")


@dataclass
class RunSummary:
    """One dated run's headline figures, read back from its executed notebooks."""

    folder: Path
    records: dict[str, Any]

    @property
    def sort_key(self) -> tuple[str, int]:
        m = _RUN_DIR.match(self.folder.name)
        return (m.group(1), int(m.group(2) or 1)) if m else (self.folder.name, 0)

    def figure(self, name: str):
        return (self.records.get("diagnosis") or {}).get(name)

    @property
    def affected_users(self) -> set[str] | None:
        a = self.records.get("affected")
        return None if a is None else set(a.get("users") or [])

    @property
    def failed_logins(self) -> int | None:
        a = self.records.get("affected")
        return None if a is None else a.get("failures")


def read_runs(out_dir: str | Path) -> list[RunSummary]:
    """Every dated run under ``out_dir``, oldest first, with the figures its notebooks recorded."""
    import nbformat

    from .notebook import read_records

    runs = []
    for folder in Path(out_dir).iterdir() if Path(out_dir).is_dir() else []:
        if not folder.is_dir() or not _RUN_DIR.match(folder.name):
            continue
        records: dict[str, Any] = {}
        for nb_path in sorted(folder.glob("*.ipynb")):
            try:
                records.update(read_records(nbformat.read(str(nb_path), as_version=4)))
            except Exception:  # noqa: BLE001 - a damaged notebook leaves its figures out, not the index
                continue
        runs.append(RunSummary(folder, records))
    return sorted(runs, key=lambda r: r.sort_key)


def _delta(now, before) -> str:
    if now is None or before is None:
        return ""
    d = now - before
    return "±0" if d == 0 else f"{d:+,}"


def index_rows(runs: list[RunSummary]) -> list[dict[str, str]]:
    rows = []
    previous: RunSummary | None = None
    for run in runs:
        users = run.affected_users
        new_users = ""
        if users is not None:
            before = previous.affected_users if previous else None
            new_users = str(len(users - before)) if before is not None else str(len(users))
        rows.append({
            "run": run.folder.name,
            "database": (run.records.get("run") or {}).get("database", ""),
            "users": _fmt(run.figure("total_users")),
            "invalid primary": _fmt(run.figure("users_with_invalid_primary_workspace")),
            "orphaned memberships": _fmt(run.figure("orphaned_memberships")),
            "orphans change": _delta(run.figure("orphaned_memberships"),
                                     previous.figure("orphaned_memberships") if previous else None),
            "failed logins": _fmt(run.failed_logins),
            "affected users": _fmt(len(users) if users is not None else None),
            "new affected users": new_users,
        })
        previous = run
    return rows


def _fmt(v) -> str:
    return "" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def write_index(out_dir: str | Path) -> list[Path]:
    """``index.md`` and ``index.html`` in ``out_dir``: every dated run, newest first, with changes."""
    out_dir = Path(out_dir)
    rows = list(reversed(index_rows(read_runs(out_dir))))
    cols = ["run", "database", "users", "invalid primary", "orphaned memberships", "orphans change",
            "failed logins", "affected users", "new affected users"]
    md = ["# Incident reports", "", f"{len(rows)} dated run(s), newest first. Changes are against the run before.", "",
          "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    body = []
    for r in rows:
        link = f"[{r['run']}]({r['run']}/README.md)"
        md.append("| " + " | ".join([link] + [r[c].replace("|", "\\|") for c in cols[1:]]) + " |")
        body.append("<tr>" + f'<td><a href="{html.escape(r["run"])}/index.html">{html.escape(r["run"])}</a></td>'
                    + "".join(f"<td>{html.escape(r[c])}</td>" for c in cols[1:]) + "</tr>")
    md_path, html_path = out_dir / "index.md", out_dir / "index.html"
    tmp_md, tmp_html = out_dir / ".index.md.tmp", out_dir / ".index.html.tmp"
    tmp_md.write_text("\n".join(md) + "\n", encoding="utf-8")
    tmp_html.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Incident reports</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
        "</style></head><body><h1>Incident reports</h1>"
        f"<p>{len(rows)} dated run(s), newest first. Changes are against the run before.</p>"
        "<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr></thead><tbody>"
        + "".join(body) + "</tbody></table></body></html>\n", encoding="utf-8")
    os.replace(tmp_md, md_path)
    os.replace(tmp_html, html_path)
    return [md_path, html_path]
