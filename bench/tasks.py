"""The workloads the benchmark measures, one per child process: ``python bench/tasks.py TASK JSON``.

Each task prints one JSON object as its last line of stdout (its own timings and results);
the parent (``bench/run.py``) measures the process from outside (wall time, peak RSS).
Imports a task needs are done before its clock starts, unless said otherwise.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _vmhwm_mb() -> float | None:
    """This process's peak RSS since its exec (``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _done(**result) -> None:
    print(json.dumps({**result, "vmhwm_mb": _vmhwm_mb()}, default=str), flush=True)


# -- diagnosis ------------------------------------------------------------------------------
def diagnose(args: dict) -> None:
    """The kit's diagnosis in-process: ``diagnose(Database(url))`` (connection included)."""
    import psycopg  # noqa: F401  (imports before the clock: the kit imports them lazily)
    import sqlalchemy  # noqa: F401

    import incidentkit

    t0 = time.perf_counter()
    d = incidentkit.diagnose(_database(args["url"]))
    seconds = time.perf_counter() - t0
    _done(seconds=seconds, figures=d.figures())


def _database(url: str):
    """The kit's Database for ``url``, its statement timeout raised for the largest databases
    (the default, 30 s, guards production)."""
    import incidentkit

    return incidentkit.Database(url, timeouts=incidentkit.Timeouts(statement_ms=900_000))


def pandas_pull(args: dict) -> None:
    """The naive way: ``pandas.read_sql`` of the three whole tables, the six figures in pandas."""
    import pandas as pd
    import psycopg  # noqa: F401
    from sqlalchemy import create_engine

    engine = create_engine(args["url"].replace("postgresql://", "postgresql+psycopg://", 1))
    t0 = time.perf_counter()
    users = pd.read_sql("users", engine)
    workspaces = pd.read_sql("workspaces", engine)
    members = pd.read_sql("workspace_members", engine)
    t_read = time.perf_counter() - t0
    ws_ids = set(workspaces["id"])
    has_primary = users["primary_workspace_id"].notna()
    figures = {
        "total_users": len(users),
        "total_workspaces": len(workspaces),
        "total_memberships": len(members),
        "users_without_primary_workspace": int((~has_primary).sum()),
        "users_with_invalid_primary_workspace": int((has_primary & ~users["primary_workspace_id"].isin(ws_ids)).sum()),
        "orphaned_memberships": int((~members["workspace_id"].isin(ws_ids)).sum()),
    }
    seconds = time.perf_counter() - t0
    _done(seconds=seconds, read_seconds=t_read, figures={k: int(v) for k, v in figures.items()})


# -- one user's timeline ----------------------------------------------------------------------
def _pace(users: list[str], budget: float, min_users: int, fn) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    for u in users:
        t0 = time.perf_counter()
        fn(u)
        times.append(time.perf_counter() - t0)
        if len(times) >= min_users and time.perf_counter() - start > budget:
            break
    return times


def timeline(args: dict) -> None:
    """``incidentkit.evidence.timeline.user_timeline`` for each user, one ``Database`` for all (one warm-up call first)."""
    import psycopg  # noqa: F401
    import sqlalchemy  # noqa: F401

    import incidentkit  # noqa: F401
    from incidentkit.evidence.timeline import user_timeline

    db = _database(args["url"])
    warm = user_timeline(db, args["warmup"])
    events = []

    def one(u):
        events.append(len(user_timeline(db, u).events))

    times = _pace(args["users"], args["budget"], args["min_users"], one)
    _done(times=times, events=events, warmup_events=len(warm.events))


