"""Point-in-time snapshots of the demo database, and the as-of command that hands them out.

A managed PostgreSQL keeps the database's own history (Neon's time travel, a point-in-time
restore); the demo imitates it with real databases::

    python -m incidentkit.db.demo_asof 2025-10-08T09:41:27.117Z
    ...
    postgresql://postgres@127.0.0.1:54012/incidentkit_demo_asof_20251008t094127117000z

The last line of standard output is the URL of a database that is the demo *as it was at* that
moment (ISO 8601 UTC, milliseconds or microseconds, ``Z`` or ``+00:00``): a copy of the demo made
with ``CREATE DATABASE ... TEMPLATE``, then every audited change after the moment undone in
reverse order (deleted rows re-inserted from ``row_data``, inserted ones deleted, updated ones
restored), then the audit schema dropped, so the snapshot is shaped like production. The audit
rows are genuine trigger rows (see :mod:`incidentkit.db.demo`); a transaction is undone as a
whole when its ``action_tstamp_tx`` is after the moment, never half of one. A bad moment: one
line on standard error, exit 2.

Snapshots are cached by moment (the same moment gives the same database), named
``incidentkit_demo_asof_<YYYYMMDD>t<HHMMSS><microseconds>z``, and made from a private copy of the
demo (``incidentkit_demo_asof_base``) that nobody else connects to, so an open notebook on the
demo does not block them. At most :data:`~incidentkit.config.DEMO_ASOF_KEEP` are kept: beyond
that the oldest ones nobody is connected to are dropped. Each one carries a mark (its database
comment) naming the demo database it was made from; a rebuilt demo makes them stale, and
:func:`incidentkit.db.demo.ensure_demo` drops them all (:func:`drop_demo_snapshots`). Every step
runs under the demo's lock, so two processes asking for the same moment get one database.

The command leaves the embedded server running (it takes a lease and does not stop the server
on exit): the caller is about to connect to the URL it printed. ``incidentkit server stop`` stops
a server no command uses any more.
"""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone

from .. import config
from ..exceptions import ConfigError
from ..text import one_line
from . import demo
from .snapshots import (  # noqa: F401 - re-exported: the as-of machinery lives in snapshots
    BASE_DATABASE, database_comment, drop_demo_snapshots, list_demo_snapshots, make_copy, parse_at,
    snapshot_mark, snapshot_name, _evict)

__all__ = ["BASE_DATABASE", "database_comment", "demo_as_of_command", "demo_snapshot", "drop_demo_snapshots",
           "list_demo_snapshots", "main", "make_copy", "parse_at", "snapshot_mark", "snapshot_name"]

def demo_as_of_command() -> str:
    """The ``--as-of-command`` template that hands out snapshots of the demo: ``... {at}``."""
    return shlex.join([sys.executable, "-m", "incidentkit.db.demo_asof"]) + " {at}"


# -- the database side ---------------------------------------------------------------------
def demo_snapshot(at: datetime, server=None, keep: int = config.DEMO_ASOF_KEEP) -> str:
    """The URL of a database that is the demo as it was at ``at`` (made once, then reused);
    beyond ``keep`` snapshots, the oldest are dropped."""
    from .embedded import ensure_server

    server = server or ensure_server()
    at = at.astimezone(timezone.utc)
    name = snapshot_name(at)
    with demo.demo_lock(server):
        demo.ensure_demo_locked(server)
        mark = snapshot_mark(server, at)
        with server.admin() as admin:
            fresh = database_comment(admin, name) == mark
        if not fresh:
            make_copy(server, name, at, mark)
            _evict(server, keep=keep, spare=name)
    return server.url(name)


def main(argv: list[str] | None = None) -> int:
    """``python -m incidentkit.db.demo_asof AT``: print the snapshot's URL as the last line."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if len(args) != 1:
            raise ConfigError("usage: python -m incidentkit.db.demo_asof AT (ISO 8601 UTC, "
                              "e.g. 2025-10-08T09:41:27.118Z)")
        url = demo_snapshot(parse_at(args[0]))
    except Exception as e:  # noqa: BLE001 - one line, never a traceback (nor a URL)
        from ..text import scrub_secrets

        print(f"error: {scrub_secrets(one_line(e, 300))}", file=sys.stderr)
        return 2
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
