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
* the full report (``incidentkit.report.render.render_for``) against papermill executing the same
  notebooks bare (the floor set by kernel start-up);
* ``incidentkit.evidence.logs.scan_logs`` over a large generated application log.

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
import measure  # noqa: E402

TASKS = str(BENCH_DIR / "tasks.py")
URL_ENV = "DATABASE_URL"

#: The targets of the scale issue.
TARGET_DIAGNOSIS_RATIO = 1.3
TARGET_KIT_PEAK_MB = 250
TARGET_TIMELINE_MEDIAN_MS = 50
TARGET_TIMELINE_RATIO = 2.0
TARGET_REPORT_RATIO = 1.3
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
    if url:
        env[URL_ENV] = url
    return env


def run_task(task: str, args: dict, *, tree: bool = False, env=None, timeout: float = 3600) -> measure.Measured:
    """``python bench/tasks.py TASK ARGS``, measured; ``tree``: sample the RSS of its descendants too."""
    cmd = [sys.executable, TASKS, task, json.dumps(args)]
    return measure.run(cmd, env=env or child_env(), tree=tree, timeout=timeout)


def incidentkit_cli() -> list[str]:
    exe = shutil.which("incidentkit")
    return [exe] if exe else [sys.executable, "-m", "incidentkit"]


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
        m = measure.run(incidentkit_cli() + ["diagnose", "--json"], env=child_env(url))
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
    runs_file = Path(tmp) / f"runs-{label(n)}.json"
    args = {"env": URL_ENV, "logs": [str(log_path)] if log_path else [], "max_users": max_users,
            "race_lab": race_lab, "runs_file": str(runs_file), "tmp": tmp}
    out: dict = {"kit": [], "bare": [], "error": None, "notebooks": []}
    for r in range(1, repeat + 1):
        say(f"[{label(n)}] report: kit render_for ({r}/{repeat})")
        kit = run_task("render", args, tree=True, env=child_env(url))
        if not kit.ok:
            out["error"] = f"render_for failed: {kit.error()}"
            return out
        out["kit"].append(kit)
        out["notebooks"] = kit.result["notebooks"]
        say(f"[{label(n)}] report: bare papermill, {len(out['notebooks'])} notebooks ({r}/{repeat})")
        bare = run_task("papermill_bare", args, tree=True, env=child_env(url))
        if not bare.ok:
            out["error"] = f"bare papermill failed: {bare.error()}"
            return out
        out["bare"].append(bare)
    return out


