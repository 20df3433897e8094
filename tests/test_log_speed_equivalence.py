"""Byte-level skimming finds exactly what reading every line finds (issue 13, item 1).

Every format is skimmed: lines far from a candidate record (one holding the error text) are
passed over unparsed. These tests run each scan twice, skimmed and with ``SKIM = False`` (every
line parsed), and compare everything a scan reports: the failures, the skipped-line count and
each file's read record (lines, bytes, SHA-256...). On every sample log (damaged ones included)
and on generated logs of every family made of the samples' own lines mixed with the hard cases:
needles split across read blocks, multi-line records, CRLF, BOMs, gzip, blank runs, overlong,
binary, invalid and non-ASCII lines.
"""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

import pytest

from incidentkit.evidence import logs
from incidentkit.evidence.logs import LogScan, scan_logs
from incidentkit.exceptions import LogReadError

SAMPLES = Path(__file__).resolve().parent / "samples" / "logs"
EVERY_SAMPLE = sorted(p for p in SAMPLES.rglob("*") if p.is_file())

#: The samples each family's generated logs are made of.
FAMILY_SAMPLES = {
    "text": ["app/next-server.log"],
    "jsonl": ["drains/datadog.jsonl", "drains/vercel.jsonl", "drains/app-pino.jsonl"],
    "pg_stderr": ["postgres/postgresql", "server/postgresql"],
    "pg_csv": ["postgres/postgresql.csv", "server/postgresql.csv"],
    "pg_json": ["postgres/postgresql.json", "server/postgresql.json"],
}
FK = 'violates foreign key constraint "users_primary_workspace_id_workspaces_id_fk"'


@pytest.mark.parametrize("sample", EVERY_SAMPLE, ids=lambda p: str(p.relative_to(SAMPLES)))
@pytest.mark.parametrize("block", [64, 4096, 1 << 20])
def test_every_sample_skimmed_as_read_line_by_line(monkeypatch, sample, block, scans):
    monkeypatch.setattr(logs, "READ_BLOCK", block)
    scans.same(*scans.both_ways(sample))


def test_every_sample_at_once(monkeypatch, scans):
    """All the samples in one scan (their order, the counts summed over files)."""
    skimmed, full = scans.both_ways(SAMPLES)
    assert len(full.files) == len(list(logs.iter_log_files(SAMPLES))) > 20
    scans.same(skimmed, full)


# -- generated logs ---------------------------------------------------------------------------------
def hard_line(rng: random.Random, family: str) -> str:
    """A line that is hard for a skim: damaged, cut, look-alike, odd whitespace or bytes."""
    ts = f"2025-10-08 14:0{rng.randint(0, 9)}:{rng.randint(10, 59)}.{rng.randint(100, 999)} UTC"
    choices = [
        "", " \t ", "\x0c", "\u00a0\u2003", "\ufeff" + ts + " [1] LOG:  bom", "caf\u00e9 \u00fcber \u4e2d\u6587",
        "not a log line at all", "{broken json", '{"a": 1}, {"b": 2}', "[]", "[1, 2]", '"just a string"',
        f"error: insert or update on table \"users\" {FK[:rng.randint(3, len(FK))]}",  # cut in the needle
        f"{ts} [9] postgres@db/web ERROR:  {FK}",  # the needle in another format's shape
        "\tcontinued detail line", f"{ts} [7] postgres@db/web DETAIL:  Key (id)=(x) is still referenced",
        f'{ts},"u","db",1,"h",s,1,"I",{ts},3/1,0,LOG,00000,"multi\nline ""quoted"" message",,,,,,,,,"web","client backend",,0',
        '{"message": "insert \\u0076iolates foreign key constraint \\"users_primary_workspace_id_workspaces_id_fk\\"", '
        '"error_severity": "ERROR", "timestamp": "2025-10-08 14:00:00.000 UTC"}',
        '{"timestamp": "2025-10-08T14:00:01.000Z", "message": "line one\\nline two\\ncontinued"}',
        "2025-10-08T14:00:02.000Z info user=did:privy:cmhard0001 GET /",
        "x" * rng.randint(100, 9000),  # overlong when the limit is lowered
    ]
    if family == "pg_csv":
        choices += [f'{ts},"u","db",1,"h",s,1,"I",{ts},3/1,0,ERROR,23503,"open quote never closed',
                    f'{ts},"u","db",1,"h",s,1,LOG,"too few columns"', f'{ts},"u","bad"quote",1,2,3,4,5,6,7,8,9,0,1,2']
    return rng.choice(choices)


