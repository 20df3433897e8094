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

from .config import __version__
from . import config
from .exceptions import ConfigError, IncidentKitError
from .text import conninfo_parts, one_line, scrub_secrets

_UNRECOGNIZED = "unrecognized arguments: "


def _looks_like_credentials(arg: str) -> bool:
    """A stray argument that may be (part of) a connection string: never echoed."""
    return "://" in arg or "@" in arg or "=" in arg.lstrip("-")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        if message.startswith(_UNRECOGNIZED):
            stray = message[len(_UNRECOGNIZED):].split(" ")
            if any(_looks_like_credentials(a) for a in stray):
                shown = " ".join(a for a in stray if not _looks_like_credentials(a))
                message = (f"{_UNRECOGNIZED}{shown + ' and ' if shown else ''}"
                           "what looks like a connection string (not shown); the database URL is read from "
                           f"${config.DEFAULT_URL_ENV} (or --database-url-env NAME), never from the command line")
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def _secrets(args: argparse.Namespace | None) -> list[str]:
    """Strings that must never reach output: the URLs this command may hold, and their passwords."""
    urls = [os.environ.get(config.DEFAULT_URL_ENV, "")]
    env_name = getattr(args, "database_url_env", None)
    if isinstance(env_name, str) and env_name and len(env_name) < 256:
        urls.append(os.environ.get(env_name, ""))
    urls.append(getattr(args, "scratch_url", None) or "")
    out: list[str] = []
    for url in urls:
        if not url:
            continue
        out.append(url)
        try:
            out.append(conninfo_parts(url).get("password", ""))
        except ValueError:
            pass
    return [s for s in out if s]


def _explain(exc: BaseException) -> str:
    """What happened, for an exception the library did not turn into an IncidentKitError."""
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
    if isinstance(exc, OSError):
        what = exc.strerror or first or "an operating system error"
        where = exc.filename if exc.filename is not None else None
        return f"{what}: {where}" if where is not None else what
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, UnicodeError):
        return f"text that is not valid UTF-8 ({first})" if first else "text that is not valid UTF-8"
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        psycopg = None
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return f"the database connection failed: {first or 'no reason given'}"
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return f"the database refused a query: {first or type(exc).__name__}"
    return (f"{first or 'an internal error'} (an internal {type(exc).__name__}; "
            "set INCIDENTKIT_DEBUG=1 for the traceback)")


#: The longest error line the CLI prints (the start and the end of a longer message are kept).
ERROR_LINE_LIMIT = 500


def _error_line(text: Any, secrets: list[str]) -> str:
    return f"error: {one_line(scrub_secrets(text, secrets), ERROR_LINE_LIMIT)}"


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
    g.add_argument("--demo-production", action="store_true",
                   help="the demo incident as production is: no audit table; its server log, access log and "
                        "point-in-time snapshots are the deletion evidence")
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


