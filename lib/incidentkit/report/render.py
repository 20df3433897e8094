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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import __version__
from .. import config
from ..exceptions import ConfigError, ReportFailed
from ..text import first_line
from .page import CSP, CSP_META as _CSP_META, has_csp

TEMPLATES_DIR = config.PACKAGE_DIR / "templates"



@dataclass
class NotebookRun:
    """One notebook to execute: its source, the output name, and its parameters."""

    notebook: Path
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    status: str = "not run"  # "ok", "failed" once executed
    seconds: float | None = None


@dataclass
class ReportResult:
    folder: Path
    date: str
    files: list[Path]
    runs: list[NotebookRun]
    manifest: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [str(self.folder)] + [f"  {p}" for p in self.files]


def _kernel_manager_class(runtime_dir: Path):
    """Kernels over IPC sockets, not TCP: nothing listens on the network, and ipykernel has
    nothing to warn about on stderr (which would break the CLI's one-line error contract).

    The sockets live in ``runtime_dir``, the run's private folder: two runs at once never
    share a socket name, and nothing is left in the notebooks' folder."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            return str(runtime_dir / f"k{secrets.token_hex(4)}")

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
        body, _ = self.html.from_notebook_node(nb, resources={"metadata": {"name": stem}, "incidentkit_csp": CSP})
        if not has_csp(body):  # the template is what puts it there; never publish a page without it
            raise ReportFailed(f"{stem}: the HTML template lost its Content-Security-Policy")
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
    """Environment the kernels inherit for this run (share folder, redaction key), restored afterwards."""
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
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + _CSP_META +
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)} — {date}"
        "</title><style>body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em;"
        "line-height:1.5}</style></head><body>"
        f"<h1>{html.escape(title)} — {date}</h1><p>Generated by incidentkit {__version__}. Read in this order:</p>"
        f"<ol>{''.join(items)}</ol></body></html>\n",
        encoding="utf-8",
    )
    return [readme, page]


# -- leftovers of runs that died --------------------------------------------------------------
_STAGING = re.compile(r"^\.staging-\d{4}-\d{2}-\d{2}-(\d+)-[0-9a-f]+$")
_PRIVATE_PREFIX = "incidentkit-run-"


def clean_leftovers(out_dir: Path) -> list[Path]:
    """Remove what runs killed with ``kill -9`` left: their staging folders in ``out_dir`` and
    their private folders (kernel sockets, handed-on results) in the temporary directory.
    Only folders whose process is gone are touched, so a run going on beside this one is safe."""
    from ..db.embedded import pid_alive

    removed = []
    candidates = [(d, _STAGING.match(d.name)) for d in Path(out_dir).glob(".staging-*")]
    tmp = Path(tempfile.gettempdir())
    candidates += [(d, re.match(rf"^{_PRIVATE_PREFIX}(\d+)-", d.name)) for d in tmp.glob(f"{_PRIVATE_PREFIX}*")]
    for folder, m in candidates:
        if m and folder.is_dir() and not folder.is_symlink() and not pid_alive(int(m.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


# -- one report run ----------------------------------------------------------------------------
class _Run:
    """One report run: a staging folder in ``out_dir`` (renamed into place at the end) and a
    private folder (0700, outside ``out_dir``) for the kernels' sockets and the results the
    notebooks hand to the incident document. Notebooks execute one at a time, in the order the
    data flows; the entry page lists them in reading order."""

    def __init__(self, out_dir: Path, date: str, show_code: bool, redactor, say):
        from .notebook import SHARE_ENV

        self.out_dir, self.date, self.show_code, self.redactor, self.say = out_dir, date, show_code, redactor, say
        clean_leftovers(out_dir)
        self.private = Path(tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-"))
        self.share = self.private / "shared"
        self.share.mkdir()
        self.staging = out_dir / f".staging-{date}-{os.getpid()}-{secrets.token_hex(3)}"
        self.staging.mkdir()
        self.converter = Converter(show_code=show_code)
        self.kernel_manager = _kernel_manager_class(self.private)
        self.env = {SHARE_ENV: str(self.share), "JUPYTER_RUNTIME_DIR": str(self.private / "runtime"),
                    **(redactor.env() if redactor is not None else {})}
        self.executed: list[NotebookRun] = []
        self.files: list[Path] = []
        self.started_at = dt.datetime.now(dt.timezone.utc)

    def kept(self, name: str):
        from .notebook import kept

        return kept(name, self.share)

    def execute(self, *runs: NotebookRun, total: int | None = None) -> None:
        """Execute ``runs`` (notebooks that do not depend on each other) at the same time, one
        kernel each, as many at once as there are cores; then convert them, in order. When one
        fails, the others are let finish and the run fails with the first failure in order."""
        from concurrent.futures import ThreadPoolExecutor

        if self.redactor is not None:
            runs = tuple(NotebookRun(r.notebook, r.name, r.parameters, self.redactor.text(r.title)) for r in runs)
        for r in runs:
            self.executed.append(r)
            self.say(f"[{len(self.executed)}{'/' + str(total) if total else ''}] {r.name}")
        workers = max(1, min(len(runs), os.cpu_count() or 1))
        with _kernel_env(self.env):
            if workers == 1:
                failures = [self._papermill(r) for r in runs]
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notebook") as pool:
                    failures = list(pool.map(self._papermill, runs))
        first = next((f for f in failures if f), None)
        if first:
            raise _fail(self.staging, self.out_dir, first)
        import nbformat

        for r in runs:
            target = self.staging / f"{r.name}.ipynb"
            nb = nbformat.read(str(target), as_version=4)
            self.files.append(target)
            self.files.extend(self.converter.write(nb, self.staging, r.name, r.title))

    def _papermill(self, run: NotebookRun) -> str | None:
        """Execute one notebook into the staging folder; its failure as one line, or None."""
        import papermill
        from papermill.exceptions import PapermillExecutionError

        target = self.staging / f"{run.name}.ipynb"
        allowed = declared_parameters(run.notebook)
        params = {k: v for k, v in run.parameters.items() if k in allowed}
        t0 = time.monotonic()
        failure = None
        try:
            # The kernel works in the user's directory: relative paths mean what they meant on
            # the command line, and ./pyproject.toml is the user's.
            papermill.execute_notebook(str(run.notebook), str(target), parameters=params,
                                       kernel_name="python3", progress_bar=False, log_output=False,
                                       report_mode=not self.show_code, cwd=os.getcwd(),
                                       kernel_manager_class=self.kernel_manager)
        except PapermillExecutionError as e:
            failure = f"{run.name} failed at cell {e.exec_count}: {e.ename}: {first_line(e.evalue)[:300]}"
        except Exception as e:  # noqa: BLE001 - the kernel died, could not start, timed out...
            failure = f"{run.name} failed: {type(e).__name__}: {first_line(e)[:300]}"
        run.seconds = time.monotonic() - t0
        run.status = "failed" if failure else "ok"
        if self.redactor is not None and target.exists():
            _redact_notebook(target, self.redactor)
        return failure

    def publish(self, title: str, manifest: dict[str, Any] | None = None, affected=None, race=None) -> ReportResult:
        from . import manifest as run_manifest
        from .index import write_index
        from .kept_evidence import write_evidence

        reading = sorted(self.executed, key=lambda r: r.name)
        self.files.extend(write_evidence(self.staging, affected, self.redactor))
        if race:
            self.files.append(_write_race_results(self.staging, race, self.redactor))
        if manifest is not None:
            self.files.append(run_manifest.write(self.staging, manifest, self.redactor))
        self.files.extend(write_entry_page(self.staging, reading, self.date, title))
        final = _publish(self.staging, self.out_dir, self.date)
        index = write_index(self.out_dir)
        return ReportResult(final, self.date, [final / p.relative_to(self.staging) for p in self.files] + index,
                            reading, manifest or {})

    def close(self) -> None:
        from ..db import embedded

        shutil.rmtree(self.private, ignore_errors=True)
        try:  # a kernel may have started the embedded server (the race lab): stop what the run started
            embedded.default_server().stop_if_orphaned()
        except Exception:  # noqa: BLE001 - cleaning up must not hide the run's own outcome
            pass
        if self.staging.exists():  # never published, never moved to failed/: an interrupted run
            shutil.rmtree(self.staging, ignore_errors=True)


#: The race lab's cells as the run measured them (``remediation`` writes its files from them).
RACE_RESULTS_NAME = "race-lab.json"


def _write_race_results(folder: Path, race, redactor=None) -> Path:
    import json

    path = folder / RACE_RESULTS_NAME
    text = json.dumps({"cells": [c.to_dict() for c in race]}, indent=1, default=str) + "\n"
    path.write_text(redactor.text(text) if redactor is not None else text, encoding="utf-8")
    return path


def latest_race_results(out_dir: str | Path):
    """The race lab's cells of the latest report run in ``out_dir`` that ran it, and that run's
    folder; ``(None, None)`` when there is none."""
    import json

    from ..racelab import CellResult
    from .index import read_runs

    for run in reversed(read_runs(out_dir)):
        path = run.folder / RACE_RESULTS_NAME
        if path.is_file():
            try:
                cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
                return [CellResult(**c) for c in cells], run.folder
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return None, None


def render_report(runs: list[NotebookRun], out_dir: str | Path | None = None, date: str | None = None,
                  show_code: bool = False, title: str = "Incident report",
                  progress: Callable[[str], None] | None = None, redactor=None) -> ReportResult:
    """Execute ``runs`` (side by side: they must not depend on each other) with papermill and
    publish them as one dated report folder, listed in reading order (by name).

    With a ``redactor`` (:class:`incidentkit.evidence.redact.Redactor`) the kernels pseudonymise
    what they draw and show, and every text artifact is pseudonymised again before it is written.
    """
    date = parse_date(date)
    out_dir = _writable_out(Path(out_dir) if out_dir else config.reports_dir())
    run = _Run(out_dir, date, show_code, redactor, progress or progress_printer())
    try:
        run.execute(*runs, total=len(runs))
        return run.publish(title)
    finally:
        run.close()


def base_parameters(database_url_env: str = "", schema_map: str = "",
                    timeouts: config.Timeouts | None = None, demo: str = "audit") -> dict[str, Any]:
    """Parameters every notebook takes: the *name* of the URL's variable (never the URL), the
    schema map as an absolute path, the per-transaction limits in milliseconds, and for the demo
    which form of it (``audit``, or ``production``: without an audit table)."""
    out: dict[str, Any] = {"database_url_env": database_url_env or "",
                           "schema_map": str(Path(schema_map).expanduser().absolute()) if schema_map else ""}
    if not database_url_env and demo != "audit":
        out["demo"] = demo
    if timeouts is not None:
        out["timeouts"] = {"statement_ms": timeouts.statement_ms, "lock_ms": timeouts.lock_ms,
                           "idle_in_transaction_ms": timeouts.idle_in_transaction_ms}
    return out


def diagnosis_run(params: dict[str, Any], sample_limit: int = config.DEFAULT_SAMPLE_LIMIT) -> NotebookRun:
    return NotebookRun(notebook_path("01-diagnosis.ipynb"), "01-diagnosis",
                       {**params, "sample_limit": sample_limit}, "Diagnosis: the report's statistics, from the database")


def _resolved_logs(logs: list[str] | None) -> list[str]:
    """Log paths made absolute against the user's directory (globs kept as written, anchored there)."""
    return [str(Path(str(p)).expanduser().absolute()) for p in (logs or [])]