#: The hand-written SQL for the rows the kit's timeline reads (see incidentkit.db.queries): the same rows,
#: literal table names, on one connection and one transaction per user.
RAW_TIMELINE = {
    "user": "select privy_did, primary_workspace_id::text, created_at from users where privy_did = %(u)s",
    "memberships": "select id::text, workspace_id::text, user_id, is_primary, joined_at from workspace_members "
                   "where user_id = %(u)s",
    "user_audit": "select action, action_tstamp_clk, transaction_id, row_data from audit.logged_actions "
                  "where table_name = 'users' and schema_name = 'public' and row_data ->> 'privy_did' = %(u)s",
    "membership_inserts": "select action, action_tstamp_clk, transaction_id, row_data from audit.logged_actions "
                          "where table_name = 'workspace_members' and action = 'I' and schema_name = 'public' "
                          "and row_data ->> 'user_id' = %(u)s",
    "workspaces": "select id::text, created_at from workspaces where id = any(%(w)s::uuid[])",
    "workspace_audit": "select action, action_tstamp_clk, transaction_id, row_data from audit.logged_actions "
                       "where row_data ->> 'id' = any(%(w)s::text[]) and table_name = 'workspaces' "
                       "and schema_name = 'public'",
    "cascade": "select a.action, a.action_tstamp_clk, a.transaction_id, a.row_data "
               "from unnest(%(tx)s::bigint[], %(at)s::timestamptz[]) as d(tx, at) "
               "join audit.logged_actions a on a.table_name = 'workspace_members' and a.action = 'D' "
               "and a.action_tstamp_clk between d.at - interval '1 hour' and d.at + interval '1 hour' "
               "and a.transaction_id = d.tx where a.schema_name = 'public'",
    "membership_audit": "select action, action_tstamp_clk, transaction_id, row_data from audit.logged_actions "
                        "where row_data ->> 'id' = any(%(m)s::text[]) and table_name = 'workspace_members' "
                        "and schema_name = 'public'",
    "audit_since": "select min(action_tstamp_clk) from audit.logged_actions "
                   "where table_name = 'workspaces' and action = 'I' and schema_name = 'public'",
}


def raw_timeline_rows(conn, u: str) -> int:
    """Read one user's rows with :data:`RAW_TIMELINE` on ``conn`` (psycopg); how many rows came back."""
    q = RAW_TIMELINE
    user = conn.execute(q["user"], {"u": u}).fetchall()
    members = conn.execute(q["memberships"], {"u": u}).fetchall()
    user_audit = conn.execute(q["user_audit"], {"u": u}).fetchall()
    inserts = conn.execute(q["membership_inserts"], {"u": u}).fetchall()
    wids = {r[1] for r in members} | {r[3].get("workspace_id") for r in inserts}
    wids |= {r[1] for r in user} | {r[3].get("primary_workspace_id") for r in user_audit}
    wids = sorted(w for w in wids if w)
    workspaces = conn.execute(q["workspaces"], {"w": wids}).fetchall()
    ws_audit = conn.execute(q["workspace_audit"], {"w": wids}).fetchall()
    dels = [(r[2], r[1]) for r in ws_audit if r[0] == "D"]
    cascade = conn.execute(q["cascade"], {"tx": [d[0] for d in dels], "at": [d[1] for d in dels]}).fetchall()
    mids = sorted({r[0] for r in members} | {r[3].get("id") for r in inserts} | {r[3].get("id") for r in cascade})
    m_audit = conn.execute(q["membership_audit"], {"m": mids}).fetchall()
    since = conn.execute(q["audit_since"]).fetchall()
    return sum(map(len, (user, members, user_audit, inserts, workspaces, ws_audit, cascade, m_audit, since)))


def timeline_raw(args: dict) -> None:
    """:data:`RAW_TIMELINE` through psycopg: per user, connect, one transaction, the statements, close."""
    import psycopg

    def one(u):
        with psycopg.connect(args["url"]) as conn:
            raw_timeline_rows(conn, u)

    one(args["warmup"])
    times = _pace(args["users"], args["budget"], args["min_users"], one)
    connect = []
    for _ in range(20):
        t0 = time.perf_counter()
        psycopg.connect(args["url"]).close()
        connect.append(time.perf_counter() - t0)
    _done(times=times, connect_median=statistics.median(connect))