def generated_log(rng: random.Random, family: str, records: int) -> bytes:
    """The family's samples cut into runs of lines, repeated and shuffled, with hard lines between."""
    lines: list[str] = []
    for name in FAMILY_SAMPLES[family]:
        lines.extend((SAMPLES / name).read_text(encoding="utf-8", errors="replace").splitlines())
    quiet = [x for x in lines if "violates" not in x]
    out = (lines * (1 + 40 // len(lines)))[:40]  # a clean head: the format is sniffed right
    while len(out) < records:
        r = rng.random()
        if r < 0.45:
            k = rng.randrange(len(lines))
            out.extend(lines[k:k + rng.randint(1, 12)])  # a run of the sample (records whole or cut)
        elif r < 0.7:
            out.extend(rng.choice(quiet) for _ in range(rng.randint(20, 200)))  # a stretch to skim
        elif r < 0.97:
            out.append(hard_line(rng, family))
        else:
            out.append("\n" * rng.randint(1, 60))  # a blank run
    text = "\n".join(out) + "\n"
    if rng.random() < 0.25:
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    for _ in range(rng.randint(0, 3)):  # invalid UTF-8, NUL bytes, an ANSI escape
        k = rng.randrange(len(data))
        data = data[:k] + rng.choice([b"\xff\xfe", b"\x00", b"\x1b[31m", b"\xc3"]) + data[k:]
    if rng.random() < 0.3:  # no newline at the end
        data = data.rstrip(b"\r\n") + b" tail"
    return data


@pytest.mark.parametrize("family", sorted(FAMILY_SAMPLES))
@pytest.mark.parametrize("seed", range(6))
def test_generated_logs_skimmed_as_read_line_by_line(tmp_path, monkeypatch, family, seed, scans):
    rng = random.Random(f"{family}-{seed}")
    data = generated_log(rng, family, rng.randint(2000, 8000))
    path = tmp_path / ("big.log" + (".gz" if seed % 3 == 2 else ""))
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    # small blocks put needles and records across block boundaries; a lowered line limit makes
    # the long hard lines overlong (skimming needs a block no longer than the line limit)
    block = rng.choice([97, 512, 4096, 1 << 16])
    monkeypatch.setattr(logs, "READ_BLOCK", block)
    monkeypatch.setattr(logs, "MAX_LINE_BYTES", max(block, rng.choice([2048, 8192, 1 << 20])))
    monkeypatch.setattr(logs, "_NUMPY_MIN_BYTES", 0 if seed % 2 else 1 << 16)  # small blocks vectorised too
    skimmed, full = scans.both_ways(path)
    assert full.file_reads[0].format == family
    assert full.failures, "the generated log holds failures"
    scans.same(skimmed, full)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILY_SAMPLES))
def test_larger_generated_logs_in_one_megabyte_blocks(tmp_path, monkeypatch, family, scans):
    """Logs of several read blocks at the real block size (about 6 MB each)."""
    rng = random.Random(f"large-{family}")
    path = tmp_path / "large.log"
    path.write_bytes(generated_log(rng, family, 60_000))
    skimmed, full = scans.both_ways(path)
    assert full.file_reads[0].format == family and full.file_reads[0].size > 3 * logs.READ_BLOCK
    scans.same(skimmed, full)