def timeline_runs(params: dict[str, Any], logs: list[str], window: float, users: list[str],
                  max_users: int = config.DEFAULT_MAX_USERS) -> list[NotebookRun]:
    """One timeline notebook per affected user (at most ``max_users``), in the order they failed."""
    return [NotebookRun(notebook_path("03-user-timeline.ipynb"), f"03-user-timeline-{i:02d}",
                        {**params, "logs": logs, "window_seconds": window, "user_id": user},
                        f"Timeline of {user}")
            for i, user in enumerate(users[:max_users], 1)]


def affected_users(found) -> list[str]:
    """The affected users of an ``Affected`` result, in the order of their first failure."""
    users: list[str] = []
    for failure in found.failures if found is not None else []:
        if failure.user_id and failure.user_id not in users:
            users.append(failure.user_id)
    return users


def render_for(database_url_env: str = "", schema_map: str = "", out_dir=None, date: str | None = None,
               show_code: bool = False, logs: list[str] | None = None, max_users: int = config.DEFAULT_MAX_USERS,
               window: float = config.DEFAULT_WINDOW_SECONDS, race_lab: bool = True, redact: bool = False,
               redact_workspaces: bool = False, timeouts: config.Timeouts | None = None,
               progress: Callable[[str], None] | None = None, demo: str = "audit",
               as_of_command: str | None = None, as_of_since: float = config.DEFAULT_AS_OF_SINCE_SECONDS,
               as_of_precision: float = config.DEFAULT_AS_OF_PRECISION_SECONDS, constraint: str = "",
               error: str = "") -> ReportResult:
    """The full report for a database (the demo when ``database_url_env`` is empty), each
    analysis computed once.

    ``constraint`` (a foreign key's name) or ``error`` (its violation's error text, as pasted)
    makes it the report of that foreign key (:func:`_render_constraint`); without either, the
    report of the mapped users → workspaces relationship, as always.

    The detail notebooks run first, in the order the data flows: the diagnosis; the affected
    users (with logs, or on the demo, which has its own log); one timeline per affected user,
    planned from the affected users the previous notebook kept; the race lab. The incident
    document (``00-postmortem``) runs last and is assembled from the results they kept, so its
    every figure is the one the detail notebook shows. ``run.json`` and ``evidence/`` are
    written from the same results.

    ``as_of_command`` (point-in-time probes) reaches the kernels through the environment
    (``notebook.AS_OF_ENV``), never as a parameter: a command may carry a token."""
    from ..evidence.redact import Redactor
    from .notebook import AS_OF_ENV

    date = parse_date(date)
    out = _writable_out(Path(out_dir) if out_dir else config.reports_dir())
    params = base_parameters(database_url_env, schema_map, timeouts, demo)
    if constraint or error:
        constraint = resolve_constraint(database_url_env, schema_map, timeouts, demo, constraint, error)
    evidence_params: dict[str, Any] = {}
    if as_of_command:
        from ..evidence.asof import AsOfCommand

        AsOfCommand(as_of_command)  # refused here, before any notebook runs, when it is malformed
        evidence_params = {"as_of_command_env": AS_OF_ENV, "as_of_since": as_of_since,
                           "as_of_precision": as_of_precision}
    given_logs = [str(p) for p in (logs or [])]
    logs = _resolved_logs(logs)
    redactor = Redactor.new(workspaces=redact_workspaces) if (redact or redact_workspaces) else None
    run = _Run(out, date, show_code, redactor, progress or progress_printer())
    if as_of_command:
        run.env[AS_OF_ENV] = as_of_command
    try:
        if constraint:
            return _render_constraint(run, constraint, params, evidence_params, given_logs, logs, window,
                                      max_users, race_lab, show_code, date)
        # Stage 1: the analyses that need nothing but the database (and the logs), side by side.
        first = [diagnosis_run(params)]
        if logs or not database_url_env:  # the demo database has its own log
            first.append(NotebookRun(notebook_path("02-affected-users.ipynb"), "02-affected-users",
                                     {**params, "logs": logs, "window_seconds": window, **evidence_params},
                                     "Affected users: every failed login and its verdict"))
        if race_lab:
            first.append(NotebookRun(notebook_path("04-race-lab.ipynb"), "04-race-lab", {},
                                     "Race lab: the proposed fixes run against the race"))
        run.execute(*_variants(run, first))
        diagnosis, found = run.kept("diagnosis"), run.kept("affected")
        race = run.kept("race_lab") if race_lab else None
        # Stage 2: one timeline per affected user, planned from what 02 kept.
        timelines = timeline_runs({**params, **evidence_params}, logs, window, affected_users(found), max_users)
        if timelines:
            run.execute(*_variants(run, timelines))
        # Stage 3: the incident document, from the results kept above.
        run.execute(*_variants(run, [NotebookRun(notebook_path("00-postmortem.ipynb"), "00-postmortem",
                                                 {**params, "logs": logs, "window_seconds": window,
                                                  "race_lab": race_lab},
                                                 "Incident document: the postmortem, from this run's data")]))
        from . import manifest

        facts = manifest.build(
            parameters={**params, **evidence_params, "logs": given_logs, "window_seconds": window, "max_users": max_users,
                        "race_lab": race_lab, "redact": bool(redactor), "show_code": show_code},
            notebooks=sorted(run.executed, key=lambda r: r.name), diagnosis=diagnosis, affected=found, race=race,
            started_at=run.started_at, finished_at=manifest.now(), date=date)
        return run.publish("Incident report", facts, affected=found, race=race)
    finally:
        run.close()


