"""Every error the kit raises on purpose derives from :class:`IncidentKitError`.

The CLI turns any of them into one line on stderr, ``error: <message>``, and exit code 2.
Messages never carry credentials: whatever text comes from a driver is scrubbed first
(:func:`incidentkit.text.scrub_secrets`), and ``str()`` of any of them is one line
(:func:`incidentkit.text.one_line`): control and bidi characters escaped, at most 2,000 characters.
"""

from __future__ import annotations


class IncidentKitError(Exception):
    """Base class: a problem the user can act on, reported as one clear line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always: control and bidi characters escaped, bounded
        from .text import one_line

        return one_line(self.message, 2000)


class ConfigError(IncidentKitError):
    """Raised when a setting, parameter or URL given to the kit is malformed."""


class ConnectionFailed(IncidentKitError):
    """Raised when the database cannot be reached, refuses the login, or drops the connection."""


class SchemaMismatch(IncidentKitError):
    """Raised when the schema mapping names tables or columns the database does not have."""


class QueryFailed(IncidentKitError):
    """Raised when a query fails in the database (timeout, cancelled, permission denied...)."""


class EmbeddedServerError(IncidentKitError):
    """Raised when the embedded PostgreSQL server cannot be found, initialised or started."""


class LogReadError(IncidentKitError):
    """Raised when a log path cannot be read at all (missing, a directory with no logs, unreadable)."""


class ReportFailed(IncidentKitError):
    """Raised when rendering a report fails; ``failed_dir`` holds what was written, errors marked."""

    def __init__(self, message: str, failed_dir=None):
        super().__init__(message)
        self.failed_dir = failed_dir


class UnsafeTarget(IncidentKitError):
    """Raised when a destructive tool (the race lab) is pointed at a database it does not own."""


class AsOfError(IncidentKitError):
    """Raised when a point-in-time probe fails: the as-of command, or the database it returned."""
