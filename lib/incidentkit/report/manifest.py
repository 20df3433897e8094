"""``run.json``: what one report run read, with what, when, and what it found.

A report is quoted in postmortems, so each run folder says exactly where its figures came
from: the kit's version, the parameters (never a secret: the URL's *variable name*, not the
URL), the database as host/dbname, the server version, the snapshot time and its WAL
position, every log file read (path as given, size, sha256, lines read and skipped), the
time window, and each notebook's duration and status. The reports index reads it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..config import __version__
from ..text import iso_utc

MANIFEST_NAME = "run.json"


def build(*, parameters: dict[str, Any], notebooks: Iterable[Any], diagnosis=None, affected=None, race=None,
          started_at: datetime, finished_at: datetime, date: str) -> dict[str, Any]:
    """The manifest of one run, from the results its notebooks kept (never recomputed)."""
    out: dict[str, Any] = {
        "kit_version": __version__,
        "date": date,
        "started_at": iso_utc(started_at),
        "finished_at": iso_utc(finished_at),
        "parameters": parameters,
        "database": getattr(diagnosis, "database", "") if diagnosis is not None else "",
        "server_version": getattr(diagnosis, "server_version", "") if diagnosis is not None else "",
        "snapshot_at": iso_utc(diagnosis.snapshot_at) if diagnosis is not None else None,
        "wal_lsn": getattr(diagnosis, "wal_lsn", "") if diagnosis is not None else "",
        "notebooks": [{"name": n.name, "title": n.title, "status": n.status,
                       "seconds": None if n.seconds is None else round(n.seconds, 3)} for n in notebooks],
    }
    logs = []
    if affected is not None:
        # what the scan measured while it read each file (one pass: no file is read again here)
        for read in affected.file_reads:
            logs.append({"path": read["path"], "size": read.get("size"), "sha256": read.get("sha256"),
                         "lines_read": read.get("lines"), "lines_skipped": read.get("skipped_lines"),
                         "format": read.get("format"), "compressed": read.get("compressed")})
        times = [f.at for f in affected.failures if f.at is not None]
        out["window"] = {"seconds": affected.window,
                         "first_failure": iso_utc(min(times)) if times else None,
                         "last_failure": iso_utc(max(times)) if times else None}
        out["lines_skipped"] = affected.skipped_lines
        out["constraint"] = affected.constraint
        out["deletion_sources"] = list(getattr(affected, "deletion_sources", None) or [affected.deletion_source])
        out["outside_evidence"] = dict(getattr(affected, "outside", None) or {})
    out["logs"] = logs
    figures: dict[str, Any] = {}
    if diagnosis is not None:
        figures["diagnosis"] = diagnosis.figures()
    if affected is not None:
        figures["affected"] = affected.headline()
    if race:
        from ..racelab import summary

        figures["race_lab"] = summary(race)
    out["figures"] = figures
    return out


def write(folder: Path, manifest: dict[str, Any], redactor=None) -> Path:
    """``folder/run.json`` (pseudonymised with the run's redactor when the report is redacted)."""
    text = json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n"
    if redactor is not None:
        text = redactor.text(text)
    path = folder / MANIFEST_NAME
    tmp = folder / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def now() -> datetime:
    return datetime.now(timezone.utc)