def render_demo(out_dir=None, date: str | None = None, demo: str = "audit", constraint: str = "") -> ReportResult:
    """``incidentkit demo``: start the embedded server, load the demo if needed, render everything
    (``demo="production"``: the same incident as production is, without an audit table;
    ``constraint``: the report of that foreign key of the demo, e.g. its second incident's)."""
    from ..db.demo import ensure_demo, ensure_production_demo

    ensure_production_demo() if demo == "production" else ensure_demo()
    return render_for("", "", out_dir, date, demo=demo, constraint=constraint)


# -- the report of any foreign key ------------------------------------------------------------
#: The notebooks hold the cells of both kinds of report, tagged: those of the mapped users →
#: workspaces relationship, and those of any foreign key (``constraint`` set). A run executes a
#: copy of each notebook holding the cells of its kind only (and the untagged, shared ones).
SEED_TAG = "mapped-relationship"
CONSTRAINT_TAG = "any-constraint"


def notebook_variant(source: Path, folder: Path, any_constraint: bool) -> Path:
    """``folder/<name>``: the notebook ``source`` without the cells of the other kind of report."""
    import nbformat

    target = folder / source.name
    if not target.exists():
        drop = SEED_TAG if any_constraint else CONSTRAINT_TAG
        nb = nbformat.read(str(source), as_version=4)
        nb.cells = [c for c in nb.cells if drop not in (c.get("metadata", {}).get("tags") or [])]
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))
    return target


