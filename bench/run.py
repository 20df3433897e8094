"""Measure incidentkit at scale: ``python bench/run.py [--sizes 100k,1M] [--with-10m] [--out bench/results]``.

Builds (once, then reuses) reference-schema databases of each size on a dedicated embedded
PostgreSQL (``<cache>/bench-pg``, fsync off), then measures, side by side and each in its own
child process (time, peak RSS):

* the diagnosis: ``incidentkit.diagnose`` in-process and the whole ``incidentkit diagnose
  --json`` process, against the six figures as hand-written SQL through ``psql`` and against
  the naive pull (``pandas.read_sql`` of the three tables, figures in pandas; not at 10M);
* one user's timeline (``incidentkit.evidence.timeline.user_timeline``, 100 random users: median, p95)
  against hand-written SQL for the same rows through psycopg; also on a copy of the largest
  database holding the audit indexes ``incidentkit.db.queries`` says the timeline wants;
* the full report (the whole ``incidentkit report`` process) against papermill executing the same
  notebooks bare, one after the other (the floor set by kernel start-up);
* ``incidentkit.evidence.logs.scan_logs`` over a large generated application log;
* issue 13 (``--only logs``): on a generated log of each family (``bench/loggen.py``: text, JSON
  lines, PostgreSQL stderr and jsonlog; 1 GB by default), the whole ``incidentkit affected --demo``
  process against ``grep -c`` of the error text, the same gzipped against ``zcat | grep -c``, and
  ``incidentkit timeline --demo USER`` against ``grep -c USER``;
* issue 13 (``--only report``): the whole ``incidentkit report --demo`` process against the
  ``papermill`` command running a one-cell notebook.

It writes a Markdown table to ``OUT/<date>-<sizes>.md`` and ``OUT/latest.md`` and prints that
path. Progress goes to stderr on a terminal only. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import applog  # noqa: E402
import dataset  # noqa: E402
import loggen  # noqa: E402
import measure  # noqa: E402

TASKS = str(BENCH_DIR / "tasks.py")
URL_ENV = "DATABASE_URL"

#: The targets of the scale issue.
TARGET_DIAGNOSIS_RATIO = 1.3
TARGET_KIT_PEAK_MB = 250
TARGET_TIMELINE_MEDIAN_MS = 50
TARGET_TIMELINE_RATIO = 2.0
TARGET_REPORT_RATIO = 1.3
#: The targets of issue 13 (logs at the speed of grep, reports in seconds).
TARGET_LOG_RATIO = 4.0  # incidentkit affected vs grep -c, whole processes
TARGET_LOG_GZ_RATIO = 1.5  # the same gzipped vs zcat | grep -c
TARGET_LOG_TIMELINE_RATIO = 4.0  # incidentkit timeline USER vs grep -c USER
TARGET_LOG_PEAK_MB = 100  # the kit's memory over a log scan, whatever the file's size
TARGET_DEMO_REPORT_RATIO = 4.0  # incidentkit report --demo vs papermill on one trivial notebook
TARGET_REPORT_1M_SECONDS = 15.0
#: "Memory stays flat": the largest size's peak within this factor of the smallest's.
FLAT_MEMORY_FACTOR = 1.25
#: The naive pandas pull is not run above this many users.
PANDAS_MAX_USERS = 1_000_000

PROPOSED_INDEXES = (
    "create index logged_actions_member_user_id_idx on audit.logged_actions ((row_data ->> 'user_id')) "
    "where table_name = 'workspace_members'",
    "create index logged_actions_member_workspace_id_idx on audit.logged_actions ((row_data ->> 'workspace_id')) "
    "where table_name = 'workspace_members'",
    "create index logged_actions_user_privy_did_idx on audit.logged_actions ((row_data ->> 'privy_did')) "
    "where table_name = 'users'",
)


# -- small helpers ----------------------------------------------------------------------------
def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 100k, 1M)")
    value = float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    if value < 1000:
        raise argparse.ArgumentTypeError(f"at least 1k users: {text!r}")
    return int(value)


def label(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % (div // 10) == 0:
            v = n / div
            return f"{v:g}{unit}"
    return str(n)


def parse_mb(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 200M, 1G)")
    return int(float(m.group(1)) * {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()])


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p95(xs):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def fmt_s(seconds) -> str:
    if seconds is None or seconds != seconds:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def fmt_mb(mb) -> str:
    return "–" if mb is None else f"{mb:,.0f} MB"


def fmt_x(ratio) -> str:
    return "–" if ratio is None or ratio != ratio else f"{ratio:.2f}x"


def verdict(ok) -> str:
    return "–" if ok is None else ("**PASS**" if ok else "**FAIL**")


class Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[{time.monotonic() - self.t0:6.0f} s] {message}", file=sys.stderr, flush=True)


# -- databases --------------------------------------------------------------------------------
def db_name(n: int) -> str:
    return f"bench_{label(n).lower().replace('.', '_')}"


def _comment(server, name: str) -> str | None:
    with server.admin() as conn:
        row = conn.execute("select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                           (name,)).fetchone()
    return row[0] if row else None


def _set_comment(conn, name: str, text: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(text)))


def ensure_database(server, n: int, rebuild: bool, say) -> dict:
    """The database of ``n`` users, built now (set-based) or reused; the build's facts."""
    import psycopg

    name = db_name(n)
    if not rebuild and _comment(server, name) == dataset.mark(n):
        say(f"[{label(n)}] reusing database {name}")
        return {"name": name, "url": server.url(name), "built_seconds": None}
    say(f"[{label(n)}] building database {name} ({n:,} users)")
    t0 = time.perf_counter()
    url = server.create_database(name, replace=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(dataset.REFERENCE_SQL.read_text())
        phases = dataset.build(conn, n, progress=lambda m: say(f"[{label(n)}]   {m}"))
        _set_comment(conn, name, dataset.mark(n))  # last: an interrupted build is rebuilt next time
    return {"name": name, "url": url, "built_seconds": time.perf_counter() - t0, "phases": phases}


def ensure_index_variant(server, n: int, rebuild: bool, say) -> dict:
    """A copy of the database of ``n`` users with :data:`PROPOSED_INDEXES` added."""
    import psycopg
    from psycopg import sql

    base, name = db_name(n), f"{db_name(n)}_ix"
    mark = dataset.mark(n) + " + proposed audit indexes"
    if not rebuild and _comment(server, name) == mark:
        say(f"[{label(n)}] reusing database {name}")
        return {"name": name, "url": server.url(name), "built_seconds": None}
    say(f"[{label(n)}] copying {base} to {name} and adding the proposed audit indexes")
    t0 = time.perf_counter()
    with server.admin() as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {} template {} strategy file_copy").format(
            sql.Identifier(name), sql.Identifier(base)))
    url = server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set maintenance_work_mem = '512MB'")
        for stmt in PROPOSED_INDEXES:
            conn.execute(stmt)
        conn.execute("analyze audit.logged_actions")
        _set_comment(conn, name, mark)
    return {"name": name, "url": url, "built_seconds": time.perf_counter() - t0}


