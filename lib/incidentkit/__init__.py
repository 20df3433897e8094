"""incidentkit: investigate the users_primary_workspace_id_workspaces_id_fk incident on PostgreSQL.

The package root re-exports the public API; notebooks and the CLI call these.
"""

from __future__ import annotations

from .config import __version__

from .config import Timeouts
from .db.connection import Database
from .analysis.diagnosis import CheckResult, Diagnosis, check, diagnose
from .exceptions import (
    ConfigError,
    ConnectionFailed,
    EmbeddedServerError,
    IncidentKitError,
    LogReadError,
    QueryFailed,
    ReportFailed,
    SchemaMismatch,
    UnsafeTarget,
)
from .db.schema import SchemaMap
from .report import notebook  # noqa: E402  (cell helpers: ik.notebook.connect, .header, .table)
from .analysis import indexes  # noqa: E402  (index advice: ik.indexes.index_advice)
from .report import postmortem  # noqa: E402  (the incident document: ik.postmortem.gather)

__all__ = [
    "__version__",
    "CheckResult",
    "ConfigError",
    "ConnectionFailed",
    "Database",
    "Diagnosis",
    "EmbeddedServerError",
    "IncidentKitError",
    "LogReadError",
    "QueryFailed",
    "ReportFailed",
    "SchemaMap",
    "SchemaMismatch",
    "Timeouts",
    "UnsafeTarget",
    "check",
    "diagnose",
    "indexes",
    "notebook",
    "postmortem",
]
