"""The server log's byte-level skim (``evidence/server_log.py``, ``SKIM``) gives what reading every
line gives.

Only the records that can change the result are decoded when skimming: those naming a watched
table, errors, ROLLBACK/ABORT, session ends, pgaudit lines, and the records of a session that has
statements pending. Each test reads the same files both ways (``SKIM = False`` decodes and parses
every line) and compares everything :func:`scan_server_logs` returns (events with their status,
``skipped_lines``, ``failed_statements``, files) and the order :func:`iter_server_log_events`
streams the events in; small read blocks put records across block boundaries.

The files: every sample log in ``tests/samples/logs`` (the server's real stderr, csvlog and
jsonlog, the damaged ones too), and generated logs of the hard cases, each in stderr (with and
without ``%c``/``%v`` in the prefix) and jsonlog (with and without ``vxid``/``session_id``):
mixed-case, quoted and schema-qualified names, ROLLBACK in the same and in another transaction,
errors after a DELETE, pgaudit ``<previously logged>``, parameters on the DETAIL line,
statements continued on tab-indented lines, unreadable, blank, overlong and CRLF lines, gzip.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

import incidentkit.evidence.server_log as sl
from incidentkit.evidence.server_log import iter_server_log_events, scan_server_logs

SAMPLES = Path(__file__).parent / "samples" / "logs"
#: The sample's stderr file changes prefix halfway (see tests/samples/logs/server/README.md).
SAMPLE_PREFIXES = ["%m [%p] %q%u@%d/%a ", "%t [%p] %c %x %d "]
WATCHED = {"workspaces": "public.workspaces", "memberships": "public.workspace_members"}


def _sample_server_logs() -> list[Path]:
    """Every sample file that is a PostgreSQL log (by its first line), gzip included."""
    out = []
    for path in sorted(p for p in SAMPLES.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (EOFError, OSError):
                with gzip.open(path) as fh:
                    raw = fh.read1(4096)
        first = raw.lstrip()[:300]
        if first.startswith(b'{"timestamp":"') or b" LOG:  " in first.split(b"\n")[0] or b",LOG," in first:
            out.append(path)
    return out


def _both(monkeypatch, paths, block: int = 4 << 20, **kwargs):
    """(skimmed, every line) results of scanning ``paths``: the scan's dict and the streamed order."""
    monkeypatch.setattr(sl, "READ_BLOCK", block)
    out = []
    for skim in (True, False):
        monkeypatch.setattr(sl, "SKIM", skim)
        scan = scan_server_logs(paths, include_failed=True, **kwargs)
        streamed = [(e.file, e.line, e.kind, e.ids, e.failed) for e in iter_server_log_events(paths, include_failed=True, **kwargs)]
        out.append((scan.to_dict(), streamed))
    return out


def test_the_samples_are_found():
    names = {p.name for p in _sample_server_logs()}
    assert {"postgresql", "postgresql.csv", "postgresql.json", "postgresql-cut-off.gz"} <= names


@pytest.mark.parametrize("block", [97, 1024, 4 << 20])
def test_every_sample_log_reads_the_same_skimmed(monkeypatch, block):
    for path in _sample_server_logs():
        for tables in (None, WATCHED, {"w": "depot.warehouses"}):
            prefix = SAMPLE_PREFIXES if path.parent.name == "server" else None
            skim, full = _both(monkeypatch, path, block, tables=tables, log_line_prefix=prefix)
            assert skim == full, (path, tables)
    # and the server's three files as one history
    server = SAMPLES / "server"
    files = [server / "postgresql", server / "postgresql.csv", server / "postgresql.json"]
    skim, full = _both(monkeypatch, files, block, database="ik_app", log_line_prefix=SAMPLE_PREFIXES)
    assert skim == full and len(skim[0]["events"]) > 5


# -- generated logs of the hard cases ---------------------------------------------------------
TABLE_SPELLINGS = ["workspaces", "WORKSPACES", "WorkSpaces", '"workspaces"', '"Workspaces"', "public.workspaces",
                   '"public"."workspaces"', "PUBLIC.Workspaces", "other.workspaces", "workspaces_archive",
                   "Workspace_Members", "workspace_members", '"workspace_members"']