# -- reports ----------------------------------------------------------------------------------
def render(args: dict) -> None:
    """The kit's full report: ``incidentkit.report.render.render_for`` (plan, papermill, nbconvert, entry page)."""
    from incidentkit.report import render as reports

    out = Path(tempfile.mkdtemp(prefix="ik-bench-report-", dir=args.get("tmp")))
    t0 = time.perf_counter()
    result = reports.render_for(database_url_env=args["env"], out_dir=out, logs=args["logs"] or None,
                                max_users=args["max_users"], race_lab=args["race_lab"])
    seconds = time.perf_counter() - t0
    runs = [{"notebook": str(r.notebook), "name": r.name,
             "parameters": {k: v for k, v in r.parameters.items() if k in reports.declared_parameters(r.notebook)}}
            for r in result.runs]
    Path(args["runs_file"]).write_text(json.dumps(runs, indent=1))
    _done(seconds=seconds, notebooks=[r["name"] for r in runs], folder=str(result.folder))


def papermill_bare(args: dict) -> None:
    """The floor: papermill executes the same notebooks with the same parameters, nothing else."""
    import papermill

    runs = json.loads(Path(args["runs_file"]).read_text())
    out = Path(tempfile.mkdtemp(prefix="ik-bench-bare-", dir=args.get("tmp")))
    t0 = time.perf_counter()
    for r in runs:
        nb = Path(r["notebook"])
        papermill.execute_notebook(str(nb), str(out / f"{r['name']}.ipynb"), parameters=r["parameters"],
                                   kernel_name="python3", progress_bar=False, log_output=False, cwd=str(nb.parent))
    _done(seconds=time.perf_counter() - t0, notebooks=len(runs), folder=str(out))


# -- where the time goes ------------------------------------------------------------------------
def _statement_timer():
    """Wrap ``Reader.all`` to time every statement, keyed by the ``incidentkit.db.queries`` function that ran it."""
    from incidentkit.db import connection

    original = connection.Reader.all
    spent: dict[str, list[float]] = {}

    def timed(self, sql, params=None):
        frame, name = sys._getframe(1), "(other)"
        while frame is not None:
            if frame.f_code.co_filename.endswith(os.path.join("incidentkit", "db", "queries.py")):
                name = frame.f_code.co_name
                break
            if frame.f_code.co_filename.endswith(os.path.join("incidentkit", "db", "connection.py")):
                name = f"connection.{frame.f_code.co_name}"
            frame = frame.f_back
        t0 = time.perf_counter()
        try:
            return original(self, sql, params)
        finally:
            spent.setdefault(name, []).append(time.perf_counter() - t0)

    connection.Reader.all = timed
    return spent


def breakdown(args: dict) -> None:
    """Per statement of the kit: the diagnosis once (after a warm-up) and the timeline of a few users."""
    import incidentkit
    from incidentkit.evidence.timeline import user_timeline

    db = _database(args["url"])
    incidentkit.diagnose(db)
    user_timeline(db, args["warmup"])
    spent = _statement_timer()
    t0 = time.perf_counter()
    incidentkit.diagnose(db)
    diag_total = time.perf_counter() - t0
    diag = {k: sum(v) for k, v in spent.items()}
    spent.clear()
    t0 = time.perf_counter()
    for u in args["users"]:
        user_timeline(db, u)
    n = len(args["users"])
    tl_total = (time.perf_counter() - t0) / n
    tl = {k: sum(v) / n for k, v in spent.items()}
    _done(diagnosis=diag, diagnosis_total=diag_total, timeline=tl, timeline_total=tl_total)


# -- logs -------------------------------------------------------------------------------------
def scan_log(args: dict) -> None:
    """``incidentkit.evidence.logs.scan_logs`` over one large file."""
    from incidentkit.evidence.logs import scan_logs

    t0 = time.perf_counter()
    scan = scan_logs(args["path"])
    seconds = time.perf_counter() - t0
    _done(seconds=seconds, failures=len(scan.failures), skipped=scan.skipped_lines,
          bytes=os.path.getsize(args["path"]))


TASKS = {f.__name__: f for f in (diagnose, pandas_pull, timeline, timeline_raw, render, papermill_bare, breakdown,
                                 scan_log)}

if __name__ == "__main__":
    TASKS[sys.argv[1]](json.loads(sys.argv[2]))
