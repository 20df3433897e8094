"""Tests of the log ingestion (incidentkit.evidence.logs) on samples real programs produced, and on a live server.

The samples live in tests/samples/logs/ (its README says where each one comes from).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import threading
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from incidentkit.evidence import logs
from incidentkit.exceptions import ConfigError, LogReadError
from incidentkit.evidence.logs import (
    DEFAULT_CONSTRAINT,
    DEFAULT_USER_PATTERN,
    LogFailure,
    LogScan,
    iter_failures,
    iter_log_files,
    scan_logs,
)

SAMPLES = Path(__file__).resolve().parent / "samples" / "logs"
OTHER_FK = "workspace_members_workspace_id_workspaces_id_fk"
FK_TEXT = f'insert or update on table "users" violates foreign key constraint "{DEFAULT_CONSTRAINT}"'

# The people of the samples: (user id, workspace id that does not exist).
A = ("did:privy:cmgiqkpg0001wl40cqhofcvo4", "a7189b92-ba75-4160-8fa0-426bfe8fa33a")  # the report's user
B = ("did:privy:cmgj0x7rk00a2l50d9u3m1qzp", "5d0c4f3e-9b8a-4e1f-a2c3-7b6d5e4f3a21")
C = ("did:privy:cmgjb2n8d00c4l60fwq7x2kle", "8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b")
D = ("did:privy:cmgk4hq9w00e7l70a5r2u8zty", "3c9d8e7f-6a5b-4c4d-9e3f-2a1b0c9d8e7f")
E = ("did:privy:cmgkz1y3p00g9l80b6s4v0xnd", "f47ac10b-58cc-4372-a567-0e02b2c3d479")
OTHER_WORKSPACE = "0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"  # of the workspace_members violation


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def pairs(failures: list[LogFailure]) -> list[tuple[str | None, str | None]]:
    return [(f.user_id, f.workspace_id) for f in failures]


def key_detail(workspace: str) -> str:
    return f'Key (primary_workspace_id)=({workspace}) is not present in table "workspaces".'


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- PostgreSQL's own logs (real server output) ---------------------------------------------
# In server order: psycopg A and B (bound parameters), the workspace_members violation and a
# unique violation (both ignored), C by simple query (user in STATEMENT), E in a DO block
# (multi-line CONTEXT), then node-postgres D and A.
PG_PAIRS = [A, B, C, E, D, A]


@pytest.mark.parametrize(
    "name, fmt, lines",
    [
        ("postgresql", "pg_stderr", [5, 9, 23, 26, 35, 39]),
        ("postgresql.csv", "pg_csv", [5, 6, 11, 12, 18, 19]),
        ("postgresql.json", "pg_json", [5, 6, 9, 10, 11, 12]),
    ],
)
def test_real_postgres_server_logs(name, fmt, lines):
    path = SAMPLES / "postgres" / name
    scan = scan_logs(path)
    assert pairs(scan.failures) == PG_PAIRS
    assert [f.line for f in scan.failures] == lines
    assert {f.format for f in scan.failures} == {fmt}
    assert {f.constraint for f in scan.failures} == {DEFAULT_CONSTRAINT}
    assert {f.source for f in scan.failures} == {str(path)}
    assert scan.failures[0].at == utc(2026, 11, 23, 23, 25, 2, 590000)
    assert scan.failures[-1].at == utc(2026, 11, 23, 23, 25, 2, 951000)
    assert OTHER_WORKSPACE not in {f.workspace_id for f in scan.failures}
    assert scan.skipped_lines == 0
    assert scan.files == [str(path)]


def test_server_log_formats_agree():
    by_format = [scan_logs(SAMPLES / "postgres" / n).failures for n in ("postgresql", "postgresql.csv", "postgresql.json")]
    as_tuples = [[(f.at, f.user_id, f.workspace_id) for f in fs] for fs in by_format]
    assert as_tuples[0] == as_tuples[1] == as_tuples[2]


def test_live_embedded_server_logs_the_failure_in_all_formats(pg_server, fresh_db):
    """Produce the failure for real (bound parameters, as the app does) and find it in the server's logs."""
    import psycopg

    user = "did:privy:" + uuid.uuid4().hex[:25]
    workspace = str(uuid.uuid4())
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
            conn.execute("insert into users (privy_did, primary_workspace_id) values (%s, %s)", (user, workspace))
    assert caught.value.diag.constraint_name == DEFAULT_CONSTRAINT

    wanted = {"pg_stderr", "pg_csv"} | ({"pg_json"} if pg_server.major >= 15 else set())
    mine: list[LogFailure] = []
    for _ in range(100):  # the logging collector writes asynchronously: wait until all formats have it
        scan = scan_logs(pg_server.log_dir)
        mine = [f for f in scan.failures if f.user_id == user]
        if {f.format for f in mine} >= wanted:
            break
        time.sleep(0.1)
    assert {f.format for f in mine} == wanted
    assert all(f.workspace_id == workspace for f in mine)
    assert all(abs(f.at - datetime.now(timezone.utc)) < timedelta(hours=1) for f in mine)
    assert {Path(s).name for s in scan.files} >= {"postgresql", "postgresql.csv"}


