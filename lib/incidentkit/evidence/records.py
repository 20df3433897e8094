"""Every log record that names a user or a workspace: the rest of the story around a failure.

A timeline shows the failed logins the scan judged; the logs hold more: the user's own requests
before the failure, and the other member's request that deleted the workspace. :func:`records_naming`
reads the logs once more (through the scan's bounded reader, :func:`incidentkit.evidence.logs.read_log_lines`)
and keeps the lines that contain one of the ids, dated by their own timestamp (or, for a
continuation line of a text log, the latest one before it), at most ``limit`` of them. The
foreign-key error records themselves are left out: the timeline shows them as failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from ..text import one_line
from .logs import json_records, json_time, leading_time, read_log_lines

#: At most this many records are kept per timeline (the earliest are dropped first).
MAX_RECORDS = 300
#: How much of a record's line is shown.
RECORD_CHARS = 220
_FAILURE_MARKS = ("violates foreign key constraint", "Detail: Key (", "DETAIL:  Key (", "detail: 'Key (")


@dataclass(frozen=True)
class LogRecord:
    """One line of a log that names one of the ids looked for."""

    at: datetime
    file: str
    line: int
    text: str  # one line, control characters escaped, cut to RECORD_CHARS
    names: tuple[str, ...]  # the ids it contains

    @property
    def where(self) -> str:
        return f"{Path(self.file).name}:{self.line}"


def records_naming(files: Iterable[str], ids: Iterable[str], *, skip: Iterable[tuple[str, int]] = (),
                   limit: int = MAX_RECORDS) -> list[LogRecord]:
    """The records of ``files`` that contain one of ``ids``, in time order (at most ``limit``, the
    latest kept), leaving out the lines in ``skip`` ((file, line) of the failures already shown)."""
    needles = tuple(dict.fromkeys(i for i in ids if i))
    if not needles:
        return []
    skipped = set(skip)
    out: list[LogRecord] = []
    for path in files:
        fmt, lines = read_log_lines(path)
        last: datetime | None = None
        for n, text in lines:
            at = _time_of(text, fmt)
            if at is not None:
                last = at
            hits = tuple(x for x in needles if x in text)
            if not hits or (str(path), n) in skipped or any(m in text for m in _FAILURE_MARKS):
                continue
            when = at or (last if fmt == "text" else None)
            if when is not None:
                out.append(LogRecord(when, str(path), n, one_line(text.strip(), RECORD_CHARS), hits))
    out.sort(key=lambda r: (r.at, r.file, r.line))
    return out[-limit:] if limit else out


def _time_of(text: str, fmt: str) -> datetime | None:
    if fmt == "jsonl" or fmt == "pg_json":
        records = json_records(text) if text.lstrip().startswith(("{", "[")) else None
        return json_time(records[0]) if records else None
    return leading_time(text)