def measure_logs(data_dir: Path, big: int, say) -> list[dict]:
    out = []
    for size in (big // 10, big):
        path = data_dir / f"app-{size >> 20}MB.log"
        if not path.exists() or path.stat().st_size < size:
            say(f"logs: writing {path} ({size >> 20} MB)")
            applog.write_big_log(path, size)
        say(f"logs: scan_logs over {size >> 20} MB")
        m = run_task("scan_log", {"path": str(path)})
        if not m.ok:
            raise SystemExit(f"scan_logs failed: {m.error()}")
        out.append({"path": path, "m": m})
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
    add(f"# incidentkit at scale: {'/'.join(label(n) for n in sizes)} users — {ctx['date']}")
    add("")
    add(f"Command: `{ctx['command']}` (took {ctx['elapsed'] / 60:.1f} min). How to read this: `bench/README.md`.")
    add("")
    mach, ver = ctx["machine"], ctx["versions"]
    add("| machine | |")
    add("|---|---|")
    add(f"| cores | {mach['cores']} ({mach['usable cores']} usable) — {mach['cpu']} |")
    add(f"| memory | {mach['memory']} |")
    add(f"| OS | {mach['os']} |")
    add(f"| PostgreSQL | {ctx['server_version']} (embedded, pgserver wheel; fsync off, shared_buffers 128MB) |")
    add("| versions | " + ", ".join(f"{k} {v}" for k, v in ver.items()) + " |")
    add("")

    # Datasets.
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
        add("`render_for` (plan incl. the affected-users read, papermill with the kit's IPC kernels, nbconvert "
            "to HTML and Markdown, entry page) vs `papermill.execute_notebook` of the same notebooks with the "
            f"same parameters and nothing else. The report log names {ctx['report_users']} incident users of each "
            "database. Peak RSS: the sum over the process and its kernels, sampled every 50 ms.")
        add("")
        add("| users | notebooks | kit `render_for` | bare papermill | ratio | kit peak RSS | papermill peak RSS |")
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
    if ctx.get("logs"):
        add("## Log parsing")
        add("")
        add("`scan_logs` over a generated application log in the incident's text format (a failed login every "
            "5,000 lines). Peak RSS of the process; flat across sizes means the memory is bounded.")
        add("")
        add("| log size | time | throughput | failures found | peak RSS |")
        add("|---|---|---|---|---|")
        for item in ctx["logs"]:
            m = item["m"]
            size = m.result["bytes"]
            add(f"| {size / 2**20:,.0f} MB | {fmt_s(m.result['seconds'])} | "
                f"{size / 2**20 / m.result['seconds']:.1f} MB/s | {m.result['failures']:,} | {fmt_mb(m.peak_mb)} |")
        add("")

    # Targets.
    add("## Targets")
    add("")
    add("| target | measured | result | largest costs |")
    add("|---|---|---|---|")
    for target, measured, ok, why in targets(ctx):
        add(f"| {target} | {measured} | {verdict(ok)} | {why} |")
    add("")
    return "\n".join(L) + "\n"


def _top(costs: dict | None, k: int) -> str:
    if not costs:
        return ""
    items = sorted(costs.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"`{name}` {fmt_s(v)}" for name, v in items)


def targets(ctx: dict) -> list[tuple[str, str, bool | None, str]]:
    """(target, measured, passed or None, the largest costs behind it) for each target of the issue."""
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
    logs = ctx.get("logs")
    if logs and len(logs) > 1:
        a, b = logs[0]["m"], logs[-1]["m"]
        rows.append((f"log parsing memory bounded ({a.result['bytes'] >> 20} MB → {b.result['bytes'] >> 20} MB; "
                     f"within {FLAT_MEMORY_FACTOR}x)", f"{fmt_mb(a.peak_mb)} → {fmt_mb(b.peak_mb)}",
                     b.peak_mb <= a.peak_mb * FLAT_MEMORY_FACTOR, ""))
    return rows


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
    p.add_argument("--log-size", type=parse_mb, default=parse_mb("200M"),
                   help="size of the large application log (default 200M; a tenth of it is measured too)")
    p.add_argument("--big-log", action="store_true", help="a 1G log instead")
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
    server = embedded.EmbeddedServer(root / "bench-pg", fast_unsafe=True)
    bench_was_running = server.is_running()
    say(f"bench server: {server.data_dir}")
    server.start()
    kit_server = None
    results: dict[int, dict] = {}
    tmp = tempfile.mkdtemp(prefix="reports-", dir=data_dir)
    log_results = None
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
            log_results = measure_logs(data_dir, args.log_size, say)
    finally:
        if any((r.get("report") or {}).get("error") for r in results.values()):
            say(f"a report failed: its notebooks are kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if kit_server is not None and not kit_was_running and not args.keep_server:
            kit_server.stop()
        if not bench_was_running and not args.keep_server:
            say("stopping the bench server")
            server.stop()

    date = dt.datetime.now(dt.timezone.utc).date().isoformat()
    ctx = {
        "sizes": args.sizes, "results": results, "date": date, "logs": log_results,
        "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "elapsed": time.monotonic() - t_start, "machine": machine(), "versions": versions(),
        "server_version": results[args.sizes[0]]["facts"]["server_version"], "repeat": max(1, args.repeat),
        "timeline_users": args.timeline_users, "timeline_budget": args.timeline_budget,
        "report_users": args.report_users,
    }
    text = render_markdown(ctx)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{date}-{'-'.join(label(n) for n in args.sizes)}.md"
    target.write_text(text, encoding="utf-8")
    (out / "latest.md").write_text(text, encoding="utf-8")
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