# -- application text logs --------------------------------------------------------------------
def test_text_app_log_with_real_node_postgres_output():
    path = SAMPLES / "app" / "next-server.log"
    scan = scan_logs(path)
    assert [f.format for f in scan.failures] == ["text"] * 4
    assert pairs(scan.failures) == [
        A,  # user on the request line before; "Detail:" as in the report
        D,  # node's console.error(err): detail: '...' and where: "... $1 = 'did:...'" properties
        (B[0], None),  # no Detail line; user in JSON-ish text on the timestamped line
        C,  # "[2025-10-08 14:11:45.300 UTC]" with DETAIL: in capitals
    ]
    assert [f.at for f in scan.failures] == [
        utc(2025, 10, 8, 14, 3, 22, 481000),
        utc(2025, 10, 8, 14, 5, 10, 2000),
        utc(2025, 10, 8, 14, 9, 0, 120000),  # 16:09:00.120+02:00
        utc(2025, 10, 8, 14, 11, 45, 300000),
    ]
    assert [f.line for f in scan.failures] == [10, 15, 44, 47]
    assert scan.skipped_lines == 0


def test_text_uses_latest_timestamp_and_merges_a_repeated_error(tmp_path):
    path = write(tmp_path / "app.log", "\n".join([
        "2025-10-08 14:00:00 UTC boot",
        "2025-10-08 14:00:01,250 UTC request user=did:privy:aaa111",
        f"tRPC error: {FK_TEXT}",
        f"error: {FK_TEXT}",  # the same error again (message, then stack): one failure
        "    at /var/task/node_modules/pg-pool/index.js:45:11",
        f"2025-10-08 14:00:01,251 UTC Detail: {key_detail(A[1])}",
        "2025-10-08 14:00:02 UTC next request user=did:privy:bbb222",
    ]) + "\n")
    [failure] = scan_logs(path).failures
    assert failure.at == utc(2025, 10, 8, 14, 0, 1, 250000)
    assert (failure.user_id, failure.workspace_id, failure.line) == ("did:privy:aaa111", A[1], 3)


def test_text_error_without_any_timestamp_is_skipped_not_fatal(tmp_path):
    path = write(tmp_path / "bare.log", f"starting\nerror: {FK_TEXT}\nDetail: {key_detail(A[1])}\n")
    scan = scan_logs(path)
    assert scan.failures == []
    assert scan.skipped_lines == 1


