"""Helpers for the notebooks' cells: connect from parameters, show a report header, show frames.

Notebooks stay thin: each cell calls one of these (or another library function) and shows
the result. Parameters never hold a secret: ``database_url_env`` is the *name* of the
environment variable that holds the URL; empty means the embedded demo database.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import __version__
from ..db.connection import Database
from ..db.schema import SchemaMap
from ..evidence.redact import label
from ..text import fmt_time

#: Mimetype of the headline figures a notebook records for the index across runs. Exporters
#: render nothing for it; ``read_records`` reads it back from executed notebooks.
RECORD_MIME = "application/vnd.incidentkit.record+json"

#: In a report run, the private folder where the detail notebooks hand their results to the
#: incident document (``00-postmortem``), which is executed last. Unset in JupyterLab.
SHARE_ENV = "INCIDENTKIT_RUN_SHARE"


def connect(database_url_env: str = "", schema_map: str = "", timeouts: dict[str, int] | None = None,
            demo: str = "audit") -> Database:
    """The database a notebook reads: ``$<database_url_env>``, or the demo when empty (``demo =
    "production"``: the demo incident as production is, with no audit table).

    ``timeouts`` are the per-transaction limits in milliseconds (``statement_ms``, ``lock_ms``,
    ``idle_in_transaction_ms``), as ``incidentkit report`` passes them; the defaults otherwise."""
    from ..config import Timeouts
    from ..exceptions import ConfigError

    _inline_figures()
    schema = SchemaMap.load(schema_map or None)
    limits = Timeouts(**{k: int(v) for k, v in (timeouts or {}).items()})
    if database_url_env:
        return Database.from_env(database_url_env, schema=schema, timeouts=limits)
    if demo not in DEMOS:
        raise ConfigError(f"demo must be one of {', '.join(DEMOS)} (got {demo!r})")
    return Database.demo(production=demo == "production", schema=schema, timeouts=limits)


#: The demo's two forms: the incident with its audit table, and as production is (without one).
DEMOS = ("audit", "production")
#: The environment variable a report run puts the as-of command in (never a notebook parameter).
AS_OF_ENV = "INCIDENTKIT_AS_OF_COMMAND"


def as_of_command(as_of_command_env: str = "") -> str | None:
    """The as-of command a notebook uses: the one in ``$<as_of_command_env>`` (the command may
    carry a project id or a token, so notebooks receive only the variable's name), else None:
    no probes, or the demo's own snapshots on the demo as production is."""
    import os

    return (os.environ.get(as_of_command_env) or None) if as_of_command_env else None


def _inline_figures() -> None:
    """Figures inline in the notebook (and so in the reports), whatever MPLBACKEND says."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def header(db: Database, parameters: dict[str, Any] | None = None, snapshot_at: datetime | None = None):
    """A Markdown block stating the database (host/dbname), snapshot time, parameters and kit version."""
    when = (snapshot_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    record("run", {"database": db.describe(), "snapshot_at": when.isoformat().replace("+00:00", "Z"),
                   "version": __version__})
    t = db.timeouts
    limits = (f"statement {t.statement_ms / 1000:g} s, lock {t.lock_ms / 1000:g} s, "
              f"idle in transaction {t.idle_in_transaction_ms / 1000:g} s")
    return _facts_table([("Database", f"`{db.describe()}`"), ("Snapshot", _utc(when)),
                         ("Schema mapping", md_text(db.schema.origin)), ("Limits", limits),
                         ("incidentkit", __version__)], parameters)


def run_header(facts: dict[str, Any], parameters: dict[str, Any] | None = None):
    """The same header for a notebook that reads no target database (the race lab)."""
    rows = [(k, _show(v)) for k, v in facts.items()]
    return _facts_table(rows + [("Run at", _utc(datetime.now(timezone.utc))), ("incidentkit", __version__)],
                        parameters)


def _utc(when: datetime) -> str:
    return fmt_time(when)


def _facts_table(rows: list[tuple[str, str]], parameters: dict[str, Any] | None):
    """A two-column Markdown table of facts, then one row per parameter (pseudonymised when redacting)."""
    from IPython.display import Markdown

    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += [f"| Parameter `{k}` | `{_show(v)}` |" for k, v in (parameters or {}).items()]
    return Markdown(safe_markdown(label("\n".join(lines))))


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return (text or "''").replace("|", "\\|").replace("`", "'").replace("\n", " ")


_HTML_SPECIAL = re.compile(r"[<>&]")
_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


_LINK_SCHEME = re.compile(r"\]\(\s*<?\s*([A-Za-z][A-Za-z0-9+.\-]*)\s*:")
_SAFE_SCHEMES = {"http", "https", "mailto"}


def safe_markdown(text: str) -> str:
    """Markdown the kit built, made inert: no raw HTML survives (``<``, ``>`` become entities),
    no image is fetched (``![`` is shown as text) and no link has a scheme other than http(s)
    or mailto (``javascript:`` and the like are shown as text).

    Every Markdown output of a notebook passes here, so a value taken from a log line, a file
    name or the database can never become a tag, a script or a tracking image in the report.
    The kit's own Markdown uses no raw HTML and no images, so nothing legitimate is lost."""
    text = text.replace("<", "&lt;").replace(">", "&gt;").replace("![", "!\\[")
    return _LINK_SCHEME.sub(lambda m: m.group(0) if m.group(1).lower() in _SAFE_SCHEMES
                            else "]\\(" + m.group(0)[2:], text)


def md_text(value: Any) -> str:
    """A value shown as literal text in Markdown: HTML and Markdown syntax escaped, one line."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    text = _HTML_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;", "&": "&amp;"}[m.group()], text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def table(frame, caption: str | None = None):
    """A DataFrame as a Markdown pipe table (renders in Jupyter, in HTML and in the .md report)."""
    from IPython.display import Markdown

    body = frame_to_markdown(frame)
    return Markdown(safe_markdown(label((f"**{md_text(caption)}**\n\n" if caption else "") + body)))


def frame_to_markdown(frame) -> str:
    """A pipe table without the tabulate dependency; cells escaped for Markdown."""
    if frame is None or len(frame.columns) == 0:
        return "_(no columns)_"
    import pandas as pd

    if not isinstance(frame.index, pd.RangeIndex):  # a meaningful index (e.g. strategy names) is a column
        frame = frame.reset_index()
    cols = [md_text(c) for c in frame.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    if len(frame) == 0:
        return "\n".join(out + ["", "_(no rows)_"])
    for row in frame.itertuples(index=False):
        out.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(out)


class Link:
    """A table cell that links to a file of the report itself (``evidence/…``): shown as a link,
    its text escaped; any other target is shown as text."""

    def __init__(self, text: str, href: str):
        self.text, self.href = text, href

    def markdown(self) -> str:
        if re.fullmatch(r"[A-Za-z0-9._/-]+", self.href) and not self.href.startswith(("/", ".")) and ".." not in self.href:
            return f"[{md_text(self.text)}]({self.href})"
        return md_text(self.text)


def failures_table(affected):
    """The affected-users table; in a report run each failure links to its record in ``evidence/``."""
    from .kept_evidence import evidence_file

    frame = affected.frame()
    if in_report_run() and len(frame):
        frame["record"] = [Link(f"line {j.line}", evidence_file(j.source)) if j.source else ""
                           for j in affected.failures]
    return table(frame)


def _cell(value: Any) -> str:
    if isinstance(value, Link):
        return value.markdown()
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return md_text(value)


def conclusion(diagnosis):
    """A Markdown paragraph that reads the diagnosis: clean, or what offends and how much."""
    from IPython.display import Markdown

    return Markdown(safe_markdown(label(diagnosis.conclusion_markdown())))


def markdown(text: str):
    """Markdown text as a cell's result (pseudonymised when the report is redacted; raw HTML made inert)."""
    from IPython.display import Markdown

    return Markdown(safe_markdown(label(text)))


def record(name: str, value: Any) -> None:
    """Record a headline figure in the executed notebook (JSON value), for the index across runs."""
    import json

    from IPython.display import display

    json.dumps(value)  # fail here, not when the index is read, if it is not JSON
    display({RECORD_MIME: {"name": name, "value": value}}, raw=True)


def read_records(nb) -> dict[str, Any]:
    """The figures recorded in an executed notebook (nbformat node or dict), by name."""
    out: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = (output.get("data") or {}).get(RECORD_MIME)
            if isinstance(data, dict) and "name" in data:
                out[data["name"]] = data.get("value")
    return out


def rich_table(styler):
    """A pandas Styler: coloured in Jupyter and HTML, a pipe table in the Markdown report."""
    from IPython.display import display

    display({"text/html": label(styler.format(escape="html").to_html()),
             "text/markdown": safe_markdown(label(frame_to_markdown(styler.data)))}, raw=True)


# -- a report's kernels, warmed while they wait for their notebook ------------------------------
#: What the notebooks' cells import, and what the kit imports when they draw a figure or show a
#: table: a report's kernel imports them (:func:`warm`) before its notebook is given to it.
WARM_MODULES = ("incidentkit", "incidentkit.analysis.diagnosis", "incidentkit.analysis.indexes",
                "incidentkit.analysis.constraints", "incidentkit.evidence.affected", "incidentkit.evidence.registry",
                "incidentkit.evidence.timeline", "incidentkit.evidence.generic", "incidentkit.report.postmortem",
                "incidentkit.report.steer", "incidentkit.racelab", "pandas", "pandas.io.formats.style",
                "matplotlib.pyplot", "psycopg")


#: The file a report's kernel creates once :func:`warm` is done (the report starts the kernels
#: of later notebooks after those of the first ones are warm).
WARM_DONE_ENV = "INCIDENTKIT_KERNEL_WARM"


def warm(modules: tuple[str, ...] = WARM_MODULES) -> None:
    """Import ``modules`` now, so that the cells that import them later find them loaded. A module
    that fails to import is left alone: the cell that imports it reports the error. Then create
    the file ``$INCIDENTKIT_KERNEL_WARM`` names, if any."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the notebook's own import shows it
            pass
    _draw_once()
    done = os.environ.get(WARM_DONE_ENV)
    if done:
        try:
            Path(done).touch()
        except OSError:
            pass


def _draw_once() -> None:
    """Render a small figure with text to PNG, off pyplot (so no notebook ever shows it): the
    fonts, the Agg renderer and the PNG encoder are loaded before the first cell draws."""
    import io

    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    fig = Figure(figsize=(2, 1))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], marker="o")
    ax.set_title("warm")
    fig.savefig(io.BytesIO(), format="png")


# -- results handed across one report run ------------------------------------------------------
def _share_dir() -> Path | None:
    value = os.environ.get(SHARE_ENV)
    return Path(value) if value else None


def in_report_run() -> bool:
    """True inside a notebook that ``incidentkit report`` executes (results are handed on)."""
    return _share_dir() is not None


def _share_key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def keep(name: str, result: Any, headline: Any = None) -> None:
    """Keep a notebook's result for this report run: the headline (JSON) is recorded in the
    executed notebook for the index; the result itself is handed to the incident document,
    which is assembled from it instead of computing it again. Outside a report, only records."""
    if headline is not None:
        record(name, headline)
    folder = _share_dir()
    if folder is not None:
        tmp = folder / f".{_share_key(name)}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / f"{_share_key(name)}.pickle")


def kept(name: str, folder: Path | None = None) -> Any:
    """The result a notebook of this report run kept under ``name``; None when it kept none.

    ``folder`` is the run's share folder (default: the one the kernel was given); it is private
    to the run (created 0700 by the report, removed after it)."""
    folder = folder if folder is not None else _share_dir()
    path = folder / f"{_share_key(name)}.pickle" if folder is not None else None
    if path is None or not path.is_file():
        return None
    with open(path, "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - written by this run's own kernels, in its private folder


# -- the investigation desk: the kit's errors read like the CLI's ------------------------------
#: The longest error line a notebook shows (as the CLI's ``ERROR_LINE_LIMIT``).
ERROR_LINE_LIMIT = 500


def error_line(exc: BaseException) -> str:
    """``error: <message>``: one line, credentials scrubbed, as the CLI prints a kit error."""
    from ..config import DEFAULT_URL_ENV
    from ..text import conninfo_parts, one_line, scrub_secrets

    secrets = []
    url = os.environ.get(DEFAULT_URL_ENV, "")
    if url:
        secrets.append(url)
        try:
            secrets.append(conninfo_parts(url).get("password", ""))
        except ValueError:
            pass
    return f"error: {one_line(scrub_secrets(exc, [s for s in secrets if s]), ERROR_LINE_LIMIT)}"


def _show_kit_error(shell, etype, value, tb, tb_offset=None):  # noqa: ARG001 - IPython's handler signature
    """IPython's custom exception handler: shows the error with a one-line traceback, ``error: ...``
    (in Jupyter an ``error`` output; in a terminal, that line). The cell still fails (the kernel
    replies ``error`` with the exception's name and value), so papermill and nbval stop at it."""
    stb = [error_line(value)]
    shell._showtraceback(etype, value, stb)
    return stb


def desk() -> None:
    """In a notebook's first code cell: the kit's own errors (:class:`IncidentKitError`) show as one
    line, ``error: <message>``, like the CLI's, instead of a traceback; any other exception keeps
    its traceback. The cell still fails, so Run All, papermill and nbval stop there. Outside
    IPython it does nothing."""
    from ..exceptions import IncidentKitError

    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((IncidentKitError,), _show_kit_error)
