"""Evidence kept with the run: the log records behind each verdict, copied into ``evidence/``.

Log retention ends; a report should not lose its proof. For each failure the record that
logged it, with a few lines of context, is copied into ``evidence/<log file>.txt`` (one file
per source, each block headed by the file and line of origin), and each deletion the verdicts
used is listed in ``evidence/deletions.txt``. Redacted like the rest under ``--redact``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..evidence.logs import iter_lines
from ..exceptions import IncidentKitError
from ..text import fmt_time

EVIDENCE_DIR = "evidence"
CONTEXT_LINES = 3
#: A copied line longer than this is cut (the copy is evidence, not a second log).
MAX_LINE_CHARS = 2_000


def evidence_file(source: str) -> str:
    """``evidence/<name>.txt`` for a log file: its base name made safe, plus a short hash of the path."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(source)).name)[:60] or "log"
    tag = hashlib.sha256(str(source).encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{EVIDENCE_DIR}/{base}-{tag}.txt"


def _context(path: Path, lines: list[int]) -> dict[int, list[tuple[int, str]]]:
    """For each wanted line number, the lines around it: one streaming pass over the file."""
    wanted: dict[int, list[int]] = defaultdict(list)
    for n in lines:
        for k in range(max(1, n - CONTEXT_LINES), n + CONTEXT_LINES + 1):
            wanted[k].append(n)
    last = max(wanted) if wanted else 0
    out: dict[int, list[tuple[int, str]]] = {n: [] for n in lines}
    try:  # the scan's own bounded reader: gzip by its magic bytes, no line held whole past 1 MiB
        for i, text in iter_lines(path, blank_lines_kept=2 * CONTEXT_LINES + 1):
            if i > last:
                break
            for n in wanted.get(i, ()):
                out[n].append((i, text[:MAX_LINE_CHARS]))
    except (OSError, EOFError, IncidentKitError):
        pass
    return out


def write_evidence(folder: Path, affected: Any, redactor=None) -> list[Path]:
    """Copy each failure's record (with context) and each deletion used into ``folder/evidence``."""
    if affected is None or not affected.failures:
        (folder / EVIDENCE_DIR).mkdir(exist_ok=True)
        path = folder / EVIDENCE_DIR / "README.txt"
        path.write_text("No failure was found in the logs this run read"
                        + ("" if affected is not None else " (no logs were read)") + ": no record is kept.\n",
                        encoding="utf-8")
        return [path]
    by_source: dict[str, list[Any]] = defaultdict(list)
    for f in affected.failures:
        if getattr(f, "source", None) and getattr(f, "line", None):
            by_source[str(f.source)].append(f)
    (folder / EVIDENCE_DIR).mkdir(exist_ok=True)
    written = []
    clean = redactor.text if redactor is not None else (lambda t: t)
    for source, failures in by_source.items():
        context = _context(Path(source), sorted({int(f.line) for f in failures}))
        blocks = [f"Records copied from {source} (failures marked '>').", ""]
        for f in sorted(failures, key=lambda j: int(j.line)):
            blocks.append(f"== {source}:{f.line} -- failure at {fmt_time(f.at)}, verdict {f.verdict}")
            for i, text in context.get(int(f.line), []):
                blocks.append(f"{'>' if i == int(f.line) else ' '} {i:>8} | {text}")
            blocks.append("")
        path = folder / evidence_file(source)
        path.write_text(clean("\n".join(blocks)), encoding="utf-8")
        written.append(path)
    deletions = [f for f in affected.failures if getattr(f, "deleted_at", None)]
    if deletions:
        sources = ", ".join(getattr(affected, "deletion_sources", None) or [affected.deletion_source])
        lines = [f"Deletions the verdicts used (deletion sources: {sources}).", ""]
        seen = set()
        for f in deletions:
            d = getattr(f, "deletion", None)
            key = (f.workspace_id, f.deleted_at, f.transaction_id, d.origin if d else None)
            if key in seen:
                continue
            seen.add(key)
            if d is not None and d.after is not None:
                when = f"between {fmt_time(d.after)} and {fmt_time(d.at)}"
            else:
                when = f"at {fmt_time(f.deleted_at)}"
            how = d.how() if d is not None else f"transaction {f.transaction_id}"
            lines.append(f"workspace {f.workspace_id} deleted {when} ({how}; "
                         f"{getattr(f, 'evidence_strength', 'recorded')}); used for the failure at {fmt_time(f.at)}"
                         f" ({f.source}:{f.line})")
        path = folder / EVIDENCE_DIR / "deletions.txt"
        path.write_text(clean("\n".join(lines) + "\n"), encoding="utf-8")
        written.append(path)
    return written