def _variants(run: "_Run", runs: list[NotebookRun], any_constraint: bool = False) -> list[NotebookRun]:
    folder = run.private / ("notebooks-constraint" if any_constraint else "notebooks")
    return [NotebookRun(notebook_variant(r.notebook, folder, any_constraint), r.name, r.parameters, r.title)
            for r in runs]


def resolve_constraint(database_url_env: str, schema_map: str, timeouts: config.Timeouts | None, demo: str,
                       constraint: str = "", error: str = "") -> str:
    """The foreign key a report is for, checked against the database before any notebook runs: the
    name given, or the one ``error`` names (an error text that is no foreign-key violation, or an
    unknown name: :class:`ConfigError`, one line)."""
    from ..analysis.constraints import discover, parse_error
    from ..db.connection import Database
    from ..db.schema import SchemaMap

    table = schema = None
    if error:
        parsed = parse_error(error)
        if constraint and constraint != parsed.constraint:
            raise ConfigError(f"the constraint {constraint!r} is not the one the error names ({parsed.constraint!r})")
        constraint, table, schema = parsed.constraint, parsed.table, parsed.schema
    kwargs: dict[str, Any] = {"schema": SchemaMap.load(schema_map or None)}
    if timeouts is not None:
        kwargs["timeouts"] = timeouts
    db = (Database.from_env(database_url_env, **kwargs) if database_url_env
          else Database.demo(production=demo == "production", **kwargs))
    with db.read() as r:
        return discover(r, constraint, table=table, schema=schema).name


