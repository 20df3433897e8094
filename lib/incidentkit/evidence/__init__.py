"""The evidence layer: from log records and the database's history to a verdict per failed login.

The flow, each step its own module:

* :mod:`.logs` reads the failed logins from application or PostgreSQL logs;
* :mod:`.history` reads what the database records about their users and workspaces, in one
  snapshot, and builds each failure's :class:`~.model.Evidence`;
* :mod:`.rules` decides the verdict from that evidence alone (a pure function, :func:`judge`);
* :mod:`.registry` lists the verdicts, each with its label and meaning (the only such list);
* :mod:`.affected` and :mod:`.timeline` put it together for every failure in the logs, or for
  one user or workspace, and show it (text, frames, plots, Markdown, JSON);
* :mod:`.inputs` checks what the user gives (ids, the window); :mod:`.redact` pseudonymises ids.

A module imports only modules below it, never one above: ``registry``, ``inputs``, ``model``
and ``logs`` (which import nothing here) -> ``rules`` -> ``history`` -> ``affected`` ->
``timeline``. No import circles.
"""

from __future__ import annotations

from .affected import Affected, affected, default_logs
from .model import Evidence, Judged
from .registry import VERDICTS, Verdict
from .rules import judge
from .timeline import Timeline, WorkspaceTimeline, user_timeline, workspace_timeline

__all__ = [
    "VERDICTS",
    "Affected",
    "Evidence",
    "Judged",
    "Timeline",
    "Verdict",
    "WorkspaceTimeline",
    "affected",
    "default_logs",
    "judge",
    "user_timeline",
    "workspace_timeline",
]
