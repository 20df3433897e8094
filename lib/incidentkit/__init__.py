"""incidentkit: investigate the users_primary_workspace_id_workspaces_id_fk incident on PostgreSQL.

The package root re-exports the public API; notebooks and the CLI call these.

Only the version and the exceptions are imported with the package: every other name (and the
cell helpers ``ik.notebook``, ``ik.indexes``, ``ik.postmortem``) is imported the first time it is
used (PEP 562), so a CLI verb pays only for the modules it runs.
"""

from __future__ import annotations

import importlib

from .config import __version__
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

#: name -> (module, attribute); attribute None: the module itself.
_LAZY = {
    "Timeouts": (".config", "Timeouts"),
    "Database": (".db.connection", "Database"),
    "CheckResult": (".analysis.diagnosis", "CheckResult"),
    "Diagnosis": (".analysis.diagnosis", "Diagnosis"),
    "check": (".analysis.diagnosis", "check"),
    "diagnose": (".analysis.diagnosis", "diagnose"),
    "SchemaMap": (".db.schema", "SchemaMap"),
    "notebook": (".report.notebook", None),  # cell helpers: ik.notebook.connect, .header, .table
    "indexes": (".analysis.indexes", None),  # index advice: ik.indexes.index_advice
    "postmortem": (".report.postmortem", None),  # the incident document: ik.postmortem.gather
}

#: The package's own modules, reachable as attributes (``ik.evidence``) before anyone imported them.
_SUBMODULES = ("analysis", "cli", "config", "db", "evidence", "exceptions", "lab", "racelab", "report", "text")

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


def __getattr__(name: str):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name, __name__)
        value = module if attr is None else getattr(module, attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
