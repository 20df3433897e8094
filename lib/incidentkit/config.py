"""Paths and defaults, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The kit's version (pyproject.toml reads it from here).
__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
SQL_DIR = PACKAGE_DIR / "sql"
DATA_DIR = PACKAGE_DIR / "data"
#: The project checkout when installed editable (``pip install -e .``): ``lib/incidentkit`` -> root.
PROJECT_DIR = PACKAGE_DIR.parent.parent

#: Environment variable holding the database URL, by default.
DEFAULT_URL_ENV = "DATABASE_URL"
APPLICATION_NAME = "incidentkit"

#: The demo database on the embedded server.
DEMO_DATABASE = "incidentkit_demo"
#: The incident's day: the demo's data are "as of the diagnosis".
INCIDENT_DATE = "2025-10-08"

#: Default caps and windows.
DEFAULT_SAMPLE_LIMIT = 20
DEFAULT_WINDOW_SECONDS = 5.0
#: Point-in-time probes look back this far from a failure (--as-of-since; Neon's default
#: history retention is shorter or longer depending on the plan).
DEFAULT_AS_OF_SINCE_SECONDS = 7 * 86400.0
#: ... and stop bisecting when the bracket is this narrow (--as-of-precision).
DEFAULT_AS_OF_PRECISION_SECONDS = 0.010
DEFAULT_MAX_USERS = 20


@dataclass(frozen=True)
class Timeouts:
    """Per-transaction limits the kit sets on every transaction it opens (milliseconds)."""

    statement_ms: int = 30_000
    lock_ms: int = 2_000
    idle_in_transaction_ms: int = 60_000


def cache_dir() -> Path:
    """Where the embedded server's data directory lives (reused across runs)."""
    env = os.environ.get("INCIDENTKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "incidentkit"


def notebooks_dir() -> Path:
    """The numbered notebooks the reports are rendered from."""
    env = os.environ.get("INCIDENTKIT_NOTEBOOKS")
    if env:
        return Path(env).expanduser()
    return PACKAGE_DIR / "notebooks"


def reports_dir() -> Path:
    return Path(os.environ.get("INCIDENTKIT_REPORTS", "reports"))


def demo_log_path() -> Path:
    """The demo incident's application log (the failing request and the report's error text)."""
    return DATA_DIR / "demo-app.log"


#: The demo incident "as production is": the same rows, no audit table (``db.demo``).
DEMO_PRODUCTION_DATABASE = "incidentkit_demo_prod"
#: Point-in-time snapshots of the demo (``db.demo_asof``) are databases named with this prefix.
DEMO_ASOF_PREFIX = "incidentkit_demo_asof_"
#: How many point-in-time snapshots of the demo are kept (beyond that the oldest are dropped).
DEMO_ASOF_KEEP = 64


def demo_server_log_path() -> Path:
    """The demo incident's PostgreSQL server log (``log_statement = 'mod'``, stderr format)."""
    return DATA_DIR / "demo-server.log"


def demo_access_log_path() -> Path:
    """The demo incident's request (access) log, with the workspace's DELETE request."""
    return DATA_DIR / "demo-access.log"

#: The comment the demo database carries once loaded (a rebuilt demo gets a new one).
DEMO_MARK = "incidentkit demo incident v1"