def failed_keys(found) -> list[list[str]]:
    """The keys of an ``AnyAffected`` result's failures (values in the key's column order, as the
    error's Detail gives them), each once, in the order they first failed."""
    keys: list[list[str]] = []
    for j in found.failures if found is not None else []:
        key = [str(v) for v in j.failure.key.values()]
        if key and key not in keys:
            keys.append(key)
    return keys


def key_timeline_runs(params: dict[str, Any], constraint: str, logs: list[str], window: float,
                      keys: list[list[str]], max_keys: int = config.DEFAULT_MAX_USERS) -> list[NotebookRun]:
    """One timeline notebook per failed key of ``constraint`` (at most ``max_keys``)."""
    return [NotebookRun(notebook_path("03-user-timeline.ipynb"), f"03-key-timeline-{i:02d}",
                        {**params, "constraint": constraint, "logs": logs, "window_seconds": window, "key": key},
                        f"Timeline of key ({', '.join(key)})")
            for i, key in enumerate(keys[:max_keys], 1)]


class _EvidenceView:
    """The failures of an ``AnyAffected`` as ``kept_evidence.write_evidence`` reads them: each
    failure's record copied from its log; no deletion list (that file is the seed's)."""

    def __init__(self, found):
        from types import SimpleNamespace

        self.failures = [SimpleNamespace(source=j.failure.source, line=j.failure.line, at=j.failure.at,
                                         verdict=j.verdict, deleted_at=None) for j in found.failures]
        self.deletion_sources = list(dict.fromkeys(x for g in found.groups for x in g.sources))