def _uuid(rng: random.Random) -> str:
    return f"00000000-0000-4000-8000-{rng.randrange(1, 40):012d}"


class _Session:
    def __init__(self, n: int, rng: random.Random):
        self.pid = 4000 + n
        self.sid = f"6b0{n:05x}.{self.pid:x}"
        self.lxid = rng.randrange(1, 50)
        self.backend = n + 2

    @property
    def vxid(self) -> str:
        return f"{self.backend}/{self.lxid}"


def _messages(rng: random.Random) -> list[tuple[str, str, str | None, list[str]]]:
    """One session's next record: (severity, message, detail, continuation lines)."""
    table = rng.choice(TABLE_SPELLINGS)
    wid = _uuid(rng)
    choices = [
        ("LOG", f"statement: delete from {table} where id = '{wid}'", None, []),
        ("LOG", f"statement: DELETE FROM {table} WHERE id IN ('{wid}', '{_uuid(rng)}')", None, []),
        ("LOG", f"execute <unnamed>: delete from {table} where id = $1", f"parameters: $1 = '{wid}'", []),
        ("LOG", f"execute s1: insert into {table} (id, name) values ($1, $2)",
         f"parameters: $1 = '{wid}', $2 = 'n'", []),
        ("LOG", "statement: delete from", None, [f"{table} where id = '{wid}'"]),
        ("LOG", "statement: update documents set title = 'x' where id = 1", None, []),
        ("LOG", "execute <unnamed>: update users set last_seen_at = now() where id = $1",
         f"parameters: $1 = '{wid}'", []),
        ("LOG", "statement: begin", None, []),
        ("LOG", "statement: commit", None, []),
        ("LOG", rng.choice(["statement: ROLLBACK", "statement: rollback", "statement: Abort",
                            "statement: rollback to savepoint a", "statement:  /* c */ ROLLBACK"]), None, []),
        ("ERROR", 'update or delete on table "workspaces" violates foreign key constraint "fk"',
         "Key (id)=(x) is still referenced.", []),
        ("ERROR", "division by zero", None, []),
        ("FATAL", "terminating connection due to administrator command", None, []),
        ("LOG", "disconnection: session time: 0:00:01.000 user=app database=ik_app host=[local]", None, []),
        ("LOG", f'AUDIT: SESSION,1,1,WRITE,DELETE,TABLE,public.workspaces,"delete from workspaces where id = \'{wid}\'",'
                "<not logged>", None, []),
        ("LOG", "AUDIT: SESSION,1,2,WRITE,DELETE,TABLE,public.workspaces,<previously logged>,<not logged>", None, []),
        ("LOG", "AUDIT: SESSION,2,1,WRITE,INSERT,TABLE,public.workspace_members,<previously logged>,<not logged>",
         None, []),
        ("LOG", "checkpoint starting: time", None, []),
        ("LOG", "duration: 0.120 ms  statement: delete from workspaces where id = '" + wid + "'", None, []),
    ]
    return rng.choices(choices, k=1)