def database_facts(url: str) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select (select count(*) from audit.logged_actions),"
            " (select count(*) from audit.logged_actions where action = 'D'),"
            " pg_database_size(current_database()), current_setting('server_version')").fetchone()
    return {"audit_rows": row[0], "audit_deletes": row[1], "bytes": row[2], "server_version": row[3]}


# -- running children -------------------------------------------------------------------------
def child_env(url: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    # As installed: Python's bytecode cache in use (a sandbox may turn it off; pip writes it at install).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if url:
        env[URL_ENV] = url
    return env


#: The statement timeout of the kit's CLI runs in the bench (its default, 30 s, guards production).
BENCH_STATEMENT_SECONDS = 900


def run_task(task: str, args: dict, *, tree: bool = False, env=None, timeout: float = 3600) -> measure.Measured:
    """``python bench/tasks.py TASK ARGS``, measured; ``tree``: sample the RSS of its descendants too."""
    cmd = [sys.executable, TASKS, task, json.dumps(args)]
    return measure.run(cmd, env=env or child_env(), tree=tree, timeout=timeout)


def incidentkit_cli() -> list[str]:
    """The kit's console script beside this Python (not a version manager's shim on PATH, which
    would add its own start-up to every run), else ``python -m incidentkit``."""
    exe = Path(sys.executable).with_name("incidentkit")
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "incidentkit"]


