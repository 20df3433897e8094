"""The reports index: every dated run of a reports folder, with its figures and their changes.

Figures are read from each run's ``run.json`` (see :mod:`incidentkit.report.manifest`); runs
written before the manifest existed fall back to the figures their notebooks recorded.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .page import CSP_META as _CSP_META

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
    """Every dated run under ``out_dir``, oldest first, with its figures (from ``run.json``)."""
    from .manifest import MANIFEST_NAME

    runs = []
    for folder in Path(out_dir).iterdir() if Path(out_dir).is_dir() else []:
        if not folder.is_dir() or not _RUN_DIR.match(folder.name):
            continue
        manifest = folder / MANIFEST_NAME
        try:
            data = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            records = dict(data.get("figures") or {})
            records["run"] = {"database": data.get("database", "")}
        else:
            records = _records_from_notebooks(folder)
        runs.append(RunSummary(folder, records))
    return sorted(runs, key=lambda r: r.sort_key)


def _records_from_notebooks(folder: Path) -> dict[str, Any]:
    """Figures of a run written before ``run.json`` existed: what its notebooks recorded."""
    import nbformat

    from .notebook import read_records

    records: dict[str, Any] = {}
    for nb_path in sorted(folder.glob("*.ipynb")):
        try:
            records.update(read_records(nbformat.read(str(nb_path), as_version=4)))
        except Exception:  # noqa: BLE001 - a damaged notebook leaves its figures out, not the index
            continue
    return records


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
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + _CSP_META +
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