def _stderr_log(seed: int, prefix: str, n: int = 500, crlf: bool = False) -> bytes:
    """A stderr log written with ``prefix`` (one of PREFIXES below): sessions interleaved,
    transactions open and closed, and junk lines between."""
    rng = random.Random(seed)
    sessions = [_Session(i, rng) for i in range(rng.choice([1, 3, 8]))]
    out: list[str] = []
    for k in range(n):
        s = rng.choice(sessions)
        if rng.random() < 0.4:
            s.lxid += 1  # its next transaction
        ts = f"2025-10-08 09:41:{k // 100 % 60:02d}.{k % 1000:03d} UTC"
        novxid = rng.random() < 0.15
        vxid = "" if novxid else s.vxid
        head = {
            "%m [%p] ": f"{ts} [{s.pid}] ",
            "%m [%p] %c [%v] ": f"{ts} [{s.pid}] {s.sid} [{vxid}] ",
            "%m [%p] %q%u@%d/%a ": f"{ts} [{s.pid}] app@{rng.choice(['ik_app', 'ik_other'])}/web ",
        }[prefix]
        r = rng.random()
        if r < 0.04:
            out.append(rng.choice(["", "garbage without a prefix", "garbage ERROR:  no prefix",
                                   "\tstray continuation: delete from workspaces where id = 'x'",
                                   f"{ts} [{s.pid}] no severity delete from workspaces",
                                   "x" * rng.choice([300, 3000])]))
            continue
        sev, msg, detail, more = _messages(rng)[0]
        out.append(f"{head}{sev}:  {msg}")
        out.extend("\t" + m for m in more)
        if detail:
            out.append(f"{head}DETAIL:  {detail}")
        if sev == "ERROR":
            out.append(f"{head}STATEMENT:  delete from workspaces where id = $1")
            if rng.random() < 0.5:
                out.append(f"{head}HINT:  a hint\n\tover two lines")
        if rng.random() < 0.05:  # another session's DETAIL between
            other = rng.choice(sessions)
            out.append(f"{ts} [{other.pid}] DETAIL:  parameters: $1 = 'zz'")
    sep = "\r\n" if crlf else "\n"
    return (sep.join(out) + (sep if seed % 3 else "")).encode()


def _json_log(seed: int, n: int = 500, crlf: bool = False) -> bytes:
    rng = random.Random(seed)
    sessions = [_Session(i, rng) for i in range(rng.choice([1, 3, 8]))]
    no_session = seed % 2 == 1  # then sessions are told by their pid
    out: list[bytes] = []
    for k in range(n):
        s = rng.choice(sessions)
        if rng.random() < 0.4:
            s.lxid += 1
        r = rng.random()
        if r < 0.05:
            out.append(rng.choice([b"", b'{"broken": "statement: delete from workspaces where id = \'x\'',
                                   b'{"broken": "execute <unnamed>: update x"', b"not json at all",
                                   b'{"timestamp": "2025-10-08 09:41:27.118 UTC", "message": "\xff\xfe statement: x"}',
                                   b'{"message": "statement: ' + b"x" * rng.choice([300, 3000]) + b'"}']))
            continue
        sev, msg, detail, more = _messages(rng)[0]
        if more:
            msg += "\n" + "\n".join(more)
        obj: dict = {"timestamp": f"2025-10-08 09:41:{k // 100 % 60:02d}.{k % 1000:03d} UTC", "user": "app",
                     "dbname": rng.choice(["ik_app", "ik_app", "ik_other"]), "pid": s.pid}
        if not no_session:
            obj["session_id"] = s.sid
        if rng.random() > 0.15:
            obj["vxid"] = s.vxid
        obj["error_severity"] = sev
        obj["message"] = msg
        if detail:
            obj["detail"] = detail
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=rng.random() < 0.9)
        if rng.random() < 0.03:  # an escaped spelling of a needle
            text = text.replace("AUDIT", "\\u0041UDIT").replace('"ERROR"', '"\\u0045RROR"')
        out.append(text.encode())
    sep = b"\r\n" if crlf else b"\n"
    return sep.join(out) + (sep if seed % 3 else b"")


PREFIXES = ["%m [%p] ", "%m [%p] %c [%v] ", "%m [%p] %q%u@%d/%a "]
#: A few seeds in the fast tier, the rest with the slow tests.
SEEDS = [pytest.param(seed, marks=[pytest.mark.slow] if seed >= 4 else []) for seed in range(12)]