def test_python_logging_comma_timestamps_are_text_not_csv(tmp_path):
    lines = [f"2025-10-08 14:00:0{i},25{i} INFO web: GET /health, 200" for i in range(5)]
    lines[3] = f"2025-10-08 14:00:03,253 ERROR web: user={A[0]}, {FK_TEXT}"
    scan = scan_logs(write(tmp_path / "python.log", "\n".join(lines) + "\n"))
    assert [(f.format, f.at, f.user_id) for f in scan.failures] == [("text", utc(2025, 10, 8, 14, 0, 3, 253000), A[0])]


def test_user_of_an_unrelated_error_is_not_borrowed(tmp_path):
    path = write(tmp_path / "app.log", "\n".join([
        "2025-10-08T14:00:00Z --> POST /api/trpc/workspace.invite user=did:privy:inviter1",
        f'error: insert or update on table "workspace_members" violates foreign key constraint "{OTHER_FK}"',
        "2025-10-08T14:00:01Z --> POST /api/trpc/workspace.getOrCreateWorkspaceV2",
        f"error: {FK_TEXT}",
    ]) + "\n")
    assert pairs(scan_logs(path).failures) == [(None, None)]


# -- JSON lines from log drains ---------------------------------------------------------------
def test_vercel_drain_jsonl():
    scan = scan_logs(SAMPLES / "drains" / "vercel.jsonl")
    assert pairs(scan.failures) == [A, (None, B[1])]  # the second record names no user anywhere
    assert [f.at for f in scan.failures] == [utc(2025, 10, 8, 14, 3, 22, 481000), utc(2025, 10, 8, 14, 5, 10, 2000)]
    assert [f.line for f in scan.failures] == [2, 4]
    assert {f.format for f in scan.failures} == {"jsonl"}
    assert scan.skipped_lines == 0


def test_datadog_jsonl_nested_fields_and_one_failure_per_record():
    scan = scan_logs(SAMPLES / "drains" / "datadog.jsonl")
    # record 2 says the error three times (message, error.message, error.stack): still one failure
    assert pairs(scan.failures) == [E, D]
    assert [f.at for f in scan.failures] == [utc(2025, 10, 8, 14, 7, 41, 512000), utc(2025, 10, 8, 14, 12, 3, 250000)]
    assert [f.line for f in scan.failures] == [2, 3]


def test_pino_zap_ecs_time_keys():
    scan = scan_logs(SAMPLES / "drains" / "app-pino.jsonl")
    assert pairs(scan.failures) == [A, B, C]
    assert [f.at for f in scan.failures] == [
        utc(2025, 10, 8, 14, 20),  # pino "time": epoch milliseconds
        utc(2025, 10, 8, 14, 21, 0, 500000),  # zap "ts": epoch seconds
        utc(2025, 10, 8, 14, 22),  # ECS "@timestamp" with +02:00
    ]


def test_jsonl_user_field_beats_text_and_batch_arrays(tmp_path):
    record = {"date": "2025-10-08T14:03:22Z", "msg": f"{FK_TEXT}\nDetail: {key_detail(A[1])} by did:privy:zzz999",
              "context": {"user": {"id": A[0]}}}
    batch = [dict(record, date=1759932310, context={"privyDid": B[0]}), {"message": "ok", "timestamp": 1759932310000}]
    path = write(tmp_path / "drain.ndjson", json.dumps(record) + "\n" + json.dumps(batch) + "\n")
    scan = scan_logs(path)
    assert pairs(scan.failures) == [A, (B[0], A[1])]
    assert scan.failures[1].at == utc(2025, 10, 8, 14, 5, 10)  # epoch seconds under "date"


# -- gzip, globs, directories -------------------------------------------------------------------
def without_source(failures: list[LogFailure]) -> list[dict]:
    return [{k: v for k, v in f.to_dict().items() if k not in ("source", "sources")} for f in failures]