# -- the skim does skip work -------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILY_SAMPLES))
def test_skimming_passes_over_lines_of_every_format(tmp_path, monkeypatch, family, scans):
    """Far fewer lines reach the format's parser than the file holds, the results unchanged."""
    rng = random.Random(family)
    lines: list[str] = []
    for name in FAMILY_SAMPLES[family]:
        lines.extend((SAMPLES / name).read_text(encoding="utf-8").splitlines())
    quiet = [x for x in lines if "violates" not in x and x.strip() and "\t" not in x[:1]]
    if family == "pg_csv":
        quiet = [x for x in quiet if x.count('"') % 2 == 0 and x[:4].isdigit()]
    body = lines[:40] + [rng.choice(quiet) for _ in range(20000)] + lines + [rng.choice(quiet) for _ in range(20000)]
    path = tmp_path / "quiet.log"
    path.write_text("\n".join(body) + "\n", encoding="utf-8")

    fed = []

    def counting(units):
        for unit in units:
            fed.append(unit)
            yield unit

    real_parser = logs._PARSERS[family]
    monkeypatch.setitem(logs._PARSERS, family, lambda lines, ctx: real_parser(counting(lines), ctx))
    real_csv = logs._csv_records
    monkeypatch.setattr(logs, "_csv_records", lambda units, ctx: real_csv(counting(units), ctx))
    skimmed = scan_logs(path)
    seen = len(fed)
    skimmed_fed, fed[:] = seen, []
    with monkeypatch.context() as m:
        m.setattr(logs, "SKIM", False)
        full = scan_logs(path)
    assert full.file_reads[0].format == family and full.failures
    scans.same(skimmed, full)
    assert skimmed_fed < len(body) // 10 < len(fed)