def _write(tmp_path: Path, name: str, data: bytes, gz: bool) -> Path:
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_stderr_logs_read_the_same_skimmed(tmp_path, monkeypatch, seed):
    prefix = PREFIXES[seed % len(PREFIXES)]
    monkeypatch.setattr(sl, "MAX_LINE_BYTES", 1500)
    path = _write(tmp_path, f"postgresql-{seed}", _stderr_log(seed, prefix, crlf=seed % 4 == 1), gz=seed % 5 == 2)
    database = "ik_app" if seed % 2 else None
    for block in (61, 700, 1 << 16):
        for tables in (None, WATCHED, {"x": "public.WorkSpaces"}):
            skim, full = _both(monkeypatch, path, block, tables=tables, log_line_prefix=prefix, database=database)
            assert skim == full, (block, tables)
    assert full[0]["events"], "the generated log holds events"


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_jsonlogs_read_the_same_skimmed(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(sl, "MAX_LINE_BYTES", 1500)
    path = _write(tmp_path, f"postgresql-{seed}.json", _json_log(seed, crlf=seed % 4 == 1), gz=seed % 5 == 2)
    for block in (61, 700, 1 << 16):
        for tables in (None, WATCHED, {"x": "public.WorkSpaces"}):
            skim, full = _both(monkeypatch, path, block, tables=tables, database="ik_app" if seed % 3 == 0 else None)
            assert skim == full, (block, tables)
    assert full[0]["events"] and full[0]["skipped_lines"]


def test_several_files_are_one_history(tmp_path, monkeypatch):
    """A session's statements and its error in two files (a rotation) settle the same way."""
    a = _stderr_log(7, "%m [%p] %c [%v] ", n=300)
    b = _stderr_log(8, "%m [%p] %c [%v] ", n=300)
    paths = [_write(tmp_path, "postgresql-1", a, gz=False), _write(tmp_path, "postgresql-2", b, gz=True)]
    skim, full = _both(monkeypatch, paths, 333, log_line_prefix="%m [%p] %c [%v] ")
    assert skim == full


# -- the cases one by one ------------------------------------------------------------------------
def _stderr(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


W1 = "00000000-0000-4000-8000-000000000001"
W2 = "00000000-0000-4000-8000-000000000002"
P = "2025-10-08 09:41:27.118 UTC [101] 6b067680.65 [3/7] "
Q = "2025-10-08 09:41:28.118 UTC [102] 6b067680.66 [4/9] "
NOISE = [f"2025-10-08 09:41:27.200 UTC [{200 + i}] 6b067680.{200 + i:x} [9/{i}] LOG:  statement: select {i}"
         for i in range(40)]

CASES = {
    # a DELETE, then a ROLLBACK in its own transaction (failed) or after it (logged)
    "rollback same transaction": [P + f"LOG:  statement: delete from WorkSpaces where id = '{W1}'", *NOISE,
                                  P + "LOG:  statement: ROLLBACK"],
    "rollback other transaction": [P + f"LOG:  statement: delete from workspaces where id = '{W1}'", *NOISE,
                                   P.replace("[3/7]", "[3/8]") + "LOG:  statement: select 1", *NOISE,
                                   P.replace("[3/7]", "[3/8]") + "LOG:  statement: rollback"],
    # an error after a DELETE: same transaction (failed), next transaction (logged), no vxid (failed)
    "error after delete": [P + f'LOG:  statement: delete from "public"."workspaces" where id = \'{W1}\'', *NOISE,
                           P + "ERROR:  division by zero", P + "STATEMENT:  select 1/0"],
    "error in the next transaction": [P + f"LOG:  statement: delete from public.workspaces where id = '{W1}'",
                                      *NOISE, P.replace("[3/7]", "[3/8]") + "LOG:  statement: select 1", *NOISE,
                                      P.replace("[3/7]", "[3/8]") + "ERROR:  division by zero"],
    "error without vxid after the next statement": [
        P + f"LOG:  statement: delete from workspaces where id = '{W1}'", *NOISE,
        P.replace("[3/7]", "[3/8]") + "LOG:  statement: select 1", *NOISE,
        P.replace("[3/7]", "[]") + "FATAL:  terminating connection due to administrator command"],
    # sessions without vxid: the next statement settles
    "no vxid": [P.replace("[3/7]", "[]") + f"LOG:  statement: delete from workspaces where id = '{W1}'", *NOISE,
                P.replace("[3/7]", "[]") + "LOG:  statement: select 1", *NOISE,
                P.replace("[3/7]", "[]") + "ERROR:  division by zero"],
    # parameters on the DETAIL line, in another session's records
    "execute with parameters": [Q + "LOG:  execute <unnamed>: delete from workspaces where id = $1", *NOISE[:1],
                                Q + f"DETAIL:  parameters: $1 = '{W2}'", *NOISE],
    "execute with detail": [Q + "LOG:  execute <unnamed>: delete from workspaces where id = $1",
                            Q + f"DETAIL:  parameters: $1 = '{W2}'", *NOISE],
    # the table named on a continuation line only
    "continued statement": [*NOISE, P + "LOG:  statement: delete from", f"\tWORKSPACES where id = '{W1}'", *NOISE],
    # pgaudit, the statement logged once
    "pgaudit previously logged": [
        P + f"LOG:  AUDIT: SESSION,1,1,WRITE,DELETE,TABLE,public.workspaces,\"delete from workspaces where id = '{W1}'\","
        "<not logged>", *NOISE,
        P + "LOG:  AUDIT: SESSION,1,2,WRITE,DELETE,TABLE,public.workspaces,<previously logged>,<not logged>"],
    # quoted names keep their case: "Workspaces" is another table
    "quoted": [P + f'LOG:  statement: delete from "Workspaces" where id = \'{W1}\'',
               Q + f'LOG:  statement: delete from "workspaces" where id = \'{W2}\''],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("block", [50, 211, 4096])
def test_each_case_reads_the_same_skimmed(tmp_path, monkeypatch, case, block):
    lines = CASES[case]
    path = _write(tmp_path, "postgresql", _stderr(lines), gz=block == 211)
    skim, full = _both(monkeypatch, path, block, log_line_prefix="%m [%p] %c [%v] ")
    assert skim == full
    # the same records as jsonlog
    objs = []
    for line in lines:
        if line.startswith("\t"):
            objs[-1]["message"] += "\n" + line[1:]
            continue
        parts = line.split(" ", 6)  # date, time, zone, [pid], session, [vxid], "SEV:  message"
        sev, msg = parts[6].split(":  ", 1)
        obj = {"timestamp": " ".join(parts[:3]), "pid": int(parts[3][1:-1]), "session_id": parts[4]}
        if parts[5] != "[]":
            obj["vxid"] = parts[5][1:-1]
        if sev == "DETAIL":
            objs[-1]["detail"] = msg
            continue
        obj.update(error_severity=sev, message=msg)
        objs.append(obj)
    path = _write(tmp_path, "postgresql.json", "\n".join(json.dumps(o) for o in objs).encode(), gz=block == 211)
    skim_j, full_j = _both(monkeypatch, path, block)
    assert skim_j == full_j
    assert [(tuple(e["ids"]), e["failed"]) for e in full_j[0]["events"]] == EXPECTED[case] or case.startswith("pgaudit")


EXPECTED = {  # case -> [(ids, failed)] as reading every line gives them (so as the skim must)
    "rollback same transaction": [((W1,), True)],
    "rollback other transaction": [((W1,), False)],
    "error after delete": [((W1,), True)],
    "error in the next transaction": [((W1,), False)],
    "error without vxid after the next statement": [((W1,), False)],
    "no vxid": [((W1,), False)],
    "execute with parameters": [((), False)],  # the DETAIL of another line is not its parameters
    "execute with detail": [((W2,), False)],
    "continued statement": [((W1,), False)],
    "pgaudit previously logged": [((W1,), False), ((W1,), False)],
    "quoted": [((W2,), False)],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_case_gives_what_it_should(tmp_path, case):
    path = _write(tmp_path, "postgresql", _stderr(CASES[case]), gz=False)
    events = list(iter_server_log_events(path, include_failed=True, log_line_prefix="%m [%p] %c [%v] "))
    assert [(e.ids, e.failed) for e in events] == EXPECTED[case]


def test_names_that_escapes_could_split_are_read_line_by_line(tmp_path, monkeypatch):
    """A watched name holding a quote, a slash or a backslash is not searched at the byte level."""
    path = _write(tmp_path, "postgresql.json", _json_log(3), gz=False)
    reader_names = sl._reader(path, {"x": 'public."a/b"'}, None, None, False, sl.KINDS, sl.ServerLogScan())[0]
    assert not reader_names.skimmable
    skim, full = _both(monkeypatch, path, 100, tables={"x": 'public."a/b"'})
    assert skim == full


def test_only_candidates_are_decoded(tmp_path, monkeypatch):
    """The skim decodes few lines of a busy log: not those of sessions with nothing pending."""
    busy = [f"2025-10-08 09:41:27.{i % 1000:03d} UTC [{300 + i % 7}] 6b067680.{300 + i % 7:x} [5/{i}] "
            f"LOG:  statement: update documents set title = 'x' where id = {i}" for i in range(2000)]
    lines = busy[:1000] + [P + f"LOG:  statement: delete from workspaces where id = '{W1}'"] + busy[1000:]
    path = _write(tmp_path, "postgresql", _stderr(lines), gz=False)
    fed = []
    real_feed = sl._StderrMachine.feed

    def counting(self, n, text, static):
        fed.append(n)
        return real_feed(self, n, text, static)

    monkeypatch.setattr(sl._StderrMachine, "feed", counting)
    skim, full = _both(monkeypatch, path, 4096, log_line_prefix="%m [%p] %c [%v] ")
    assert skim == full and len(skim[0]["events"]) == 1
    fed.clear()
    monkeypatch.setattr(sl, "SKIM", True)
    scan_server_logs(path, log_line_prefix="%m [%p] %c [%v] ")
    assert len(fed) < 10, fed  # the first line (read to tell the format), the DELETE, its session's next


def test_a_session_end_forgets_its_audit_statement(tmp_path, monkeypatch):
    """pgaudit's ``<previously logged>`` takes the session's last AUDIT statement; a disconnection
    (of a session told by its pid, reused later) forgets it, with nothing pending in the session."""
    t = "2025-10-08 09:41:2{}.118 UTC [101] "
    lines = [t.format(1) + f"LOG:  AUDIT: SESSION,1,1,WRITE,DELETE,TABLE,public.workspaces,\"delete from workspaces "
                           f"where id = '{W1}'\",<not logged>",
             t.format(2) + "LOG:  statement: select 1", *NOISE,
             t.format(3) + "LOG:  disconnection: session time: 0:00:01.000 user=app database=ik_app", *NOISE,
             t.format(4) + "LOG:  AUDIT: SESSION,1,1,WRITE,DELETE,TABLE,public.workspaces,<previously logged>,"
                           "<not logged>"]
    path = _write(tmp_path, "postgresql", _stderr(lines), gz=False)
    skim, full = _both(monkeypatch, path, 512, log_line_prefix="%m [%p] ")
    assert skim == full and [e["line"] for e in full[0]["events"]] == [1]


@pytest.mark.parametrize("fmt", ["stderr", "json"])
def test_gzip_cut_anywhere_reads_the_same_skimmed(tmp_path, monkeypatch, fmt):
    """A gzip file cut short (a copy interrupted): what was decompressed counts, then one skipped line."""
    monkeypatch.setattr(sl, "MAX_LINE_BYTES", 1500)
    data = _stderr_log(5, "%m [%p] %c [%v] ", n=400) if fmt == "stderr" else _json_log(4, n=400)
    whole = gzip.compress(data)
    for cut in range(200, len(whole), max(1, len(whole) // 9)):
        path = tmp_path / f"cut-{cut}.gz"
        path.write_bytes(whole[:cut])
        skim, full = _both(monkeypatch, path, 512, log_line_prefix="%m [%p] %c [%v] " if fmt == "stderr" else None)
        assert skim == full, cut
        assert full[0]["skipped_lines"] >= 1


def test_the_servers_times_are_read_as_parse_time_reads_them():
    from incidentkit.evidence.logs import parse_time

    rng = random.Random(1)
    zones = ["UTC", "GMT", "CET", "CEST", "EST", "PDT", "IST", "ACST", "NZDT", "XYZ", "Z", "utc", "A"]
    for _ in range(3000):
        ts = (f"{rng.choice([1970, 2024, 2025, 9999])}-{rng.randrange(0, 14):02d}-{rng.randrange(0, 33):02d} "
              f"{rng.randrange(0, 25):02d}:{rng.randrange(0, 61):02d}:{rng.randrange(0, 61):02d}."
              f"{rng.randrange(0, 1000):03d} {rng.choice(zones)}")
        assert repr(sl._time(ts)) == repr(parse_time(ts)), ts
        assert repr(sl._time(ts)) == repr(parse_time(ts)), ts  # cached
    for odd in (None, 5, "2025-10-08 09:41:27 UTC", "2025-10-08T09:41:27.118Z", "", "1759916487.118"):
        assert repr(sl._time(odd)) == repr(parse_time(odd))


# -- the session's embedded server: its own three logs, whatever the session has written so far ----
@pytest.mark.slow
def test_the_embedded_servers_logs_read_the_same_skimmed(pg_server, fresh_db, monkeypatch, tmp_path):
    """Two sessions interleaved on a real server with ``log_statement = 'all'``: mixed-case and
    quoted names, a DELETE rolled back, one failed by an error, one followed by a ROLLBACK of a
    later transaction, parameters on DETAIL lines; then the server's stderr (no vxid in its
    prefix), csvlog and jsonlog read both ways."""
    import time
    import uuid

    import psycopg

    db = fresh_db.rsplit("/", 1)[1]
    with pg_server.admin() as conn:
        conn.execute(f'alter database "{db}" set log_statement = \'all\'')
    ids = [str(uuid.uuid4()) for _ in range(8)]
    marker = str(uuid.uuid4())
    with psycopg.connect(fresh_db, autocommit=True) as a, psycopg.connect(fresh_db, autocommit=True) as b:
        for i in ids:
            a.execute("insert into workspaces (id, name) values (%s, 'x')", (i,))
        a.execute("begin")
        a.execute(f"DELETE FROM WorkSpaces WHERE id = '{ids[0]}'")
        b.execute('delete from "public"."workspaces" where "workspaces"."id" = %s', (ids[1],))
        a.execute("rollback")
        b.execute("begin")
        b.execute("delete from PUBLIC.workspaces where id = %s", (ids[2],))
        with pytest.raises(psycopg.errors.DivisionByZero):
            b.execute("select 1 / 0")
        b.execute("rollback")
        a.execute(f"delete from workspaces where id = '{ids[3]}'")
        a.execute("begin")
        a.execute("select 1")
        a.execute("ROLLBACK")
        b.execute("delete from workspaces where id = any(%s::uuid[])", ([ids[4], ids[5]],))
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute(f"delete from workspaces where id = '{marker}'")
    logs = [pg_server.log_dir / f for f in ("postgresql", "postgresql.csv", "postgresql.json")]
    for _ in range(200):  # the logging collector writes asynchronously
        if all(marker in p.read_text(errors="replace") for p in logs if p.exists()):
            break
        time.sleep(0.05)
    for path in [p for p in logs if p.exists()]:
        copy = tmp_path / path.name  # the server goes on writing: read a copy
        copy.write_bytes(path.read_bytes())
        for block in (333, 4 << 20):
            skim, full = _both(monkeypatch, copy, block, database=db)
            assert skim == full, (path.name, block)
        events = full[0]["events"]
        assert {i for e in events if e["kind"] == "delete" and not e["failed"] for i in e["ids"]} >= {
            ids[1], ids[3], ids[4], ids[5]}, path.name
        # without a vxid (this stderr prefix) the error's statement, logged first, settles the DELETE
        failed = {ids[0]} if path.name == "postgresql" else {ids[0], ids[2]}
        assert {i for e in events if e["failed"] for i in e["ids"]} >= failed, path.name
