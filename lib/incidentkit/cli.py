"""``incidentkit <verb>``: each verb parses, calls one library function, prints, exits 0/1/2.

Exit codes: 0 ok, 1 a check failed, 2 an error (one line on stderr starting ``error:``).
The database URL is read from an environment variable (``DATABASE_URL``, or the one named
by ``--database-url-env``), never from the command line; ``--demo`` uses the embedded demo.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from . import config
from .exceptions import ConfigError, IncidentKitError

_URL_WITH_AUTH = re.compile(r"([a-z][a-z0-9+.-]*://)[^\s/@]*@", re.I)


def _scrub(text: str) -> str:
    """Hide credentials in anything echoed back (argparse repeats unrecognised arguments)."""
    return _URL_WITH_AUTH.sub(r"\1***@", str(text))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not (0 < seconds < 86_400):
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds: {value!r}")
    return seconds


def _count(value: str) -> int:
    if not re.fullmatch(r"\d{1,9}", value or ""):
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {value!r}")
    return int(value)


def _add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target database")
    g.add_argument("--demo", action="store_true", help="use the embedded demo database (started on demand)")
    g.add_argument("--database-url-env", metavar="NAME", default=config.DEFAULT_URL_ENV,
                   help="environment variable holding the URL (default: DATABASE_URL)")
    g.add_argument("--schema-map", metavar="FILE", help="TOML schema mapping (default: [tool.incidentkit.schema] "
                                                        "in ./pyproject.toml, else the reference schema)")
    g.add_argument("--statement-timeout", type=_positive_seconds, default=30.0, metavar="S",
                   help="statement timeout per query, seconds (default 30)")
    g.add_argument("--lock-timeout", type=_positive_seconds, default=2.0, metavar="S",
                   help="lock timeout, seconds (default 2)")
    g.add_argument("--idle-timeout", type=_positive_seconds, default=60.0, metavar="S",
                   help="idle-in-transaction timeout, seconds (default 60)")


def _database(args):
    from .db.connection import Database
    from .db.schema import SchemaMap

    timeouts = config.Timeouts(int(args.statement_timeout * 1000), int(args.lock_timeout * 1000),
                               int(args.idle_timeout * 1000))
    schema = SchemaMap.load(args.schema_map)
    if args.demo:
        return Database.demo(schema=schema, timeouts=timeouts)
    return Database.from_env(args.database_url_env, schema=schema, timeouts=timeouts)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- verbs ------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .report.render import render_demo

    result = render_demo(out_dir=args.out, date=args.date)
    print("\n".join(result.lines()))
    return 0


def cmd_diagnose(args) -> int:
    from .analysis.diagnosis import diagnose

    db = _database(args)
    d = diagnose(db, sample_limit=args.sample_limit)
    if args.json:
        _print_json(d.to_dict())
    else:
        from .analysis.indexes import index_advice

        print("\n".join(d.summary_lines()))
        for a in index_advice(db):
            if not a.present:
                print(f"missing index for {a.purpose}: {a.create} (read without it: planner cost {a.cost_without:,.0f})")
    return 0


def cmd_check(args) -> int:
    from .analysis.diagnosis import check, diagnose

    d = diagnose(_database(args), sample_limit=5)
    result = check(d, args.max_users_without_primary, args.max_invalid_primary, args.max_orphaned_memberships)
    print("\n".join(result.lines()))
    return 0 if result.ok else 1


def cmd_report(args) -> int:
    from .report.render import render_for

    result = render_for(
        database_url_env="" if args.demo else args.database_url_env,
        schema_map=args.schema_map or "", out_dir=args.out, date=args.date, show_code=args.show_code,
        logs=args.logs, max_users=args.max_users, window=args.window, race_lab=not args.no_race_lab,
        redact=args.redact, redact_workspaces=args.redact_workspaces,
    )
    print("\n".join(result.lines()))
    return 0


def cmd_timeline(args) -> int:
    from .evidence.timeline import user_timeline

    t = user_timeline(_database(args), args.user_id, logs=args.logs or None, window=args.window)
    if args.json:
        _print_json(t.to_dict())
    else:
        print(t.text())
    return 0


def cmd_affected(args) -> int:
    from .evidence.verdicts import affected

    # Without --logs the library takes the demo's own log on the demo, and refuses elsewhere.
    a = affected(_database(args), args.logs or None, window=args.window)
    if args.json:
        _print_json(a.to_dict())
    else:
        print(a.text())
    return 0


def cmd_race(args) -> int:
    from .racelab import run_race_lab

    results = run_race_lab(scratch_url=args.scratch_url)
    if args.json:
        _print_json([r.to_dict() for r in results])
    else:
        from .report.notebook import frame_to_markdown
        from .racelab import conclusions, matrix_frame

        print(frame_to_markdown(matrix_frame(results)))
        print()
        print("\n".join(conclusions(results)))
    return 0


def cmd_remediation(args) -> int:
    from .analysis.indexes import remediation_sql
    from .racelab import write_remediation
    from .db.schema import SchemaMap

    schema = SchemaMap.load(args.schema_map)
    for path in write_remediation(Path(args.out)):
        print(path)
    path = Path(args.out) / "04_investigation_indexes.sql"
    path.write_text(remediation_sql(schema), encoding="utf-8")
    print(path)
    return 0


def cmd_lab(args) -> int:
    from .lab import open_lab

    extra = args.jupyter_args[1:] if args.jupyter_args[:1] == ["--"] else args.jupyter_args
    return open_lab(port=args.port, no_browser=args.no_browser, extra=extra,
                    database_url_env=args.database_url_env)


def cmd_server(args) -> int:
    from .db.embedded import default_server

    server = default_server()
    if args.action == "start":
        server.start()
        print(f"running: {server.data_dir} on 127.0.0.1:{server.port} (PostgreSQL {server.major})")
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    else:
        running = server.is_running()
        print(f"{'running' if running else 'stopped'}: {server.data_dir} (PostgreSQL {server.major})")
        return 0 if running else 1
    return 0


# -- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="incidentkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"incidentkit {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    p = sub.add_parser("demo", help="start the embedded server, load the demo incident, render the full report")
    p.add_argument("--out", metavar="DIR", help="reports directory (default: reports/)")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the report's date (default: today, UTC)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("diagnose", help="the diagnosis figures, foreign keys and offending samples")
    _add_target(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--sample-limit", type=_count, default=config.DEFAULT_SAMPLE_LIMIT, metavar="N",
                   help="offending keys listed at most (default 20)")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("check", help="exit 1 when users lack/have invalid primary workspaces or memberships are orphaned")
    _add_target(p)
    p.add_argument("--max-users-without-primary", type=_count, default=0, metavar="N")
    p.add_argument("--max-invalid-primary", type=_count, default=0, metavar="N")
    p.add_argument("--max-orphaned-memberships", type=_count, default=0, metavar="N")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("report", help="render the notebooks into a dated report folder")
    _add_target(p)
    p.add_argument("--out", metavar="DIR", help="reports directory (default: reports/)")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the report's date (default: today, UTC)")
    p.add_argument("--show-code", action="store_true", help="keep the code cells in HTML and Markdown")
    p.add_argument("--logs", nargs="+", metavar="PATH", help="application or server logs (files, globs, dirs)")
    p.add_argument("--max-users", type=_count, default=config.DEFAULT_MAX_USERS, metavar="N",
                   help="timelines rendered at most (default 20)")
    p.add_argument("--window", type=_positive_seconds, default=config.DEFAULT_WINDOW_SECONDS, metavar="S")
    p.add_argument("--no-race-lab", action="store_true", help="leave the race lab out of the report")
    p.add_argument("--redact", action="store_true",
                   help="replace user ids and e-mail addresses with stable pseudonyms in every artifact")
    p.add_argument("--redact-workspaces", action="store_true", help="pseudonymise workspace ids too")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("timeline", help="one user's events, failed logins and verdicts")
    p.add_argument("user_id", metavar="USER_ID")
    _add_target(p)
    p.add_argument("--logs", nargs="+", metavar="PATH")
    p.add_argument("--window", type=_positive_seconds, default=config.DEFAULT_WINDOW_SECONDS, metavar="S")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_timeline)

    p = sub.add_parser("affected", help="every failed login in the logs with its verdict")
    _add_target(p)
    p.add_argument("--logs", nargs="+", metavar="PATH")
    p.add_argument("--window", type=_positive_seconds, default=config.DEFAULT_WINDOW_SECONDS, metavar="S")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_affected)

    p = sub.add_parser("race", help="run the race lab on a scratch database (never on DATABASE_URL)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--scratch-url", metavar="URL",
                   help="another scratch server's database (refused if it holds tables the lab did not create)")
    p.set_defaults(func=cmd_race)

    p = sub.add_parser("remediation", help="write the remediation SQL files for review")
    p.add_argument("--out", metavar="DIR", required=True)
    p.add_argument("--schema-map", metavar="FILE", help="TOML schema mapping for the index statements")
    p.set_defaults(func=cmd_remediation)

    p = sub.add_parser("lab", help="open JupyterLab on the notebooks (the demo database ready when no DATABASE_URL)")
    p.add_argument("--port", type=int, metavar="N")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--database-url-env", metavar="NAME", default=config.DEFAULT_URL_ENV)
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, metavar="-- JUPYTER_ARGS",
                   help="passed to jupyter lab after a --")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("server", help="the embedded PostgreSQL server: start, stop, status")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        try:
            return args.func(args)
        finally:
            if args.func is not cmd_server and "incidentkit.db.embedded" in sys.modules:
                # A server started on demand for this command is stopped when it is done.
                sys.modules["incidentkit.db.embedded"].stop_started_here()
    except IncidentKitError as e:
        print(f"error: {_scrub(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        if os.environ.get("INCIDENTKIT_DEBUG"):
            raise
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        print(f"error: unexpected {type(e).__name__}: {_scrub(first)[:300]} "
              "(set INCIDENTKIT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