def test_gzip_is_detected_by_magic_bytes_not_suffix():
    gz = scan_logs(SAMPLES / "gzip")
    plain_text = scan_logs(SAMPLES / "app" / "next-server.log").failures
    plain_json = scan_logs(SAMPLES / "drains" / "vercel.jsonl").failures
    by_file = {Path(s).name: [f for f in gz.failures if Path(f.source).name == Path(s).name] for s in gz.files}
    assert (SAMPLES / "gzip" / "vercel-export").read_bytes()[:2] == b"\x1f\x8b"
    assert without_source(by_file["next-server.log.gz"]) == without_source(plain_text)
    assert without_source(by_file["vercel-export"]) == without_source(plain_json)
    assert gz.skipped_lines == 0


def test_a_gz_suffix_on_a_plain_file_is_read_as_plain(tmp_path):
    path = write(tmp_path / "not-really.log.gz", f"2025-10-08T14:03:22.481Z error: {FK_TEXT}\n")
    assert [f.at for f in scan_logs(path).failures] == [utc(2025, 10, 8, 14, 3, 22, 481000)]


def test_directory_mixing_formats():
    scan = scan_logs(SAMPLES / "mixed")
    names = [str(Path(s).relative_to(SAMPLES / "mixed")) for s in scan.files]
    assert names == ["app.log", "notes.txt", "pg/postgresql.csv", "pg/postgresql.json", "vercel-2025-10-08.ndjson.gz"]
    counts = {fmt: sum(f.format == fmt for f in scan.failures) for fmt in logs.FORMATS}
    assert counts == {"text": 1, "jsonl": 2, "pg_stderr": 0, "pg_csv": 6, "pg_json": 6}
    assert scan.skipped_lines == 0


def test_iter_log_files_sorts_and_deduplicates_files_globs_and_dirs():
    pg = SAMPLES / "postgres"
    files = list(iter_log_files([pg / "postgresql.json", str(pg), str(SAMPLES / "**" / "postgresql.csv"), pg / "postgresql"]))
    assert all(isinstance(p, Path) for p in files)
    assert [str(p) for p in files] == sorted(str(p) for p in files)
    assert len({os.path.realpath(p) for p in files}) == len(files)
    assert {p.name for p in files} == {"postgresql", "postgresql.csv", "postgresql.json"}
    assert (SAMPLES / "mixed" / "pg" / "postgresql.csv") in files  # found by the recursive glob


def test_single_path_string_and_path_objects_both_work():
    assert list(iter_log_files(str(SAMPLES / "app"))) == list(iter_log_files(SAMPLES / "app"))


@pytest.mark.parametrize("make_arg, needle", [
    (lambda tmp: tmp / "nope.log", "log path not found"),
    (lambda tmp: str(tmp / "*.log"), "no files match"),
    (lambda tmp: tmp, "no log files in directory"),
])
def test_unreadable_paths_raise_one_line_log_read_error(tmp_path, make_arg, needle):
    arg = make_arg(tmp_path)
    with pytest.raises(LogReadError) as caught:
        scan_logs(arg)
    message = str(caught.value)
    assert needle in message and str(tmp_path) in message
    assert "\n" not in message and "Traceback" not in message