# -- several files: one process each at a time ------------------------------------------------------
def test_several_files_in_processes_as_in_one(tmp_path, monkeypatch, scans):
    """Scanned in worker processes, several files give what one process gives, in file order."""
    rng = random.Random("several")
    for i, family in enumerate(sorted(FAMILY_SAMPLES) * 2):
        data = generated_log(rng, family, 1500)
        name = f"{i:02d}-{family}.log" + (".gz" if i % 4 == 3 else "")
        (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    one = scan_logs(tmp_path)
    monkeypatch.setattr(logs, "PARALLEL_MIN_BYTES", 0)
    assert logs._parallel_workers(list(logs.iter_log_files(tmp_path))) == min(2, len(os.sched_getaffinity(0)))
    several = scan_logs(tmp_path)
    assert len(one.files) == 10 and one.failures
    scans.same(several, one)
    assert several.files == one.files


def test_the_first_failing_file_among_several_fails_the_scan(tmp_path, monkeypatch):
    """An error in a worker (a file that cannot be read) is raised as a scan in one process
    raises it: the first in file order."""
    monkeypatch.setattr(logs, "PARALLEL_MIN_BYTES", 0)
    for name in ("a.log", "b.log", "c.log", "d.log"):
        (tmp_path / name).write_bytes((SAMPLES / "app/next-server.log").read_bytes())
    real = logs._file_failures

    def failing(path, ctx):  # the workers are forked: they run this
        if path.name in ("b.log", "d.log"):
            raise LogReadError(f"cannot open log file {path.name}: permission denied")
        return real(path, ctx)

    monkeypatch.setattr(logs, "_file_failures", failing)
    with pytest.raises(LogReadError, match="b.log: permission denied"):
        scan_logs(tmp_path)


# -- one large file: read in parts, one per worker --------------------------------------------
def split_everything(monkeypatch) -> None:
    """Any file is large enough to be read in parts by two workers."""
    monkeypatch.setattr(logs, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(logs, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(logs, "PARALLEL_WORKERS", 2)
    monkeypatch.setattr(logs, "_parallel_workers", lambda files: 2)  # the test needs two, whatever the cores


def in_one_process(path, monkeypatch) -> LogScan:
    with monkeypatch.context() as m:
        m.setattr(logs, "PARALLEL_WORKERS", 1)
        m.setattr(logs, "_parallel_workers", lambda files: 1)
        return scan_logs(path)


def parts_of(path) -> list:
    return logs._plan([path], 2, logs.DEFAULT_FOREIGN_KEY)[0]


@pytest.mark.parametrize("family", ["text", "jsonl", "pg_stderr", "pg_json"])
@pytest.mark.parametrize("seed", range(3))
def test_a_file_read_in_parts_gives_what_one_read_gives(tmp_path, monkeypatch, family, seed, scans):
    """Two workers, each a part of one file starting at a quiet line, find exactly the failures,
    line numbers, skipped lines and read record (SHA-256 included) of one process reading it all."""
    rng = random.Random(f"parts-{family}-{seed}")
    path = tmp_path / f"{family}.log"
    path.write_bytes(generated_log(rng, family, 6000))
    one = in_one_process(path, monkeypatch)
    split_everything(monkeypatch)
    parts = parts_of(path)
    assert len(parts) == 2 and parts[0].start == 0 and parts[0].stop == parts[1].start
    assert parts[1].stop == path.stat().st_size
    several = scan_logs(path)
    assert one.failures
    scans.same(several, one)
    assert several.files == one.files and several.other_constraints == one.other_constraints


def every_150th_a_failure(n: int) -> str:
    """A text log whose failures come every 150 lines, each after the one line naming its user:
    wherever the second part starts, its first failure's user and time lie just before it."""
    out = []
    for i in range(n):
        if i % 150 == 148:
            out.append(f"2025-10-08T14:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 1000:03d}Z "
                       f"warn login user=did:privy:user{i:06d}")
        elif i % 150 == 149:
            out.append(f'error: insert or update on table "users" {FK}')
            out.append(f'Detail: Key (primary_workspace_id)=(ws-{i:06d}) is not present in table "workspaces".')
        else:
            out.append(f"    at step {i} (node:internal/process/task_queues:95:5)")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("cut", [0.31, 0.5, 0.52, 0.77])
def test_the_second_part_reads_the_lines_before_it_first(tmp_path, monkeypatch, cut, scans):
    """The part starts where the lines before it hold no error text, and its worker reads the
    lines before it first: the user and the time of its first failure are there."""
    path = tmp_path / "app.log"
    path.write_text(every_150th_a_failure(6000))
    one = in_one_process(path, monkeypatch)
    assert len(one.failures) == 40 and all(f.user_id and f.at for f in one.failures)
    split_everything(monkeypatch)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        start, primer = logs._quiet_start(fh, int(size * cut), "text")
    data = path.read_bytes()
    assert len(primer) == logs._PRIMER_LINES and not any("violates" in (text or "") for text in primer)
    assert list(primer) == data[:start].decode().split("\n")[-1 - len(primer):-1]
    monkeypatch.setattr(logs, "_split_file", lambda p, sz, w, fk: [
        logs._Part(p, 0, start, "text"), logs._Part(p, start, sz, "text", primer)])
    scans.same(scan_logs(path), one)
    # without the lines before it, the part's first failure would lose its user (and time)
    monkeypatch.setattr(logs, "_split_file", lambda p, sz, w, fk: [
        logs._Part(p, 0, start, "text"), logs._Part(p, start, sz, "text", ())])
    unprimed = scan_logs(path)
    first_after = next(f for f in one.failures if data.count(b"\n", 0, start) < f.line)
    assert data.count(b"\n", 0, start) == first_after.line - 1  # the part starts on its error line
    assert [f.to_dict() for f in unprimed.failures] != [f.to_dict() for f in one.failures]


def test_no_quiet_line_no_parts(tmp_path, monkeypatch, scans):
    """A text log with an error line every few lines has no quiet start: it is read whole."""
    path = tmp_path / "dense.log"
    path.write_text("".join(f"2025-10-08T14:03:22.{i % 1000:03d}Z error user=did:privy:u{i}\n"
                            f"error: {FK}\n" for i in range(5000)))
    split_everything(monkeypatch)
    assert parts_of(path) == [logs._Part(path)]
    scans.same(scan_logs(path), in_one_process(path, monkeypatch))


def test_compressed_and_csv_files_are_read_whole(tmp_path, monkeypatch, scans):
    split_everything(monkeypatch)
    rng = random.Random("whole")
    gz = tmp_path / "app.log.gz"
    gz.write_bytes(gzip.compress(generated_log(rng, "text", 3000)))
    csv_log = tmp_path / "postgresql.csv"
    csv_log.write_bytes(generated_log(rng, "pg_csv", 3000))
    assert parts_of(gz) == [logs._Part(gz)] and parts_of(csv_log) == [logs._Part(csv_log)]
    scans.same(scan_logs(tmp_path), in_one_process(tmp_path, monkeypatch))


def test_wherever_a_part_may_start_the_failures_are_the_same(tmp_path, monkeypatch, scans):
    """For even shares falling anywhere (inside a record, on its error line, in its detail), the
    start the plan picks leaves every record whole: the same failures as one read."""
    out = []
    for i in range(6000):
        ts = f"2025-10-08T14:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 1000:03d}Z"
        if i % 200 == 199:
            out += [f"{ts} error user=did:privy:user{i:05d}", f"error: insert or update on table \"users\" {FK}",
                    f'Detail: Key (primary_workspace_id)=(ws-{i:05d}) is not present in table "workspaces".']
        else:
            out.append(f"{ts} info  GET /api/health 200 {i}ms")
    path = tmp_path / "app.log"
    path.write_text("\n".join(out) + "\n")
    one = in_one_process(path, monkeypatch)
    assert len(one.failures) == 30 and all(f.workspace_id and f.user_id for f in one.failures)
    split_everything(monkeypatch)
    size = path.stat().st_size
    data = path.read_bytes()
    starts = set()
    for k in range(1, 60):
        with open(path, "rb") as fh:
            found = logs._quiet_start(fh, size * k // 60, "text")
        assert found is not None
        start, primer = found
        starts.add(start)
        assert data[start - 1:start] == b"\n"
        before = data[:start].split(b"\n")[:-1][-logs._PRIMER_LINES:]
        assert b"violates" not in b"\n".join(before)
        assert len(primer) == logs._PRIMER_LINES or len(primer) == data.count(b"\n", 0, start)  # or all from the top
        monkeypatch.setattr(logs, "_split_file", lambda p, sz, w, fk, s=start, pr=primer: [
            logs._Part(p, 0, s, "text"), logs._Part(p, s, sz, "text", pr)])
        scans.same(scan_logs(path), one)
    assert len(starts) > 25


# -- the vector checks of a block, against the parser's own regex ------------------------------
STDERR_TRICKS = [
    "2025-10-08 14:03:22.481 UTC [39055] postgres@incident_app/web LOG:  execute <unnamed>: select 1",
    "2025-10-08 14:03:22.481 UTC [39055] postgres@incident_app/web DETAIL:  parameters: $1 = 'x'",
    "2025-10-08 14:03:22 UTC [1] ERROR:  boom", "2025-10-08 14:03:22+02 [1] WARNING:  w",
    "2025-10-08 14:03:22.481 UTC [1] DEBUG3:  d", "2025-10-08 14:03:22.481 UTC [1] DEBUG6:  not a level",
    "2025-10-08 14:03:22.481 UTC [1] XLOG:  no boundary", "2025-10-08 14:03:22.481 UTC [1]_LOG:  underscore",
    "2025-10-08 14:03:22.481 UTC [1] LOG: one space", "2025-10-08 14:03:22.481 UTC [1] log:  lower case",
    "2025-10-08 14:03:22.481 UTC [1] caf\u00e9LOG:  accent before", "2025-10-08 14:03:22.481 UTC [1] \u2192LOG:  arrow",
    "2025-10-08 14:03:22LOG:  glued", "2025-10-08 14:03:2 UTC [1] LOG:  short second", "2025-1O-08 14:03:22 [1] LOG:  letter O",
    "\tcontinued STATEMENT:  inside a tab line", "\tLOG:  only a tab line", "   LOG:  indented",
    "no timestamp ERROR:  x", "", " ", "2025-10-08 14:03:22.481 UTC [1] prefix: LOG:  two markers ERROR:  x",
    "2025-10-08 14:03:22.481 UTC [1] HINT:", "2025-10-08 14:03:22.481 UTC [1] QUERY:  ", "2025-10-08 14:03:22.481 UTC",
    "\u0662\u0660\u0662\u0665-10-08 14:03:22 [1] LOG:  arabic digits",
]


def _truth_stderr(lines: list[str]) -> bool:
    return all(t.startswith("\t") or logs._STDERR_LINE.match(t) is not None for t in lines)


@pytest.mark.parametrize("seed", range(40))
def test_the_stderr_vector_check_agrees_with_the_regex(monkeypatch, seed):
    """``_Block.all_stderr_lines`` says yes exactly when every line is a tab continuation or a log
    line as the parser's regex reads it (it may say no more often: then the lines are read one by one,
    but on these lines it must not)."""
    monkeypatch.setattr(logs, "_NUMPY_MIN_BYTES", 0)
    rng = random.Random(f"stderr-{seed}")
    good = [t for t in STDERR_TRICKS if _truth_stderr([t])]
    lines = [rng.choice(good) for _ in range(rng.randint(1, 30))]
    if seed % 2:
        lines[rng.randrange(len(lines))] = rng.choice(STDERR_TRICKS)
    head = "2025-10-08 14:03:22.481 UTC [1] LOG:  first line of the block\n"
    data = bytearray((head + "\n".join(lines) + "\n").encode())
    block = logs._Block(data, 0, len(data))
    assert block.skimmable_from == len(head.encode())
    assert_vector_verdict(block.all_stderr_lines(block.skimmable_from, len(data)), lines)


def assert_vector_verdict(said: bool, lines: list[str]) -> None:
    """Exactly the regex's verdict on ASCII lines; elsewhere never a yes the regex would not give
    (a \\d or \\b of a str pattern also takes other scripts' digits and letters: those lines are read)."""
    if all(t.isascii() for t in lines):
        assert said == _truth_stderr(lines)
    else:
        assert not said or _truth_stderr(lines)


@pytest.mark.parametrize("tricky", [t for t in STDERR_TRICKS if not t.startswith("\t")])
def test_each_stderr_trick_alone(monkeypatch, tricky):
    monkeypatch.setattr(logs, "_NUMPY_MIN_BYTES", 0)
    head = "2025-10-08 14:03:22.481 UTC [1] LOG:  first\n"
    data = bytearray((head + tricky + "\n").encode())
    block = logs._Block(data, 0, len(data))
    if block.skimmable_from < len(data):  # a clean block (the vector path applies)
        assert_vector_verdict(block.all_stderr_lines(block.skimmable_from, len(data)), [tricky])


@pytest.mark.parametrize("lines, braced", [
    (['{"a": 1}', '{"b": 2}'], True), (['{"a": 1}', ''], False), (['{"a": 1}', ' {"b": 2}'], False),
    (['{"a": 1} ', '{"b": 2}'], False), (['[{"a": 1}]'], False), (['{'], False), (['}'], False), (['{}'], True),
])
def test_the_json_frame_check(monkeypatch, lines, braced):
    monkeypatch.setattr(logs, "_NUMPY_MIN_BYTES", 0)
    head = '{"first": true}\n'
    data = bytearray((head + "\n".join(lines) + "\n").encode())
    block = logs._Block(data, 0, len(data))
    assert block.all_braced(block.skimmable_from, len(data)) == braced
    monkeypatch.setattr(logs, "_numpy", lambda: None)  # the same answer without NumPy
    assert logs._Block(data, 0, len(data)).all_braced(len(head), len(data)) == braced


@pytest.mark.parametrize("first, then", [
    ("2025-10-08 14:03:22.481 UTC [1] no severity here", "\tcontinued STATEMENT:  inside a tab line"),
    ("2025-10-08 14:03:22.481 UTC [1] no severity here", "\tLOG:  only a tab line"),
    ("2025-10-08 14:03:22.481 UTC [1] LOG:  fine", "\tLOG:  a tab line"),
])
def test_a_severity_in_the_tab_line_after_does_not_make_a_log_line(monkeypatch, first, then):
    monkeypatch.setattr(logs, "_NUMPY_MIN_BYTES", 0)
    head = "2025-10-08 14:03:22.481 UTC [1] LOG:  first\n"
    after = "2025-10-08 14:03:23.000 UTC [1] LOG:  a log line after"
    data = bytearray((head + first + "\n" + then + "\n" + after + "\n").encode())
    block = logs._Block(data, 0, len(data))
    assert block.all_stderr_lines(block.skimmable_from, len(data)) == _truth_stderr([first, then, after])