def _render_constraint(run: "_Run", constraint: str, params: dict[str, Any], evidence_params: dict[str, Any],
                       given_logs: list[str], logs: list[str], window: float, max_keys: int, race_lab: bool,
                       show_code: bool, date: str) -> ReportResult:
    """The report of one foreign key, staged as the seed's: the diagnosis, its failures in the logs
    and the race lab side by side; one key timeline per failed key; the shorter incident document
    last, from what they kept."""
    from ..racelab import generic_summary

    cparams = {**params, "constraint": constraint}
    title = f"Foreign key {constraint}"
    first = [NotebookRun(notebook_path("01-diagnosis.ipynb"), "01-diagnosis", {**cparams},
                         f"Diagnosis: {constraint}, from the catalog and the data")]
    if logs or not params.get("database_url_env"):  # the demo database has its own logs
        first.append(NotebookRun(notebook_path("02-affected-users.ipynb"), "02-failures",
                                 {**cparams, "logs": logs, "window_seconds": window, **evidence_params},
                                 f"Failures on {constraint} and their verdicts"))
    if race_lab:
        first.append(NotebookRun(notebook_path("04-race-lab.ipynb"), "04-race-lab", {**cparams},
                                 f"Race lab: inserting against deleting, on {constraint}"))
    run.execute(*_variants(run, first, any_constraint=True))
    diagnosis, found = run.kept("constraint_diagnosis"), run.kept("constraint_affected")
    race = run.kept("constraint_race_lab") if race_lab else None
    timelines = key_timeline_runs({**params, **evidence_params}, constraint, logs, window, failed_keys(found),
                                  max_keys)
    if timelines:
        run.execute(*_variants(run, timelines, any_constraint=True))
    run.execute(*_variants(run, [NotebookRun(notebook_path("00-postmortem.ipynb"), "00-postmortem",
                                             {**cparams, "logs": logs, "window_seconds": window,
                                              "race_lab": race_lab},
                                             f"Incident document: {constraint}, from this run's data")],
                           any_constraint=True))
    from . import manifest

    facts = manifest.build(
        parameters={**params, **evidence_params, "constraint": constraint, "logs": given_logs,
                    "window_seconds": window, "max_users": max_keys, "race_lab": race_lab,
                    "redact": run.redactor is not None, "show_code": show_code},
        notebooks=sorted(run.executed, key=lambda r: r.name), started_at=run.started_at,
        finished_at=manifest.now(), date=date)
    facts["constraint"] = constraint
    if diagnosis is not None:
        facts["database"] = diagnosis.database
        facts["snapshot_at"] = diagnosis.to_dict()["snapshot_at"]
        facts["definition"] = diagnosis.constraint.to_dict(paths=False)
        facts["figures"]["constraint"] = diagnosis.figures
    if found is not None:
        facts["logs"] = [{"path": p} for p in found.files]
        facts["deletion_sources"] = list(dict.fromkeys(x for g in found.groups for x in g.sources))
        facts["figures"]["failures"] = {"failures": len(found.failures), "by_verdict": found.by_verdict(),
                                        "keys": failed_keys(found)}
    if race:
        facts["figures"]["race_lab"] = generic_summary(race)
    return run.publish(title, facts, affected=_EvidenceView(found) if found is not None else None)