def test_file_that_cannot_be_opened_raises_log_read_error(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.log", "x\n")
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads anything: make the open refuse, as the file system would
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(logs, "_open_fd", refuse)
    with pytest.raises(LogReadError, match=r"cannot open log file .*secret\.log: permission denied"):
        scan_logs(path)


# -- damaged content ----------------------------------------------------------------------------
def test_damaged_text_lines_are_counted_and_skipped():
    scan = scan_logs(SAMPLES / "damaged" / "next-server-damaged.log")
    # the second error's Detail was cut: the failure stays, without a workspace id
    assert pairs(scan.failures) == [A, (B[0], None)]
    # binary (1), Latin-1 (1), cut error line (1), cut Detail (1), PNG header (2), bad UTF-8 (1), cut at EOF (1)
    assert scan.skipped_lines == 8


def test_damaged_json_lines_are_counted_and_skipped():
    scan = scan_logs(SAMPLES / "damaged" / "vercel-damaged.jsonl")
    assert pairs(scan.failures) == [A, B]
    assert [f.line for f in scan.failures] == [1, 6]
    # cut JSON, binary, bad UTF-8, not a record, message cut in the constraint name, no time
    assert scan.skipped_lines == 6


def test_gzip_stream_cut_short_keeps_what_was_readable():
    scan = scan_logs(SAMPLES / "damaged" / "postgresql-cut-off.gz")
    assert pairs(scan.failures) == PG_PAIRS[:4]
    assert scan.skipped_lines == 1


def test_overlong_line_is_skipped_without_holding_it(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "MAX_LINE_BYTES", 1024)
    path = write(tmp_path / "long.log", "2025-10-08T14:00:00Z " + "x" * 5000 + "\n"
                 f"2025-10-08T14:00:01Z user=did:privy:abc error: {FK_TEXT}\n")
    scan = scan_logs(path)
    assert pairs(scan.failures) == [("did:privy:abc", None)]
    assert scan.skipped_lines == 1


def test_csv_records_cut_or_short_are_skipped(tmp_path):
    good = (SAMPLES / "postgres" / "postgresql.csv").read_text().splitlines()
    cut = good[4][:200]  # a record cut inside the quoted message: the next record starts anyway
    path = write(tmp_path / "pg.csv", "\n".join([good[0], cut, *good[5:7], "2025-10-08 14:00:00.000 UTC,too,few"]) + "\n")
    scan = scan_logs(path)
    assert [f.format for f in scan.failures] == ["pg_csv"]
    assert pairs(scan.failures) == [B]
    assert scan.skipped_lines == 2


# -- PostgreSQL variants ------------------------------------------------------------------------
def test_pg_stderr_with_t_prefix_and_numeric_zone(tmp_path):
    """A %t-first prefix (RDS style), interleaved with another backend's lines."""
    text = (
        "2025-10-08 16:03:22 +02:10.0.1.5(50412):app@prod:[7001]:LOG:  connection authorized: user=app database=prod\n"
        f"2025-10-08 16:03:22 +02:10.0.1.5(50412):app@prod:[7001]:ERROR:  {FK_TEXT}\n"
        f"2025-10-08 16:03:22 +02:10.0.1.5(50412):app@prod:[7001]:DETAIL:  {key_detail(A[1])}\n"
        f"2025-10-08 16:03:22 +02:10.0.1.5(50999):app@prod:[7002]:CONTEXT:  unnamed portal with parameters: $1 = '{B[0]}'\n"
        f"2025-10-08 16:03:22 +02:10.0.1.5(50412):app@prod:[7001]:CONTEXT:  "
        f"unnamed portal with parameters: $1 = '{A[0]}', $2 = '{A[1]}'\n"
        "2025-10-08 16:03:22 +02:10.0.1.5(50412):app@prod:[7001]:STATEMENT:  insert into users values ($1, $2)\n"
    )
    scan = scan_logs(write(tmp_path / "postgresql-2025-10-08.log", text))
    assert [(f.format, f.at, f.user_id, f.workspace_id) for f in scan.failures] == [
        ("pg_stderr", utc(2025, 10, 8, 14, 3, 22), A[0], A[1])]


def test_pg13_csvlog_with_fewer_columns(tmp_path):
    row = ['2025-10-08 14:03:22.481 UTC', 'app', 'prod', '7001', '10.0.1.5:50412', '6705e0b6.1b59', '3', 'INSERT',
           '2025-10-08 14:03:20 UTC', '3/8', '733', 'ERROR', '23503', FK_TEXT,
           key_detail(A[1]), '', '', '',
           f"unnamed portal with parameters: $1 = '{A[0]}', $2 = '{A[1]}'", 'insert into users values ($1, $2)', '', '', 'web']
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    scan = scan_logs(write(tmp_path / "pg13.csv", buf.getvalue()))
    assert pairs(scan.failures) == [A] and scan.failures[0].format == "pg_csv"


# -- configuration --------------------------------------------------------------------------------
def test_user_pattern_is_configurable_with_groups():
    path = SAMPLES / "postgres" / "postgresql"
    grouped = scan_logs(path, user_pattern=r"did:privy:(cmgj[a-z0-9]+)").failures
    assert [f.user_id for f in grouped] == [None, B[0][10:], C[0][10:], None, None, None]
    named = scan_logs(path, user_pattern=re.compile(r"\$1 = '(?P<user>[^']+)'")).failures
    assert [f.user_id for f in named] == [A[0], B[0], None, None, D[0], A[0]]  # only bound parameters
    assert all(f.user_id is None for f in scan_logs(path, user_pattern=r"user-\d+").failures)


def test_invalid_user_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid user id pattern"):
        scan_logs(SAMPLES / "app", user_pattern="did:privy:[a-z")


def test_other_constraints_are_ignored_or_chosen():
    stderr = SAMPLES / "postgres" / "postgresql"
    other = scan_logs(stderr, constraint=OTHER_FK)
    assert pairs(other.failures) == [("did:privy:cmgk2ab3c000xl70eotherusr", OTHER_WORKSPACE)]
    assert {f.constraint for f in other.failures} == {OTHER_FK}
    assert pairs(scan_logs(SAMPLES / "app", constraint=OTHER_FK).failures) == [
        ("did:privy:cmgk2ab3c000xl70eotherusr", OTHER_WORKSPACE)]
    none = scan_logs(SAMPLES / "postgres", constraint="no_such_constraint_fk")
    assert none.failures == [] and none.skipped_lines == 0  # ignored, not counted as skipped


def test_defaults():
    assert DEFAULT_USER_PATTERN == r"did:privy:[a-z0-9]+"
    assert DEFAULT_CONSTRAINT == "users_primary_workspace_id_workspaces_id_fk"


# -- results ----------------------------------------------------------------------------------------
def test_to_dict_is_json_ready_with_utc_z_times():
    scan = scan_logs([SAMPLES / "app", SAMPLES / "drains"])
    data = json.loads(json.dumps(scan.to_dict()))
    assert set(data) == {"failures", "skipped_lines", "files", "file_reads"}
    first = data["failures"][0]
    assert first == {"at": "2025-10-08T14:03:22.481Z", "user_id": A[0], "workspace_id": A[1],
                     "constraint": DEFAULT_CONSTRAINT, "source": str(SAMPLES / "app" / "next-server.log"),
                     "line": 10, "format": "text", "kind": "insert",
                     "sources": [{"file": str(SAMPLES / "app" / "next-server.log"), "line": 10}]}
    assert all(f["at"].endswith("Z") for f in data["failures"])
    assert all(datetime.fromisoformat(f["at"].replace("Z", "+00:00")).tzinfo for f in data["failures"])
    assert data["files"] == scan.files and len(data["failures"]) == len(scan.failures)


def test_log_failure_is_frozen():
    failure = scan_logs(SAMPLES / "app").failures[0]
    with pytest.raises(AttributeError):
        failure.user_id = "x"  # type: ignore[misc]
    assert failure.at.tzinfo is not None and failure.at.utcoffset() == timedelta(0)


def test_parse_time_epoch_rules():
    assert logs.parse_time(1759932202481) == utc(2025, 10, 8, 14, 3, 22, 481000)  # > 1e11: milliseconds
    assert logs.parse_time(1759932202) == utc(2025, 10, 8, 14, 3, 22)  # seconds
    assert logs.parse_time("1759932202481") == utc(2025, 10, 8, 14, 3, 22, 481000)
    assert logs.parse_time("2025-10-08 16:03:22.481 CEST") == utc(2025, 10, 8, 14, 3, 22, 481000)
    assert logs.parse_time("not a time") is None and logs.parse_time(True) is None


# -- streaming and bounded memory ---------------------------------------------------------------------
def record(ts: str, user: str, workspace: str) -> str:
    return (f"{ts} error user={user}\nerror: {FK_TEXT}\n"
            f"Detail: {key_detail(workspace)}\n")


def filler(n: int) -> str:
    return "".join(f"2025-10-08T14:03:23.{i % 1000:03d}Z info  GET /api/health 200 {i}ms\n" for i in range(n))


def test_iter_failures_yields_before_the_file_ends(tmp_path):
    """Through a named pipe whose writer pauses: the first failure arrives while the rest is unwritten."""
    fifo = tmp_path / "live.log"
    os.mkfifo(fifo)
    proceed, finished = threading.Event(), threading.Event()

    def writer() -> None:
        with open(fifo, "w") as fh:
            fh.write(record("2025-10-08T14:03:22.481Z", *A) + filler(30))
            fh.flush()
            proceed.wait(timeout=10)
            fh.write(record("2025-10-08T14:04:00.000Z", *B) + filler(3))
        finished.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    stats = LogScan()
    stream = iter_failures(fifo, stats=stats)
    first = next(stream)
    writer_done_at_first = finished.is_set()
    assert stats.files == [str(fifo)]  # stats are live while streaming
    proceed.set()
    rest = list(stream)
    thread.join(timeout=10)
    assert not writer_done_at_first
    assert (first.user_id, first.workspace_id) == A
    assert pairs(rest) == [B]


def _peak_while_scanning(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_failures(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return count, peak


def test_memory_stays_bounded_on_a_large_file(tmp_path, monkeypatch):
    """Four times the file, not more memory: the reading buffers are fixed, lines are not kept."""
    monkeypatch.setattr(logs, "READ_BLOCK", 64 * 1024)  # files many blocks long, made quickly
    peaks = []
    for records in (300, 1200):
        path = tmp_path / f"big-{records}.log"
        with open(path, "w") as fh:
            for _ in range(records):
                fh.write(record("2025-10-08T14:03:22.481Z", *A) + filler(200))
        count, peak = _peak_while_scanning(path)
        assert count == records
        peaks.append(peak)
    size = path.stat().st_size
    assert size > 12_000_000
    # what may differ: how many blocks wait for the digest thread (at most 8, as it is scheduled)
    # the reading buffer holds a block after the start of a line up to MAX_LINE_BYTES long
    bound = logs.MAX_LINE_BYTES + 24 * logs.READ_BLOCK  # and up to 8 blocks queued for the digest
    assert peaks[1] < peaks[0] + 10 * logs.READ_BLOCK and peaks[1] < bound < size // 5


def test_gzip_streams_too(tmp_path):
    path = tmp_path / "big.log.gz"
    with gzip.open(path, "wt") as fh:
        for _ in range(20):
            fh.write(record("2025-10-08T14:03:22.481Z", *B) + filler(100))
    stats = LogScan()
    assert sum(1 for _ in iter_failures(path, stats=stats)) == 20
    assert stats.skipped_lines == 0 and stats.files == [str(path)]


class _Stderr:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_on_a_terminal_only(tmp_path, monkeypatch, tty):
    import incidentkit.evidence.logs as logs_module

    path = tmp_path / "big.log"
    path.write_text("2025-10-08T09:41:27.164Z info nothing to see here\n" * 2000)
    fake = _Stderr(tty)
    monkeypatch.setattr(logs_module, "PROGRESS_EVERY", 10_000)
    monkeypatch.setattr(logs_module.sys, "stderr", fake)
    logs_module.scan_logs([path])
    if tty:
        assert "reading" in fake.text and "MB" in fake.text and fake.text.endswith("\n")
    else:
        assert fake.text == ""