def _duration(value: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``10ms`` or plain seconds -> seconds (> 0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*", value or "")
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration (e.g. 7d, 12h, 30m, 45s, 10ms): {value!r}")
    n = float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < n <= 366 * 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most a year: {value!r}")
    return n


def _add_as_of(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("point-in-time probes (the database's own history)")
    g.add_argument("--as-of-command", metavar="CMD",
                   help="a command printing, as its last line, a URL of the database as it was at {at} (ISO 8601 "
                        "UTC), e.g. 'neonctl connection-string main@{at}'; run without a shell, its URL never shown")
    g.add_argument("--as-of-since", type=_duration, default=config.DEFAULT_AS_OF_SINCE_SECONDS, metavar="DURATION",
                   help="how far back from a failure to probe (default 7d)")
    g.add_argument("--as-of-precision", type=_duration, default=config.DEFAULT_AS_OF_PRECISION_SECONDS,
                   metavar="DURATION", help="bisect until the bracket is this narrow (default 10ms)")


def _as_of(args) -> dict[str, Any]:
    return {"as_of": args.as_of_command, "as_of_since": args.as_of_since, "as_of_precision": args.as_of_precision}


def _timeouts(args) -> "config.Timeouts":
    return config.Timeouts(int(args.statement_timeout * 1000), int(args.lock_timeout * 1000),
                           int(args.idle_timeout * 1000))


def _database(args):
    from .db.connection import Database
    from .db.schema import SchemaMap

    timeouts = _timeouts(args)
    schema = SchemaMap.load(args.schema_map)
    if args.demo or args.demo_production:
        return Database.demo(production=args.demo_production, schema=schema, timeouts=timeouts)
    return Database.from_env(args.database_url_env, schema=schema, timeouts=timeouts)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- verbs ------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .report.render import render_demo

    result = render_demo(out_dir=args.out, date=args.date, demo="production" if args.production else "audit",
                         constraint=args.constraint or "")
    print("\n".join(result.lines()))
    return 0


def cmd_diagnose(args) -> int:
    if args.constraint is not None or args.error is not None or args.table is not None:
        from .analysis.constraints import diagnose_constraint

        if args.error == "-":  # a multi-line paste, from stdin
            args.error = sys.stdin.read()
        schema, table = None, args.table
        if table and "." in table:
            schema, table = table.split(".", 1)
        d = diagnose_constraint(_database(args), args.constraint, error=args.error, sample_limit=args.sample_limit,
                                table=table, schema=schema)
        if args.json:
            _print_json(d.to_dict())
        else:
            print(d.text())
        return 0
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
        database_url_env="" if (args.demo or args.demo_production) else args.database_url_env,
        schema_map=args.schema_map or "", out_dir=args.out, date=args.date, show_code=args.show_code,
        logs=args.logs, max_users=args.max_users, window=args.window, race_lab=not args.no_race_lab,
        redact=args.redact, redact_workspaces=args.redact_workspaces, timeouts=_timeouts(args),
        demo="production" if args.demo_production else "audit", as_of_command=args.as_of_command,
        as_of_since=args.as_of_since, as_of_precision=args.as_of_precision,
        constraint=args.constraint or "", error=(sys.stdin.read() if args.error == "-" else args.error) or "",
    )
    print("\n".join(result.lines()))
    return 0


def cmd_timeline(args) -> int:
    if args.constraint is not None:
        from .evidence.generic import key_timeline

        t = key_timeline(_database(args), args.constraint, [args.user_id, *args.key], logs_paths=args.logs or None,
                         window=args.window, **_as_of(args))
        if args.json:
            _print_json(t.to_dict())
        else:
            print(t.text())
        return 0
    if args.key:  # as without KEY...: stray arguments (never echoed when they look like credentials)
        _Parser(prog="incidentkit timeline").error(_UNRECOGNIZED + " ".join(args.key))
    from .evidence import user_timeline

    t = user_timeline(_database(args), args.user_id, logs=args.logs or None, window=args.window, **_as_of(args))
    if args.json:
        _print_json(t.to_dict())
    else:
        print(t.text())
    return 0


def cmd_affected(args) -> int:
    if args.constraint is not None or args.error is not None or args.all_constraints:
        from .evidence.generic import affected_any

        if args.error == "-":  # a multi-line paste, from stdin
            args.error = sys.stdin.read()
        a = affected_any(_database(args), args.logs or None, constraint=args.constraint, error=args.error,
                         window=args.window, **_as_of(args))
        if args.json:
            _print_json(a.to_dict())
        else:
            print(a.text())
        return 0
    from .evidence import affected

    # Without --logs the library takes the demo's own log on the demo, and refuses elsewhere.
    a = affected(_database(args), args.logs or None, window=args.window, digest=False,  # no manifest here
                 **_as_of(args))
    if args.json:
        _print_json(a.to_dict())
    else:
        print(a.text())
    return 0


def cmd_race(args) -> int:
    if args.constraint is not None or args.error is not None:
        return _race_constraint(args)
    from .racelab import run_race_lab

    if args.scratch_url is not None:
        try:
            conninfo_parts(args.scratch_url)  # refused here, before anything could quote it
        except ValueError as e:
            raise ConfigError(f"--scratch-url is malformed: {e}") from None
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


def _race_constraint(args) -> int:
    """``race --constraint NAME`` / ``--error TEXT``: the definitions read from the database named by
    ``--database-url-env`` (one read-only snapshot), the race run on a scratch copy of its own."""
    from .analysis.constraints import parse_error
    from .db.connection import Database
    from .racelab import generic_summary, generic_text, run_generic_race_lab

    if args.scratch_url is not None:
        raise ConfigError("--scratch-url is not used with --constraint/--error: the lab builds its scratch copy "
                          "on the embedded server")
    target: Any = args.constraint
    if args.error is not None:
        parsed = parse_error(sys.stdin.read() if args.error == "-" else args.error)
        if args.constraint and args.constraint != parsed.constraint:
            raise ConfigError(f"the constraint {args.constraint!r} is not the one the error names "
                              f"({parsed.constraint!r})")
        target = parsed
    results = run_generic_race_lab(target, Database.from_env(args.database_url_env))
    if args.json:
        _print_json({"summary": generic_summary(results), "cells": [r.to_dict() for r in results]})
    else:
        print(generic_text(results))
    return 0


def cmd_remediation(args) -> int:
    from .analysis.indexes import remediation_sql
    from .db.schema import SchemaMap
    from .racelab import write_remediation
    from .report.render import latest_race_results

    schema = SchemaMap.load(args.schema_map)
    results, run = latest_race_results(args.reports)
    if results is None:
        print(f"remediation: no report run in {args.reports} holds race-lab results; running the race lab first",
              file=sys.stderr)
    else:
        print(f"remediation: verified by the race lab of the report run {run}", file=sys.stderr)
    for path in write_remediation(Path(args.out), results=results):
        print(path)
    path = Path(args.out) / "04_investigation_indexes.sql"
    path.write_text(remediation_sql(schema), encoding="utf-8")
    print(path)
    return 0


def _lab_options(p: argparse.ArgumentParser, investigate: bool) -> None:
    p.add_argument("--port", type=int, metavar="N")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--database-url-env", metavar="NAME", default=config.DEFAULT_URL_ENV,
                   help="a new investigation reads this variable's database when it is set (default: "
                        "DATABASE_URL), else the demo")
    if investigate:
        p.add_argument("--no-lab", action="store_true", help="only create or reopen the folder; print its path")


def cmd_lab(args) -> int:
    from .lab import open_lab

    rest = list(args.jupyter_args)
    cut = rest.index("--") if "--" in rest else len(rest)
    rest, extra = rest[:cut], rest[cut + 1:]
    if rest:  # options after NAME (argparse's REMAINDER took them): parsed here, as if before it
        again = _Parser(prog=f"incidentkit {args.verb}")
        _lab_options(again, args.verb == "investigate")
        for key, value in vars(again.parse_args(rest)).items():
            if value != again.get_default(key):
                setattr(args, key, value)
    return open_lab(getattr(args, "name", None), port=args.port, no_browser=args.no_browser, extra=extra,
                    database_url_env=args.database_url_env, start=not getattr(args, "no_lab", False))


def cmd_server(args) -> int:
    from .db.embedded import default_server
    from .exceptions import EmbeddedServerError

    server = default_server()
    if args.action == "start":
        server.start(persistent=True)
        print(f"running: {server.data_dir} on 127.0.0.1:{server.port} (PostgreSQL {server.major})")
    elif args.action == "stop":
        users = server.holders() if server.is_running() else []
        if users and not args.force:
            shown = ", ".join(str(p) for p in users[:5]) + (", ..." if len(users) > 5 else "")
            raise EmbeddedServerError(f"the embedded server is in use by {len(users)} other incidentkit "
                                      f"process{'es' if len(users) != 1 else ''} (PID {shown}): not stopped; "
                                      "it stops when they finish if they started it, or use --force")
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
    p.add_argument("--production", action="store_true",
                   help="the same incident as production is: no audit table; the verdicts come from the server "
                        "log, the access log and point-in-time snapshots")
    p.add_argument("--constraint", metavar="NAME",
                   help="the report of this foreign key of the demo (e.g. order_items_order_id_fkey, its second "
                        "incident)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("diagnose", help="the diagnosis figures, foreign keys and offending samples")
    _add_target(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--sample-limit", type=_count, default=config.DEFAULT_SAMPLE_LIMIT, metavar="N",
                   help="offending keys listed at most (default 20)")
    p.add_argument("--constraint", metavar="NAME", help="any foreign key, by its constraint name")
    p.add_argument("--error", metavar="TEXT", help="any foreign key, from its violation's error text as pasted "
                                                   "(message and Detail line; - reads it from stdin)")
    p.add_argument("--table", metavar="[SCHEMA.]TABLE",
                   help="the referencing table, when the constraint name is used on several tables")
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
    p.add_argument("--constraint", metavar="NAME", help="the report of any foreign key, by its constraint name "
                                                         "(default: the mapped users -> workspaces relationship)")
    p.add_argument("--error", metavar="TEXT", help="the report of the foreign key this violation's error text names, "
                                                   "as pasted (- reads it from stdin)")
    _add_as_of(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("timeline", help="one user's events, failed logins and verdicts")
    p.add_argument("user_id", metavar="USER_ID")
    p.add_argument("key", nargs="*", metavar="KEY",
                   help="with --constraint: USER_ID KEY... are the key's values, in its columns' order")
    _add_target(p)
    p.add_argument("--logs", nargs="+", metavar="PATH")
    p.add_argument("--window", type=_positive_seconds, default=config.DEFAULT_WINDOW_SECONDS, metavar="S")
    p.add_argument("--json", action="store_true")
    p.add_argument("--constraint", metavar="NAME",
                   help="any foreign key: the timeline of one key of it (incidentkit timeline --constraint NAME "
                        "VALUE [VALUE...])")
    _add_as_of(p)
    p.set_defaults(func=cmd_timeline)

    p = sub.add_parser("affected", help="every failed login in the logs with its verdict")
    _add_target(p)
    p.add_argument("--logs", nargs="+", metavar="PATH")
    p.add_argument("--window", type=_positive_seconds, default=config.DEFAULT_WINDOW_SECONDS, metavar="S")
    p.add_argument("--json", action="store_true")
    p.add_argument("--constraint", metavar="NAME",
                   help="any foreign key, by its constraint name: its violations in --logs, each with a verdict")
    p.add_argument("--error", metavar="TEXT", help="any foreign key, from its violation's error text as pasted "
                                                   "(message and Detail line; - reads it from stdin)")
    p.add_argument("--all-constraints", action="store_true",
                   help="every foreign-key violation in --logs, grouped by constraint, each with a verdict")
    _add_as_of(p)
    p.set_defaults(func=cmd_affected)

    p = sub.add_parser("race", help="run the race lab on a scratch database (never on DATABASE_URL)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--scratch-url", metavar="URL",
                   help="another scratch server's database (refused if it holds tables the lab did not create)")
    p.add_argument("--constraint", metavar="NAME",
                   help="race any foreign key: insert a referencing row while its referenced row is deleted, on a "
                        "scratch copy of the two tables built from the database's catalog (only read)")
    p.add_argument("--error", metavar="TEXT", help="the foreign key named by this violation's error text, as pasted "
                                                   "(- reads it from stdin)")
    p.add_argument("--database-url-env", metavar="NAME", default=config.DEFAULT_URL_ENV,
                   help="with --constraint/--error: the variable holding the URL whose catalog is read "
                        "(default: DATABASE_URL)")
    p.set_defaults(func=cmd_race)

    p = sub.add_parser("remediation", help="write the remediation SQL files for review")
    p.add_argument("--out", metavar="DIR", required=True)
    p.add_argument("--reports", metavar="DIR", default=str(config.reports_dir()),
                   help="the reports folder whose latest run's race lab verifies the files (default: reports); "
                        "without one the race lab runs first")
    p.add_argument("--schema-map", metavar="FILE", help="TOML schema mapping for the index statements")
    p.set_defaults(func=cmd_remediation)

    p = sub.add_parser("investigate", help="create or reopen investigations/<date>-NAME/ (copies of the notebooks "
                                           "and a parameters.toml) and open JupyterLab there")
    p.add_argument("name", metavar="NAME", help="letters, digits, '.', '_', '-' (reopens the newest <date>-NAME; "
                                                "a dated folder's full name reopens that one)")
    _lab_options(p, investigate=True)
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, metavar="-- JUPYTER_ARGS",
                   help="passed to jupyter lab after a --").required = False
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("lab", help="open JupyterLab on today's scratch investigation, investigations/<date>-scratch/ "
                                   "(the demo database when DATABASE_URL is not set)")
    _lab_options(p, investigate=False)
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, metavar="-- JUPYTER_ARGS",
                   help="passed to jupyter lab after a --").required = False
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("server", help="the embedded PostgreSQL server: start, stop, status")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--force", action="store_true", help="stop: even while other incidentkit commands use it")
    p.set_defaults(func=cmd_server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            print(f"error: give a verb: {', '.join(_verbs(parser))} (see 'incidentkit --help')", file=sys.stderr)
            return 2
        try:
            return args.func(args)
        finally:
            if args.func is not cmd_server and "incidentkit.db.embedded" in sys.modules:
                # A server started on demand for this command is stopped when it is done.
                sys.modules["incidentkit.db.embedded"].stop_started_here()
    except IncidentKitError as e:
        print(_error_line(e, _secrets(args)), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        if os.environ.get("INCIDENTKIT_DEBUG"):
            raise
        print(_error_line(_explain(e), _secrets(args)), file=sys.stderr)
        return 2


def _verbs(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


if __name__ == "__main__":
    sys.exit(main())