def psql_cmd(server, dbname: str, sql: str) -> list[str]:
    from incidentkit.db.embedded import find_bin_dir

    return [str(find_bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-F", ",", "-h", "127.0.0.1", "-p", str(server.port),
            "-U", "postgres", "-d", dbname, "-c", sql]


def figures_from_psql(stdout: str) -> dict:
    from incidentkit.analysis.diagnosis import FIGURES

    values = [int(v) for v in stdout.strip().split(",")]
    return dict(zip(FIGURES, values))


# -- the measurements -------------------------------------------------------------------------
def measure_diagnosis(server, n: int, db: dict, repeat: int, say) -> dict:
    url, name = db["url"], db["name"]
    expected = dataset.expected_figures(n)
    out: dict = {"psql": [], "kit": [], "cli": [], "pandas": None, "mismatches": []}

    def check(what, figures):
        if figures != expected:
            out["mismatches"].append(f"{what}: {figures} (expected {expected})")

    say(f"[{label(n)}] diagnosis: warm-up")
    # The warm-up psql runs with the tree sampler, to see that it starts no process of its own; the timed runs
    # read only psql's VmHWM (scanning /proc every few ms would take CPU from the query being timed).
    out["psql_processes"] = measure.run(psql_cmd(server, name, dataset.figures_sql()), tree=True,
                                        interval=0.005).processes
    run_task("diagnose", {"url": url})
    for r in range(1, repeat + 1):
        say(f"[{label(n)}] diagnosis: round {r}/{repeat}: psql, kit in-process, kit CLI")
        m = measure.run(psql_cmd(server, name, dataset.figures_sql()))
        if not m.ok:
            raise SystemExit(f"psql failed: {m.error()}")
        check("psql", figures_from_psql(m.stdout))
        out["psql"].append(m)
        m = run_task("diagnose", {"url": url})
        if not m.ok:
            raise SystemExit(f"the kit's diagnosis failed: {m.error()}")
        check("kit", m.result["figures"])
        out["kit"].append(m)
        # The default statement timeout (30 s) guards production; at 10M the figures may take longer.
        m = measure.run(incidentkit_cli() + ["diagnose", "--json", "--statement-timeout", str(BENCH_STATEMENT_SECONDS)],
                        env=child_env(url))
        if not m.ok:
            raise SystemExit(f"incidentkit diagnose --json failed: {m.error()}")
        data = json.loads(m.stdout)
        check("cli", {k: data[k] for k in expected})
        out["cli"].append(m)
    if n <= PANDAS_MAX_USERS:
        say(f"[{label(n)}] diagnosis: naive pandas pull")
        m = run_task("pandas_pull", {"url": url})
        if not m.ok:
            raise SystemExit(f"the pandas pull failed: {m.error()}")
        check("pandas", m.result["figures"])
        out["pandas"] = m
    return out


def timeline_users(n: int, count: int, seed: int) -> tuple[list[str], str]:
    rng = random.Random(seed)
    picks = rng.sample(range(1, n + 1), count + 1)
    return [dataset.user_id(i) for i in picks[1:]], dataset.user_id(picks[0])


def _merge(parts: list[measure.Measured]) -> measure.Measured:
    """Child runs of one side as one: their per-user times joined, the largest peak."""
    first = parts[0]
    result = dict(first.result)
    result["times"] = [t for p in parts for t in p.result["times"]]
    return measure.Measured(seconds=sum(p.seconds for p in parts), own_mb=max(p.own_mb for p in parts),
                            tree_mb=max(p.tree_mb for p in parts), returncode=0, stdout="", stderr="",
                            result=result)


def measure_timeline(url: str, n: int, users: list[str], warmup: str, budget: float, say, tag: str) -> dict:
    """The kit and the raw SQL over the same users, in two alternating halves (kit, raw, kit, raw), so that
    a disturbance from outside (another process on the machine) falls on both sides alike."""
    halves = [users[: len(users) // 2], users[len(users) // 2:]] if len(users) >= 2 else [users]
    out: dict[str, list[measure.Measured]] = {"kit": [], "raw": []}
    for i, half in enumerate(halves, 1):
        args = {"url": url, "users": half, "warmup": warmup, "budget": budget / len(halves),
                "min_users": min(10, len(half))}
        for side, task in (("kit", "timeline"), ("raw", "timeline_raw")):
            say(f"[{label(n)}] timeline{tag}: {'kit' if side == 'kit' else 'raw SQL'}, {len(half)} users "
                f"({i}/{len(halves)})")
            m = run_task(task, args)
            if not m.ok:
                raise SystemExit(f"the {side} timeline failed: {m.error()}")
            out[side].append(m)
    return {"kit": _merge(out["kit"]), "raw": _merge(out["raw"])}


def measure_breakdown(url: str, users: list[str], warmup: str) -> dict | None:
    m = run_task("breakdown", {"url": url, "users": users[:5], "warmup": warmup})
    return m.result if m.ok else None


def measure_report(url: str, n: int, log_path: Path | None, max_users: int, race_lab: bool, repeat: int,
                   tmp: str, say) -> dict:
    """The whole ``incidentkit report`` process against the database, then the floor: papermill
    executing the notebooks that report ran, bare (the shipped notebooks, the same parameters, one
    after the other; ``tasks.papermill_bare``)."""
    runs_file = Path(tmp) / f"runs-{label(n)}.json"
    args = {"runs_file": str(runs_file), "tmp": tmp}
    cmd = incidentkit_cli() + ["report", "--database-url-env", URL_ENV, "--max-users", str(max_users)]
    cmd += (["--logs", str(log_path)] if log_path else []) + ([] if race_lab else ["--no-race-lab"])
    out: dict = {"kit": [], "bare": [], "error": None, "notebooks": [], "kit_cmd": cmd + ["--out", "TMP"]}
    for r in range(1, repeat + 1):
        say(f"[{label(n)}] report: incidentkit report ({r}/{repeat})")
        dest = Path(tempfile.mkdtemp(prefix="ik-bench-report-", dir=tmp))
        kit = measure.run(cmd + ["--out", str(dest)], env=child_env(url), tree=True)
        if not kit.ok:
            out["error"] = f"incidentkit report failed: {kit.error()}"
            return out
        out["kit"].append(kit)
        runs = _executed_runs(dest)
        out["notebooks"] = [run["name"] for run in runs]
        runs_file.write_text(json.dumps(runs, indent=1))
        say(f"[{label(n)}] report: bare papermill, {len(runs)} notebooks ({r}/{repeat})")
        bare = run_task("papermill_bare", args, tree=True, env=child_env(url))
        if not bare.ok:
            out["error"] = f"bare papermill failed: {bare.error()}"
            return out
        out["bare"].append(bare)
    return out


def _executed_runs(reports: Path) -> list[dict]:
    """The notebooks a report run executed (its one dated folder in ``reports``): each one's shipped
    notebook and the parameters papermill recorded in it."""
    from incidentkit.report.render import notebook_path

    [folder] = [p for p in reports.iterdir() if p.is_dir() and p.name[:4].isdigit()]
    runs = []
    for nb in sorted(folder.glob("*.ipynb")):
        meta = json.loads(nb.read_text(encoding="utf-8"))["metadata"]["papermill"]
        shipped = notebook_path(Path(meta["input_path"]).name)  # the run executed a copy of it
        runs.append({"notebook": str(shipped), "name": nb.stem, "parameters": meta.get("parameters") or {}})
    return runs


def _warm(path: Path) -> None:
    """Read ``path`` once, so that every run after finds it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def _cli_result(m: measure.Measured) -> dict | None:
    try:
        return json.loads(m.stdout)
    except ValueError:
        return None


#: (key, what the kit runs, what grep runs, target ratio, what is compared).
LOG_COMPARISONS = (
    ("affected", "`incidentkit affected --demo --logs FILE --json`", "`grep -c '{needle}' FILE`",
     TARGET_LOG_RATIO, "every failed login with its verdict"),
    ("affected_gz", "`incidentkit affected --demo --logs FILE.gz --json`", "`zcat FILE.gz | grep -c '{needle}'`",
     TARGET_LOG_GZ_RATIO, "the same, gzipped"),
    ("timeline", "`incidentkit timeline --demo USER --logs FILE`", "`grep -c USER FILE`",
     TARGET_LOG_TIMELINE_RATIO, "one user's timeline"),
)


def _log_commands(key: str, path: Path, gz: Path, user: str) -> tuple[list[str], list[str]]:
    import shlex

    needle = loggen.NEEDLE
    if key == "affected":
        return incidentkit_cli() + ["affected", "--demo", "--logs", str(path), "--json"], ["grep", "-c", needle, str(path)]
    if key == "affected_gz":
        return (incidentkit_cli() + ["affected", "--demo", "--logs", str(gz), "--json"],
                ["sh", "-c", f"zcat {shlex.quote(str(gz))} | grep -c {shlex.quote(needle)}"])
    return incidentkit_cli() + ["timeline", "--demo", user, "--logs", str(path)], ["grep", "-c", user, str(path)]


def _check_log_run(key: str, kit: measure.Measured, grep: measure.Measured, facts: dict) -> list[str]:
    """What differs from the generated file's facts (nothing when both sides found what is there)."""
    bad = []
    if not kit.ok:
        bad.append(f"kit exit {kit.returncode}: {kit.error()}")
    want_grep = facts["user_lines"] if key == "timeline" else facts["error_lines"]
    if grep.stdout.strip() != str(want_grep):
        bad.append(f"grep counted {grep.stdout.strip() or grep.error()} (expected {want_grep})")
    if kit.ok and key != "timeline":
        data = _cli_result(kit)
        found = len(data["failures"]) if data else None
        if found != facts["failures"]:
            bad.append(f"the kit found {found} failures (expected {facts['failures']})")
        elif not any(f.get("user_id") == facts["incident_user"] and f.get("verdict") == "concurrent_deletion"
                     for f in data["failures"]):
            bad.append("the kit did not give the incident user the verdict concurrent_deletion")
    if kit.ok and key == "timeline" and "concurrent_deletion" not in kit.stdout:
        bad.append("the timeline does not show the incident's verdict concurrent_deletion")
    return bad


def measure_log_family(data_dir: Path, family: str, size: int, repeat: int, timeout: float, say) -> dict:
    """The three comparisons of issue 13 on one generated file of ``family``: kit and grep alternately."""
    path, facts = loggen.ensure(data_dir, family, size, say)
    gz = loggen.ensure_gz(path, say)
    say(f"logs: {family}: warming the page cache")
    _warm(path)
    _warm(gz)
    out: dict = {"family": family, "path": path, "gz": gz, "facts": facts, "gz_bytes": gz.stat().st_size,
                 "runs": {}, "problems": []}
    for key, *_ in LOG_COMPARISONS:
        kit_cmd, grep_cmd = _log_commands(key, path, gz, facts["incident_user"])
        kits, greps, timed_out = [], [], False
        for r in range(1, repeat + 1):
            say(f"logs: {family}: {key} ({r}/{repeat}): kit, then grep")
            kit = measure.run(kit_cmd, env=child_env(), timeout=timeout)
            grep = measure.run(grep_cmd)
            kits.append(kit)
            greps.append(grep)
            if kit.seconds >= timeout:  # killed: the other runs would be killed too
                timed_out = True
                out["problems"].append(f"{key}: the kit was stopped after {fmt_s(timeout)} (--log-timeout)")
                break
            for problem in _check_log_run(key, kit, grep, facts):
                if f"{key}: {problem}" not in out["problems"]:
                    out["problems"].append(f"{key}: {problem}")
        out["runs"][key] = {"kit": kits, "grep": greps, "kit_cmd": kit_cmd, "grep_cmd": grep_cmd,
                            "timed_out": timed_out}
    return out


def measure_logs(data_dir: Path, size: int, families: list[str], repeat: int, say, *,
                 family_sizes: dict | None = None, timeout: float = 3600) -> dict:
    """Every family's comparisons, then ``scan_logs`` in-process over the text family at a tenth and all of ``size``."""
    from incidentkit.db import embedded

    # --demo starts the kit's embedded server on demand (and leaves it running, as the CLI does): start it
    # and load the demo before any clock runs. It is not stopped after: other sessions may be using it.
    embedded.default_server().start()
    tiny, _ = loggen.ensure(data_dir, "text", 1 << 20, say)
    warm = measure.run(incidentkit_cli() + ["affected", "--demo", "--logs", str(tiny), "--json"], env=child_env())
    if not warm.ok:
        raise SystemExit(f"incidentkit affected --demo failed: {warm.error()}")
    out: dict = {"size": size, "repeat": repeat, "families": [], "scan": [], "timeout": timeout}
    for family in families:
        fsize = (family_sizes or {}).get(family, size)
        out["families"].append(measure_log_family(data_dir, family, fsize, repeat, timeout, say))
    for s in (size // 10, size):
        path, facts = loggen.ensure(data_dir, "text", s, say)
        say(f"logs: scan_logs over {s >> 20} MB")
        m = run_task("scan_log", {"path": str(path)})
        if not m.ok:
            raise SystemExit(f"scan_logs failed: {m.error()}")
        out["scan"].append({"path": path, "m": m, "facts": facts})
    return out


TRIVIAL_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "trivial", "metadata": {}, "outputs": [],
               "source": "1+1"}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def measure_demo_report(tmp: str, repeat: int, say) -> dict:
    """``incidentkit report --demo --out TMP`` (whole process) vs the ``papermill`` command on a one-cell notebook."""
    from incidentkit.db import embedded

    embedded.default_server().start()  # left running after, as the CLI leaves it
    work = Path(tempfile.mkdtemp(prefix="demo-report-", dir=tmp))
    nb = work / "trivial.ipynb"
    nb.write_text(json.dumps(TRIVIAL_NOTEBOOK))
    papermill = shutil.which("papermill")
    pm_cmd = ([papermill] if papermill else [sys.executable, "-m", "papermill"]) + [
        str(nb), str(work / "trivial-out.ipynb"), "-k", "python3", "--no-progress-bar"]
    out: dict = {"kit": [], "papermill": [], "error": None, "pm_cmd": pm_cmd,
                 "kit_cmd": incidentkit_cli() + ["report", "--demo", "--out", "TMP"]}
    try:
        say("report: warm-up (papermill on the trivial notebook)")
        measure.run(pm_cmd)
        for r in range(1, repeat + 1):
            say(f"report: incidentkit report --demo ({r}/{repeat})")
            dest = work / f"report-{r}"
            kit = measure.run(incidentkit_cli() + ["report", "--demo", "--out", str(dest)], env=child_env(),
                              tree=True)
            if not kit.ok:
                out["error"] = f"incidentkit report --demo failed: {kit.error()}"
                return out
            out["kit"].append(kit)
            say(f"report: papermill, one trivial notebook ({r}/{repeat})")
            pm = measure.run(pm_cmd, tree=True)
            if not pm.ok:
                out["error"] = f"papermill failed: {pm.error()}"
                return out
            out["papermill"].append(pm)
    finally:
        if not out["error"]:
            shutil.rmtree(work, ignore_errors=True)
    return out


# -- the Markdown -----------------------------------------------------------------------------
def versions() -> dict:
    from importlib.metadata import version

    import incidentkit

    out = {"Python": platform.python_version(), "incidentkit": incidentkit.__version__}
    for pkg in ("pandas", "SQLAlchemy", "psycopg", "papermill", "nbconvert", "pgserver"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = "?"
    return out


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return {"cores": os.cpu_count(), "usable cores": len(os.sched_getaffinity(0)), "cpu": cpu, "memory": mem,
            "os": f"{platform.system()} {platform.release()}"}


def _med(ms: list[measure.Measured]) -> float:
    return median([m.result["seconds"] if m.result and "seconds" in m.result else m.seconds for m in ms])


def _wall(ms: list[measure.Measured]) -> float:
    return median([m.seconds for m in ms])


def _peak(ms) -> float | None:
    ms = [m for m in (ms if isinstance(ms, list) else [ms]) if m is not None]
    return max(m.peak_mb for m in ms) if ms else None


def render_markdown(ctx: dict) -> str:
    sizes, res = ctx["sizes"], ctx["results"]
    L: list[str] = []
    add = L.append
    what = (f"{'/'.join(label(n) for n in sizes)} users" if sizes
            else " and ".join(x for x in ("logs" if ctx.get("logs") else "", "report" if ctx.get("demo_report") else "")
                              if x))
    add(f"# incidentkit at scale: {what} — {ctx['date']}")
    add("")
    add(f"Command: `{ctx['command']}` (took {ctx['elapsed'] / 60:.1f} min). How to read this: `bench/README.md`.")
    add("")
    mach, ver = ctx["machine"], ctx["versions"]
    add("| machine | |")
    add("|---|---|")
    add(f"| cores | {mach['cores']} ({mach['usable cores']} usable) — {mach['cpu']} |")
    add(f"| memory | {mach['memory']} |")
    add(f"| OS | {mach['os']} |")
    if ctx["server_version"]:
        add(f"| PostgreSQL | {ctx['server_version']} (embedded, pgserver wheel; fsync off, shared_buffers 128MB) |")
    else:
        add("| PostgreSQL | the kit's embedded demo server (pgserver wheel) |")
    add("| versions | " + ", ".join(f"{k} {v}" for k, v in ver.items()) + " |")
    add("")

    # Datasets.
    if sizes:
        add("## The databases")
        add("")
        add("Reference schema, built set-based inside PostgreSQL (`bench/dataset.py`), `VACUUM ANALYZE`d.")
        add("")
        add("| users | workspaces | memberships | audit rows (D) | invalid primary / orphaned memberships | size | build |")
        add("|---|---|---|---|---|---|---|")
        for n in sizes:
            r = res[n]
            f, facts = dataset.expected_figures(n), r["facts"]
            built = "reused" if r["db"]["built_seconds"] is None else fmt_s(r["db"]["built_seconds"])
            add(f"| {n:,} | {f['total_workspaces']:,} | {f['total_memberships']:,} | {facts['audit_rows']:,} "
                f"({facts['audit_deletes']:,}) | {f['users_with_invalid_primary_workspace']:,} / "
                f"{f['orphaned_memberships']:,} | {facts['bytes'] / 2**30:.2f} GiB | {built} |")
        add("")

    # Diagnosis.
    if any("diagnosis" in res[n] for n in sizes):
        add("## Diagnosis: the six figures")
        add("")
        add(f"Median of {ctx['repeat']} runs (each in a fresh process); the naive pull runs once. "
            "Ratios are to the raw SQL through psql at the same size. Peak RSS: the measured process "
            "(PostgreSQL's own backends are never counted).")
        add("")
        add("| users | measured | time | vs raw SQL | peak RSS | what the time covers |")
        add("|---|---|---|---|---|---|")
        for n in sizes:
            d = res[n].get("diagnosis")
            if not d:
                continue
            base = _wall(d["psql"])
            rows = [
                ("raw SQL through `psql` (six figures, one statement)", _wall(d["psql"]), _peak(d["psql"]),
                 "the psql process: start, connect, query, print"
                 + (" (it starts no child process)" if d.get("psql_processes") == 1 else "")),
                ("kit: `diagnose(Database(url))` in-process", _med(d["kit"]), _peak(d["kit"]),
                 "connect, schema check, figures, samples, foreign keys (imports excluded)"),
                ("kit: `incidentkit diagnose --json` process", _wall(d["cli"]), _peak(d["cli"]),
                 "the whole process: Python start-up, imports, the diagnosis, JSON"),
            ]
            for what, t, peak, note in rows:
                add(f"| {label(n)} | {what} | {fmt_s(t)} | {fmt_x(t / base)} | {fmt_mb(peak)} | {note} |")
            if d["pandas"] is not None:
                p = d["pandas"]
                add(f"| {label(n)} | naive: `pandas.read_sql` of the 3 tables, figures in pandas | "
                    f"{fmt_s(p.result['seconds'])} | {fmt_x(p.result['seconds'] / base)} | {fmt_mb(p.peak_mb)} | "
                    f"read_sql {fmt_s(p.result['read_seconds'])}, then pandas (imports excluded) |")
            else:
                add(f"| {label(n)} | naive pandas pull | skipped | – | – | not run above "
                    f"{label(PANDAS_MAX_USERS)} users |")
            if d["mismatches"]:
                add(f"| {label(n)} | **figures differ** | | | | {'; '.join(d['mismatches'])} |")
        add("")

    # Timeline.
    if any("timeline" in res[n] for n in sizes):
        add("## One user's timeline")
        add("")
        add(f"Per user: `user_timeline(db, user_id)` (one `Database`, a connection per call as the kit opens "
            f"them) vs the hand-written SQL for the same rows (`bench/tasks.py` `RAW_TIMELINE`: a psycopg "
            f"connection per user, one transaction). {ctx['timeline_users']} random existing users, in two halves "
            f"run alternately (kit, raw, kit, raw), each child process making one warm-up call that is not counted; "
            f"a side stops after {ctx['timeline_budget']:.0f} s (n says how many users ran).")
        add("")
        add("| users | database | measured | median | p95 | n | median vs raw SQL | peak RSS |")
        add("|---|---|---|---|---|---|---|---|")
        for n in sizes:
            for key, dbl in (("timeline", "reference schema"), ("timeline_ix", "+ proposed audit indexes")):
                t = res[n].get(key)
                if not t:
                    continue
                kt, rt = t["kit"].result["times"], t["raw"].result["times"]
                add(f"| {label(n)} | {dbl} | kit `user_timeline` | {fmt_s(median(kt))} | {fmt_s(p95(kt))} | "
                    f"{len(kt)} | {fmt_x(median(kt) / median(rt))} | {fmt_mb(t['kit'].peak_mb)} |")
                add(f"| {label(n)} | {dbl} | raw SQL (psycopg) | {fmt_s(median(rt))} | {fmt_s(p95(rt))} | "
                    f"{len(rt)} | 1.00x | {fmt_mb(t['raw'].peak_mb)} |")
        conn_ms = [res[n]["timeline"]["raw"].result.get("connect_median") for n in sizes if res[n].get("timeline")]
        if conn_ms:
            add("")
            add(f"Opening a connection alone takes {fmt_s(median(conn_ms))} (median); both sides pay it once per user.")
        add("")
        bd = [(n, res[n].get("breakdown")) for n in sizes if res[n].get("breakdown")]
        if bd:
            n, b = bd[-1]
            add(f"### Where the time goes ({label(n)} users, reference schema)")
            add("")
            add("Per statement of the kit (`incidentkit.db.queries` function), timed around `Reader.all`: the "
                f"diagnosis once ({fmt_s(b['diagnosis_total'])} in all) and the mean of 5 timelines "
                f"({fmt_s(b['timeline_total'])} each).")
            add("")
            add("| what | statement | time |")
            add("|---|---|---|")
            for k, v in sorted(b["diagnosis"].items(), key=lambda kv: -kv[1]):
                add(f"| diagnosis | `{k}` | {fmt_s(v)} |")
            for k, v in sorted(b["timeline"].items(), key=lambda kv: -kv[1]):
                add(f"| timeline | `{k}` | {fmt_s(v)} |")
            add("")

    # Report.
    if any("report" in res[n] for n in sizes):
        add("## Full report")
        add("")
        add("`incidentkit report --database-url-env DATABASE_URL --logs LOG --max-users N --out TMP`, the whole "
            "process (plan, the notebooks on kernels started ahead of them, nbconvert to HTML and Markdown, entry "
            "page) vs `papermill.execute_notebook` of the same notebooks with the same parameters, one after the "
            f"other, and nothing else. The report log names {ctx['report_users']} incident users of each "
            "database. Peak RSS: the sum over the process and its kernels, sampled every 50 ms.")
        add("")
        add("| users | notebooks | `incidentkit report` | bare papermill | ratio | kit peak RSS | papermill peak RSS |")
        add("|---|---|---|---|---|---|---|")
        for n in sizes:
            rp = res[n].get("report")
            if not rp:
                continue
            if rp["error"]:
                add(f"| {label(n)} | – | {rp['error']} | | | | |")
                continue
            k, b = _wall(rp["kit"]), _wall(rp["bare"])
            add(f"| {label(n)} | {len(rp['notebooks'])} | {fmt_s(k)} | {fmt_s(b)} | {fmt_x(k / b)} | "
                f"{fmt_mb(_peak(rp['kit']))} | {fmt_mb(_peak(rp['bare']))} |")
        add("")

    # Logs.
    lg = ctx.get("logs")
    if lg and lg["families"]:
        add("## Logs at the speed of grep")
        add("")
        add("Each family's generated log (`bench/loggen.py`; its size in the file column: a day of records, a "
            "foreign-key failure every 5,000 records and the demo incident among them), read once before the "
            "clocks so the page cache is warm. Whole processes, kit and grep run alternately, median of "
            f"{lg['repeat']}; the kit runs against the demo database (`--demo`, its server already started), its "
            "JSON read from a pipe. Peak RSS: the kit process's `VmHWM`. Every run is checked: grep's count and "
            "the kit's failures must be the file's known numbers, the incident user's verdict `concurrent_deletion`.")
        add("")
        add("| family | file | failures | measured | kit | grep | ratio | target | result | kit peak RSS |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for fam in lg["families"]:
            f = fam["facts"]
            for key, kit_what, grep_what, target, what in LOG_COMPARISONS:
                run = fam["runs"][key]
                k, g = _wall(run["kit"]), _wall(run["grep"])
                size = fam["gz_bytes"] if key == "affected_gz" else f["bytes"]
                file = f"{size / 2**20:,.0f} MB" + (" gzip" if key == "affected_gz" else "")
                ok = all(m.ok for m in run["kit"]) and k / g <= target and not run.get("timed_out")
                stop = "> " if run.get("timed_out") else ""
                add(f"| {fam['family']} | {file} | {f['failures']:,} | {what} | {stop}{fmt_s(k)} | {fmt_s(g)} | "
                    f"{stop}{fmt_x(k / g)} | ≤ {target:g}x | {'met' if ok else '**NOT met**'} | "
                    f"{fmt_mb(_peak(run['kit']))} |")
        add("")
        problems = [f"{fam['family']}: {p}" for fam in lg["families"] for p in fam["problems"]]
        add("Checks: " + ("every run found what the files hold." if not problems else
                          "**not every run completed with the file's numbers**: " + "; ".join(problems)))
        add("")
        add("Commands (FILE, USER: below):")
        add("")
        for key, kit_what, grep_what, *_ in LOG_COMPARISONS:
            add(f"* {kit_what.replace('FILE', 'FILE')} vs {grep_what.format(needle=loggen.NEEDLE)}")
        add("")
        add("| family | FILE | lines | lines naming USER |")
        add("|---|---|---|---|")
        for fam in lg["families"]:
            f = fam["facts"]
            add(f"| {fam['family']} | `{fam['path']}` | {f['lines']:,} | {f['user_lines']} |")
        add("")
        add(f"USER is the demo's incident user, `{loggen.INCIDENT_USER}`. Reproduce: `{ctx['command'].strip()}` "
            "(the files are written once into the cache and reused). A kit run still going after "
            f"{fmt_s(lg['timeout'])} is stopped (`--log-timeout`) and shown with `>`, its other runs skipped.")
        add("")
    if lg and lg["scan"]:
        add("## Log parsing")
        add("")
        add("`scan_logs` over a generated application log in the incident's text format (`bench/loggen.py` "
            "family `text`: a failed login every 5,000 records). Peak RSS of the process; flat across sizes "
            "means the memory is bounded.")
        add("")
        add("| log size | time | throughput | failures found | peak RSS |")
        add("|---|---|---|---|---|")
        for item in lg["scan"]:
            m = item["m"]
            size = m.result["bytes"]
            add(f"| {size / 2**20:,.0f} MB | {fmt_s(m.result['seconds'])} | "
                f"{size / 2**20 / m.result['seconds']:.1f} MB/s | {m.result['failures']:,} "
                f"(of {item['facts']['failures']:,}) | {fmt_mb(m.peak_mb)} |")
        add("")

    # The demo report against papermill's floor.
    dr = ctx.get("demo_report")
    if dr:
        add("## The demo report in seconds")
        add("")
        add("`" + " ".join(Path(c).name if i == 0 else c for i, c in enumerate(dr["kit_cmd"])) + "` (whole "
            "process; the demo server already started) vs `papermill trivial.ipynb out.ipynb -k python3` on a "
            "notebook of one code cell, `1+1` (the floor: one kernel's start-up). Alternately, median of "
            f"{ctx['report_repeat']}, after one warm-up papermill run. Peak RSS: the process and its kernels.")
        add("")
        add("| measured | time | ratio | target | result | peak RSS |")
        add("|---|---|---|---|---|---|")
        if dr["error"]:
            add(f"| {dr['error']} | – | – | ≤ {TARGET_DEMO_REPORT_RATIO:g}x | **NOT met** | – |")
        else:
            k, p = _wall(dr["kit"]), _wall(dr["papermill"])
            ok = k / p <= TARGET_DEMO_REPORT_RATIO
            add(f"| `incidentkit report --demo --out TMP` | {fmt_s(k)} | {fmt_x(k / p)} | ≤ {TARGET_DEMO_REPORT_RATIO:g}x "
                f"| {'met' if ok else '**NOT met**'} | {fmt_mb(_peak(dr['kit']))} |")
            add(f"| papermill, one trivial notebook | {fmt_s(p)} | 1.00x | | | {fmt_mb(_peak(dr['papermill']))} |")
        add("")
        add("Reproduce: `python bench/run.py --only report`.")
        add("")

    # Targets.
    add("## Targets")
    add("")
    add("| target | measured | result | largest costs |")
    add("|---|---|---|---|")
    for target, measured, ok, why in targets(ctx):
        cells = (c.replace("|", "\\|") for c in (target, measured, verdict(ok), why))
        add("| " + " | ".join(cells) + " |")
    add("")
    return "\n".join(L) + "\n"


def _top(costs: dict | None, k: int) -> str:
    if not costs:
        return ""
    items = sorted(costs.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"`{name}` {fmt_s(v)}" for name, v in items)


def targets(ctx: dict) -> list[tuple[str, str, bool | None, str]]:
    """(target, measured, passed or None, the largest costs behind it) for each target of the issues."""
    sizes, res = ctx["sizes"], ctx["results"]
    rows = _db_targets(ctx) if sizes else []
    lg = ctx.get("logs")
    if lg and lg["families"]:
        for key, kit_what, grep_what, target, what in LOG_COMPARISONS:
            parts, ok = [], True
            for fam in lg["families"]:
                run = fam["runs"][key]
                ratio = _wall(run["kit"]) / _wall(run["grep"])
                ok = ok and ratio <= target and all(m.ok for m in run["kit"]) and not run.get("timed_out")
                stop = "> " if run.get("timed_out") else ""
                parts.append(f"{fam['family']} {stop}{fmt_x(ratio)} ({fam['facts']['bytes'] / 2**20:,.0f} MB)")
            rows.append((f"{kit_what} ≤ {target:g}x {grep_what.format(needle='…')}", ", ".join(parts), ok, ""))
        peaks = [(fam["family"], _peak(run["kit"])) for fam in lg["families"] for run in fam["runs"].values()]
        worst = max(peaks, key=lambda p: p[1])
        rows.append((f"the kit's peak memory over a log scan ≤ {TARGET_LOG_PEAK_MB} MB",
                     f"at most {fmt_mb(worst[1])} ({worst[0]})", worst[1] <= TARGET_LOG_PEAK_MB, ""))
    if lg and len(lg["scan"]) > 1:
        a, b = lg["scan"][0]["m"], lg["scan"][-1]["m"]
        rows.append((f"log parsing memory bounded ({a.result['bytes'] >> 20} MB → {b.result['bytes'] >> 20} MB; "
                     f"within {FLAT_MEMORY_FACTOR}x)", f"{fmt_mb(a.peak_mb)} → {fmt_mb(b.peak_mb)}",
                     b.peak_mb <= a.peak_mb * FLAT_MEMORY_FACTOR, ""))
    dr = ctx.get("demo_report")
    if dr:
        if dr["error"]:
            rows.append((f"`incidentkit report --demo` ≤ {TARGET_DEMO_REPORT_RATIO:g}x papermill on one trivial "
                         "notebook", "failed", False, dr["error"]))
        else:
            ratio = _wall(dr["kit"]) / _wall(dr["papermill"])
            rows.append((f"`incidentkit report --demo` ≤ {TARGET_DEMO_REPORT_RATIO:g}x papermill on one trivial "
                         "notebook", f"{fmt_x(ratio)} ({fmt_s(_wall(dr['kit']))} vs {fmt_s(_wall(dr['papermill']))})",
                         ratio <= TARGET_DEMO_REPORT_RATIO, ""))
    rep_1m = res.get(1_000_000, {}).get("report") if sizes else None
    if rep_1m and not rep_1m["error"]:
        k = _wall(rep_1m["kit"])
        rows.append((f"the 1M-user report ≤ {TARGET_REPORT_1M_SECONDS:g} s", fmt_s(k), k <= TARGET_REPORT_1M_SECONDS,
                     ""))
    return rows


def _db_targets(ctx: dict) -> list[tuple[str, str, bool | None, str]]:
    sizes, res = ctx["sizes"], ctx["results"]
    rows: list[tuple[str, str, bool | None, str]] = []
    at = 1_000_000 if 1_000_000 in sizes else max(sizes)
    where = f"at {label(at)}" + ("" if at == 1_000_000 else " (1M not measured)")
    bd = res[at].get("breakdown") or {}
    d = res[at].get("diagnosis")
    if d:
        ratio = _med(d["kit"]) / _wall(d["psql"])
        rows.append((f"diagnosis ≤ {TARGET_DIAGNOSIS_RATIO}x raw SQL at 1M users", f"{fmt_x(ratio)} {where}",
                     ratio <= TARGET_DIAGNOSIS_RATIO,
                     f"raw SQL {fmt_s(_wall(d['psql']))}; kit: {_top(bd.get('diagnosis'), 3)}"))
        peak = max(_peak(d["kit"]), _peak(d["cli"]))
        rows.append((f"the kit's peak memory ≤ {TARGET_KIT_PEAK_MB} MB (diagnosis, in-process and CLI)",
                     f"{fmt_mb(_peak(d['kit']))} in-process, {fmt_mb(_peak(d['cli']))} CLI {where}",
                     peak <= TARGET_KIT_PEAK_MB, ""))
    t = res[at].get("timeline")
    if t:
        kt, rt = t["kit"].result["times"], t["raw"].result["times"]
        rows.append((f"one user's timeline ≤ {TARGET_TIMELINE_MEDIAN_MS} ms median at 1M users",
                     f"{fmt_s(median(kt))} {where}", median(kt) * 1000 <= TARGET_TIMELINE_MEDIAN_MS,
                     f"kit: {_top(bd.get('timeline'), 3)}"))
        ratio = median(kt) / median(rt)
        rows.append((f"one user's timeline ≤ {TARGET_TIMELINE_RATIO}x the raw SQL", f"{fmt_x(ratio)} {where}",
                     ratio <= TARGET_TIMELINE_RATIO, f"raw SQL median {fmt_s(median(rt))}"))
        tx = res[at].get("timeline_ix")
        if tx:
            kx, rx = tx["kit"].result["times"], tx["raw"].result["times"]
            rows.append(("(not a target) the timeline with the proposed audit indexes",
                         f"median {fmt_s(median(kx))}, {fmt_x(median(kx) / median(rx))} raw SQL {where}", None,
                         f"raw SQL median {fmt_s(median(rx))}"))
    reps = [(n, res[n]["report"]) for n in sizes if res[n].get("report")]
    if reps:
        parts, ok = [], True
        for n, rp in reps:
            if rp["error"]:
                parts.append(f"{label(n)}: failed")
                ok = False
                continue
            ratio = _wall(rp["kit"]) / _wall(rp["bare"])
            parts.append(f"{fmt_x(ratio)} at {label(n)}")
            ok = ok and ratio <= TARGET_REPORT_RATIO
        rows.append((f"full report rendering ≤ {TARGET_REPORT_RATIO}x the bare papermill floor", ", ".join(parts), ok,
                     ""))
    # Scaling.
    lo, hi = min(sizes), max(sizes)
    span = f"{label(lo)} → {label(hi)}" + ("" if hi >= 10_000_000 else " (10M not measured)")
    if hi > lo:
        growth = hi / lo
        series = []
        if res[lo].get("diagnosis") and res[hi].get("diagnosis"):
            a, b = res[lo]["diagnosis"], res[hi]["diagnosis"]
            series.append(("diagnosis in-process", _med(b["kit"]) / _med(a["kit"]),
                           [("diagnosis in-process", _peak(a["kit"]), _peak(b["kit"])),
                            ("diagnosis CLI", _peak(a["cli"]), _peak(b["cli"]))]))
        if res[lo].get("timeline") and res[hi].get("timeline"):
            a, b = res[lo]["timeline"]["kit"], res[hi]["timeline"]["kit"]
            series.append(("timeline median", median(b.result["times"]) / median(a.result["times"]),
                           [("timeline", a.peak_mb, b.peak_mb)]))
        ra, rb = res[lo].get("report"), res[hi].get("report")
        if ra and rb and not (ra["error"] or rb["error"]):
            series.append(("report", _wall(rb["kit"]) / _wall(ra["kit"]),
                           [("report (tree)", _peak(ra["kit"]), _peak(rb["kit"]))]))
        if series:
            text = ", ".join(f"{w} {g:.1f}x" for w, g, _ in series)
            rows.append((f"time grows no faster than the row count ({span}: rows x{growth:g})", text,
                         all(g <= growth for _, g, _ in series), ""))
            mem = [(w, a, b) for _, _, ms in series for (w, a, b) in ms]
            text = ", ".join(f"{w} {fmt_mb(a)} → {fmt_mb(b)}" for w, a, b in mem)
            rows.append((f"memory stays flat ({span}; within {FLAT_MEMORY_FACTOR}x)", text,
                         all(b <= a * FLAT_MEMORY_FACTOR for _, a, b in mem), ""))
    return rows


# -- latest.md keeps what a partial run did not measure ----------------------------------------
CARRIED = "## Earlier results, carried over"


def _blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The text's title line and its ``## `` sections as (heading, body)."""
    title, blocks, cur = "", [], None
    for line in text.splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("## "):
            cur = [line[3:].strip(), []]
            blocks.append(cur)
        elif cur is not None:
            cur[1].append(line)
    return title, [(h, "\n".join(b).strip("\n")) for h, b in blocks]


def carry_over(new: str, old: str) -> str:
    """``new``, then the sections of ``old`` (the previous latest.md) that ``new`` does not measure, each
    under the title of the run that measured it, so that latest.md always shows the latest of everything."""
    _, new_blocks = _blocks(new)
    have = {h for h, _ in new_blocks}
    old_own, _, old_carried = old.partition("\n" + CARRIED)
    old_title, own = _blocks(old_own)
    keep: list[tuple[str, str, str]] = []  # (run title, heading, body)
    for h, body in own:
        if h == "Targets":
            if keep:  # that run's targets, for the sections kept from it
                keep.append((old_title, "Targets of that run", body))
        elif h not in have:
            keep.append((old_title, h, body))
    if old_carried:
        current = ""
        for part in old_carried.split("\n### ")[1:]:
            head, _, body = part.partition("\n")
            if head.startswith("From: "):
                current = head[len("From: "):]
                continue
            if head not in have and (head == "Targets of that run" or head not in {h for _, h, _ in keep}):
                keep.append((current, head, body.strip("\n")))
    # A run whose every section was measured again leaves nothing, not even its targets.
    alive = {t for t, h, _ in keep if h != "Targets of that run"}
    keep = [k for k in keep if k[0] in alive]
    if not keep:
        return new
    out = [new.rstrip("\n"), "", CARRIED, "",
           "Not measured by the run above: the sections below are from earlier runs, unchanged.", ""]
    last = None
    for title, h, body in keep:
        if title != last:
            out += [f"### From: {title}", ""]
            last = title
        out += [f"### {h}", "", body.replace("\n### ", "\n#### "), ""]
    return "\n".join(out) + "\n"


# -- main -------------------------------------------------------------------------------------
SECTIONS = ("diagnosis", "timeline", "report", "logs")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100k,1M", help="users per database, comma-separated (default 100k,1M)")
    p.add_argument("--with-10m", action="store_true", help="add 10M users (estimated: ~15 min and ~21 GB to build once, as much again for the index variant)")
    p.add_argument("--out", default=str(BENCH_DIR / "results"), help="where the Markdown goes (default bench/results)")
    p.add_argument("--cache-dir", help="where the bench server and logs live (default: the kit's cache dir)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the databases even when they exist")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run (default {','.join(SECTIONS)})")
    p.add_argument("--repeat", type=int, default=3, help="runs of each diagnosis measurement (default 3)")
    p.add_argument("--timeline-users", type=int, default=100, help="random users per timeline run (default 100)")
    p.add_argument("--timeline-budget", type=float, default=150.0,
                   help="seconds after which a timeline run stops (with at least 20 users; default 150)")
    p.add_argument("--no-index-variant", action="store_true",
                   help="skip the timeline on a copy of the largest database with the proposed audit indexes")
    p.add_argument("--report-users", type=int, default=3, help="incident users in the report log (default 3)")
    p.add_argument("--report-repeat", type=int, default=1, help="runs of each report measurement (default 1)")
    p.add_argument("--no-race-lab", action="store_true", help="leave the race lab out of the report")
    p.add_argument("--report-at-scale", action="store_true",
                   help="with --only report: also render each size's report (it needs the databases)")
    p.add_argument("--demo-report-repeat", type=int, default=3,
                   help="runs of incidentkit report --demo and of the trivial papermill run (default 3)")
    p.add_argument("--log-size", type=parse_mb, default=parse_mb("1G"),
                   help="size of each generated log (default 1G; the text family at a tenth of it too)")
    p.add_argument("--log-families", default=",".join(loggen.FAMILIES),
                   help=f"log families to measure (default {','.join(loggen.FAMILIES)})")
    p.add_argument("--log-repeat", type=int, default=3, help="runs of each log measurement, median shown (default 3)")
    p.add_argument("--log-family-size", action="append", default=[], metavar="FAMILY=SIZE",
                   help="another size for one family, e.g. pg_stderr=100M (repeatable)")
    p.add_argument("--log-timeout", type=float, default=900.0,
                   help="seconds after which a kit run over a log is stopped and shown as such (default 900)")
    p.add_argument("--big-log", action="store_true", help="(kept for old commands) the same as --log-size 1G")
    p.add_argument("--keep-server", action="store_true", help="leave the bench server running at the end")
    args = p.parse_args(argv)
    args.sizes = sorted({parse_size(s) for s in args.sizes.split(",") if s.strip()}
                        | ({10_000_000} if args.with_10m else set()))
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = set(args.only) - set(SECTIONS)
    if bad:
        p.error(f"unknown section(s): {', '.join(sorted(bad))}")
    if args.big_log:
        args.log_size = parse_mb("1G")
    args.log_families = [f.strip() for f in args.log_families.split(",") if f.strip()]
    try:
        args.log_family_sizes = {k.strip(): parse_mb(v) for k, v in (x.split("=", 1) for x in args.log_family_size)}
    except (ValueError, argparse.ArgumentTypeError):
        p.error("--log-family-size takes FAMILY=SIZE, e.g. pg_stderr=100M")
    bad = (set(args.log_families) | set(args.log_family_sizes)) - set(loggen.FAMILIES)
    if bad:
        p.error(f"unknown log famil{'ies' if len(bad) > 1 else 'y'}: {', '.join(sorted(bad))}")
    # The databases are built (or reused) only for what reads them.
    if not ({"diagnosis", "timeline"} & set(args.only)) and not ("report" in args.only and args.report_at_scale):
        args.sizes = []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    say = Progress(sys.stderr.isatty())
    t_start = time.monotonic()
    from incidentkit import config
    from incidentkit.db import embedded

    root = Path(args.cache_dir).expanduser() if args.cache_dir else config.cache_dir()
    data_dir = root / "bench-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded.EmbeddedServer(root / "bench-pg", fast_unsafe=True) if args.sizes else None
    bench_was_running = server.is_running() if server else True
    if server:
        say(f"bench server: {server.data_dir}")
        server.start()
    kit_server = None
    results: dict[int, dict] = {}
    tmp = tempfile.mkdtemp(prefix="reports-", dir=data_dir)
    log_results = demo_report = None
    try:
        if "report" in args.only and not args.no_race_lab:
            # The race lab uses the kit's own embedded server: start it before any clock runs.
            kit_server = embedded.default_server()
            kit_was_running = kit_server.is_running()
            kit_server.start()
        for n in args.sizes:
            r = results[n] = {}
            r["db"] = ensure_database(server, n, args.rebuild, say)
            r["facts"] = database_facts(r["db"]["url"])
            if "diagnosis" in args.only:
                r["diagnosis"] = measure_diagnosis(server, n, r["db"], max(1, args.repeat), say)
            if "timeline" in args.only:
                users, warm = timeline_users(n, args.timeline_users, seed=n)
                r["timeline"] = measure_timeline(r["db"]["url"], n, users, warm, args.timeline_budget, say, "")
                say(f"[{label(n)}] timeline: per-statement breakdown")
                r["breakdown"] = measure_breakdown(r["db"]["url"], users, warm)
                if n == max(args.sizes) and not args.no_index_variant:
                    r["db_ix"] = ensure_index_variant(server, n, args.rebuild, say)
                    r["timeline_ix"] = measure_timeline(r["db_ix"]["url"], n, users, warm, args.timeline_budget,
                                                        say, " (+ proposed indexes)")
            if "report" in args.only:
                log_path = applog.write_report_log(data_dir / f"report-{label(n)}.log",
                                                   dataset.incident_failures(n, args.report_users))
                r["report"] = measure_report(r["db"]["url"], n, log_path, args.report_users, not args.no_race_lab,
                                             max(1, args.report_repeat), tmp, say)
        if "logs" in args.only:
            log_results = measure_logs(data_dir, args.log_size, args.log_families, max(1, args.log_repeat), say,
                                       family_sizes=args.log_family_sizes, timeout=args.log_timeout)
        if "report" in args.only:
            demo_report = measure_demo_report(tmp, max(1, args.demo_report_repeat), say)
    finally:
        if any((r.get("report") or {}).get("error") for r in results.values()) or (demo_report or {}).get("error"):
            say(f"a report failed: its notebooks are kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if kit_server is not None and not kit_was_running and not args.keep_server:
            kit_server.stop()
        if server and not bench_was_running and not args.keep_server:
            say("stopping the bench server")
            server.stop()

    date = dt.datetime.now(dt.timezone.utc).date().isoformat()
    ctx = {
        "sizes": args.sizes, "results": results, "date": date, "logs": log_results, "demo_report": demo_report,
        "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "elapsed": time.monotonic() - t_start, "machine": machine(), "versions": versions(),
        "server_version": results[args.sizes[0]]["facts"]["server_version"] if args.sizes else None,
        "repeat": max(1, args.repeat), "report_repeat": max(1, args.demo_report_repeat),
        "timeline_users": args.timeline_users, "timeline_budget": args.timeline_budget,
        "report_users": args.report_users,
    }
    text = render_markdown(ctx)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "-".join([label(n) for n in args.sizes] + [x for x in ("logs", "report") if x in args.only and not args.sizes])
    target = out / f"{date}-{name}.md"
    k = 2
    while target.exists():  # a second run the same day keeps the first's table
        target = out / f"{date}-{name}-{k}.md"
        k += 1
    target.write_text(text, encoding="utf-8")
    latest = out / "latest.md"
    if latest.exists():
        text = carry_over(text, latest.read_text(encoding="utf-8"))
    latest.write_text(text, encoding="utf-8")
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
