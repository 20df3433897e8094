"""Reading logs stays bounded whatever they hold (issue 15, defect 2).

The hostile inputs are scanned in a child process under a hard address-space limit
(``RLIMIT_AS``): the child imports the kit, measures its own address space, then allows the
scan only SCAN_BUDGET more. Before the fix, 100 MB of blank lines took 7.8 GB.
Also here: the line splitter against a plain reference, blank runs against a line-by-line
parse, and the per-file read record (lines, skips, size, SHA-256).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from incidentkit.evidence import logs
from incidentkit.evidence.logs import DEFAULT_CONSTRAINT, LogScan, iter_failures, scan_logs
from incidentkit.exceptions import LogReadError

SAMPLES = Path(__file__).resolve().parent / "samples" / "logs"
MiB = 1 << 20
#: What a scan may add to the child's address space: about 75 MiB whatever the file, most of it
#: reserved, not used: the digest thread's stack and malloc arena (NumPy, which the scan imports
#: on first use, is loaded before the budget is set).
SCAN_BUDGET = 128 * MiB
#: What it may add to the memory actually used (resident).
RSS_BUDGET = 48 * MiB
FK_TEXT = f'insert or update on table "users" violates foreign key constraint "{DEFAULT_CONSTRAINT}"'
USER, WORKSPACE = "did:privy:cmgiqkpg0001wl40cqhofcvo4", "a7189b92-ba75-4160-8fa0-426bfe8fa33a"

# The child: limit the address space, scan, print one JSON line (the result or the error).
_CHILD = r"""
import json, resource, sys
from incidentkit.evidence import logs

def vm(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

path, budget, pipe_seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
logs.PIPE_OPEN_SECONDS = pipe_seconds
logs._numpy()  # a fixed cost (~80-120 MiB of address space, mostly reserved), not the scan's: loaded first
base, base_rss = vm("VmSize"), vm("VmHWM")
resource.setrlimit(resource.RLIMIT_AS, (base + budget, base + budget))
try:
    scan = logs.scan_logs(path)
except logs.LogReadError as e:
    out = {"error": str(e)}
except MemoryError:
    out = {"error": "MemoryError"}
else:
    out = {"failures": len(scan.failures), "skipped": scan.skipped_lines,
           "reads": [r.to_dict() for r in scan.file_reads]}
out["grew"], out["rss_grew"] = vm("VmPeak") - base, vm("VmHWM") - base_rss
print(json.dumps(out))
"""


def scan_in_child(path: Path | str, pipe_seconds: float = 5.0, fails: bool = False) -> dict:
    """Scan ``path`` in a fresh interpreter allowed SCAN_BUDGET more address space than at start."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(SCAN_BUDGET), str(pipe_seconds)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ("error" in result) == fails, result
    assert result["grew"] < SCAN_BUDGET and result["rss_grew"] < RSS_BUDGET
    return result


@pytest.fixture
def scratch(tmp_path):
    """A folder for files of hundreds of MB, emptied afterwards (pytest keeps its temporary folders)."""
    yield tmp_path
    for p in tmp_path.iterdir():
        if p.is_file():
            p.unlink()


def write_repeated(path: Path, chunk: bytes, total: int, head: bytes = b"") -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        for _ in range(total // len(chunk)):
            fh.write(chunk)
    return path


def error_record(ts: str) -> bytes:
    return (f"{ts} info request user={USER}\n{ts} error: {FK_TEXT}\n"
            f'Detail: Key (primary_workspace_id)=({WORKSPACE}) is not present in table "workspaces".\n').encode()


# -- hostile inputs under a hard memory limit ---------------------------------------------------
def test_a_normal_scan_fits_the_budget_with_room_to_spare():
    result = scan_in_child(SAMPLES / "app" / "next-server.log")
    assert result["failures"] == 4 and result["skipped"] == 0
    assert result["grew"] < SCAN_BUDGET // 2


def test_100_mb_of_blank_lines(scratch):
    path = write_repeated(scratch / "blank.log", b"\n" * MiB, 100 * MiB,
                          head=error_record("2025-10-08T14:03:22.481Z"))
    result = scan_in_child(path)
    assert result["failures"] == 1 and result["skipped"] == 0
    [read] = result["reads"]
    assert read["lines"] == 3 + 100 * MiB and read["format"] == "text"


def test_one_200_mb_line_without_newline(scratch):
    path = write_repeated(scratch / "one-line.log", b"x" * MiB, 200 * MiB)
    result = scan_in_child(path)
    assert result["failures"] == 0 and result["skipped"] == 1
    assert result["reads"][0]["lines"] == 1 and result["reads"][0]["bytes_read"] == 200 * MiB


def test_binary_with_and_without_newlines(scratch):
    rng = random.Random(15)
    noise = rng.randbytes(MiB)
    path = write_repeated(scratch / "binary.log", noise, 40 * MiB, head=error_record("2025-10-08T14:03:22.481Z"))
    result = scan_in_child(path)
    assert result["failures"] == 1 and result["skipped"] > 0


def test_a_quoted_csvlog_field_that_never_closes(scratch):
    """A csvlog record left open by a quote, then 100 MB of blank lines: cut at MAX_CSV_RECORD_LINES."""
    head = b'2025-10-08 14:00:00.000 UTC,"app","app",1,"[local]",x,1,"INSERT",,,0,ERROR,23503,"open\n'
    path = write_repeated(scratch / "postgresql.csv", b"\n" * MiB, 100 * MiB, head=head)
    result = scan_in_child(path)
    assert result["reads"][0]["format"] == "pg_csv"
    assert result["skipped"] == logs.MAX_CSV_RECORD_LINES + 1


@pytest.mark.slow
def test_indented_lines_do_not_fill_the_format_sniffing(scratch):
    path = write_repeated(scratch / "stack.log", b"    at Object.<anonymous> (/srv/app.js:1:1)\n" * 1000,
                          20 * MiB, head=b"\n" * 100)
    result = scan_in_child(path)
    assert result["failures"] == 0 and result["skipped"] == 0
    assert result["reads"][0]["lines"] > 400_000


@pytest.mark.slow
def test_gzip_bomb_of_newlines(scratch):
    """1 GiB of newlines in 1 MB of gzip, streamed block by block."""
    path = scratch / "bomb.log.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(error_record("2025-10-08T14:03:22.481Z"))
        newlines = b"\n" * (4 * MiB)
        for _ in range(256):
            fh.write(newlines)
        fh.write(error_record("2025-10-08T15:00:00.000Z"))
    assert path.stat().st_size < 2 * MiB
    result = scan_in_child(path)
    assert result["failures"] == 2 and result["skipped"] == 0
    [read] = result["reads"]
    assert read["compressed"] and read["lines"] == 6 + 1024 * MiB
    assert read["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_dev_zero_is_refused_at_once():
    result = scan_in_child("/dev/zero", fails=True)
    assert result["error"] == "cannot read log file /dev/zero: a character device, not a regular file or a pipe"


def test_a_named_pipe_nobody_writes_to_fails_instead_of_hanging(tmp_path):
    fifo = tmp_path / "nobody.log"
    os.mkfifo(fifo)
    result = scan_in_child(fifo, pipe_seconds=0.5, fails=True)  # the child's own wait; the default is 5 s
    assert result["error"] == (f"nothing was written to log pipe {fifo} within 0.5 s "
                               "(is anything writing to it?)")


@pytest.mark.slow
def test_a_named_pipe_nobody_writes_to_with_the_default_wait(tmp_path):
    fifo = tmp_path / "nobody.log"
    os.mkfifo(fifo)
    result = scan_in_child(fifo, fails=True)
    assert "nothing was written to log pipe" in result["error"] and "within 5 s" in result["error"]


def test_a_pipe_that_falls_silent_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "PIPE_IDLE_SECONDS", 0.3)
    fifo = tmp_path / "stalled.log"
    os.mkfifo(fifo)
    release = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as fh:
            fh.write(error_record("2025-10-08T14:03:22.481Z"))
            fh.flush()
            release.wait(timeout=30)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(LogReadError, match=r"log pipe .*stalled\.log sent nothing for 0\.3 s"):
            scan_logs(fifo)
    finally:
        release.set()
        thread.join(timeout=10)


def test_a_pipe_is_read_to_its_end_with_its_digest(tmp_path):
    fifo = tmp_path / "piped.log"
    os.mkfifo(fifo)
    payload = error_record("2025-10-08T14:03:22.481Z") + b"\n" * 5000 + error_record("2025-10-08T14:04:00.000Z")

    def writer() -> None:
        with open(fifo, "wb") as fh:
            for i in range(0, len(payload), 999):
                fh.write(payload[i:i + 999])
                fh.flush()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    scan = scan_logs(fifo)
    thread.join(timeout=10)
    assert len(scan.failures) == 2
    [read] = scan.file_reads
    assert (read.size, read.bytes_read, read.lines) == (None, len(payload), 5006)
    assert read.sha256 == hashlib.sha256(payload).hexdigest()


# -- what each file's read amounted to ----------------------------------------------------------
def test_file_reads_count_lines_and_skips_per_file_with_a_digest():
    paths = [SAMPLES / "damaged" / "next-server-damaged.log", SAMPLES / "damaged" / "postgresql-cut-off.gz",
             SAMPLES / "postgres" / "postgresql.csv"]
    scan = scan_logs(paths)
    by_name = {Path(r.path).name: r for r in scan.file_reads}
    assert [r.path for r in scan.file_reads] == scan.files
    assert sum(r.skipped_lines for r in scan.file_reads) == scan.skipped_lines
    for path in paths:
        read = by_name[path.name]
        data = path.read_bytes()
        assert read.size == read.bytes_read == len(data)
        assert read.sha256 == hashlib.sha256(data).hexdigest()  # the cut gzip's too: read to its end
    assert by_name["next-server-damaged.log"].skipped_lines == 8
    assert by_name["next-server-damaged.log"].lines == len(paths[0].read_bytes().splitlines())
    assert by_name["postgresql-cut-off.gz"].compressed and by_name["postgresql-cut-off.gz"].skipped_lines == 1
    assert by_name["postgresql.csv"].format == "pg_csv" and by_name["postgresql.csv"].skipped_lines == 0
    assert json.loads(json.dumps(scan.to_dict()))["file_reads"][0]["path"] == scan.files[0]


def test_a_growing_file_is_read_up_to_its_size_at_open(tmp_path):
    path = tmp_path / "growing.log"
    path.write_bytes(error_record("2025-10-08T14:03:22.481Z") + b"2025-10-08T14:03:23.000Z info next\n")
    size = path.stat().st_size
    stream = iter_failures(path, stats=(stats := LogScan()))
    with open(path, "ab") as fh:
        first = next(stream)  # the file is open now
        fh.write(error_record("2025-10-08T14:04:00.000Z"))
    assert list(stream) == [] and first.user_id == USER
    assert stats.file_reads[0].bytes_read == size


def test_a_directory_walk_leaves_out_pipes_and_devices(tmp_path):
    (tmp_path / "app.log").write_bytes(error_record("2025-10-08T14:03:22.481Z"))
    os.mkfifo(tmp_path / "pipe.log")
    assert [Path(p).name for p in scan_logs(tmp_path).files] == ["app.log"]


# -- the splitter against a reference ----------------------------------------------------------
def reference_lines(data: bytes, max_line: int) -> tuple[list[tuple[int, str]], int]:
    """Every line as the old line-by-line reader saw it: (number, text) of good lines, skips."""
    parts = data.split(b"\n")
    terminated = [True] * (len(parts) - 1) + [False]
    if parts[-1] == b"":
        parts, terminated = parts[:-1], terminated[:-1]
    lines, skipped = [], 0
    for n, (part, term) in enumerate(zip(parts, terminated), start=1):
        raw = part + b"\n" if term else part
        text = None if len(raw) > max_line or (not term and len(raw) >= max_line) else logs._decode(raw)
        if text is None:
            skipped += 1
        else:
            lines.append((n, text if text.strip(" \t\r") or not term else ""))
    return lines, skipped


def split_all(path: Path) -> tuple[list[tuple[int, str]], int, int]:
    ctx = logs._Ctx(str(path), logs.compile_user_pattern(logs.DEFAULT_USER_PATTERN), DEFAULT_CONSTRAINT, LogScan())
    got = list(logs._expanded(logs._units(path, ctx), keep=1 << 62))
    return got, ctx.read.skipped_lines, ctx.read.lines


PIECES = [b"", b" ", b"\t ", b"\r", b"x", b"2025-10-08T14:00:00Z info ok", b"\xff\xfe", b"caf\xc3\xa9",
          b"\x00bin", b"  indented", "\u00e9t\u00e9".encode()]


@pytest.mark.parametrize("seed", range(12))
def test_splitter_matches_a_line_by_line_reference(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    max_line = rng.choice([16, 64, 300])
    monkeypatch.setattr(logs, "MAX_LINE_BYTES", max_line)
    monkeypatch.setattr(logs, "READ_BLOCK", rng.choice([7, 64, 1000, 4096]))
    monkeypatch.setattr(logs, "_NEWLINES", b"\n" * 32)
    out = []
    for _ in range(rng.randint(50, 400)):
        kind = rng.random()
        if kind < 0.25:
            out.append(b"\n" * rng.randint(1, 200))
        elif kind < 0.35:
            out.append(b"y" * rng.randint(max_line - 3, max_line + 3) + b"\n")
        elif kind < 0.4:
            out.append(b"z" * rng.randint(1, 5 * max_line) + b"\n")
        else:
            out.append(rng.choice(PIECES) + b"\n")
    if rng.random() < 0.5:
        out.append(rng.choice([b"tail", b"   ", b"w" * (max_line + 5), b"w" * max_line]))
    data = b"".join(out)
    path = tmp_path / "random.log"
    path.write_bytes(data)
    want, want_skipped = reference_lines(data, max_line)
    got, skipped, lines = split_all(path)
    assert got == want and skipped == want_skipped
    assert lines == len(data.split(b"\n")) - (1 if data.endswith(b"\n") else 0)


# -- blank runs: the same failures as a parse of every line --------------------------------------
def every_line_parse(path: Path, fmt: str) -> tuple[list, int]:
    """The parser for ``fmt`` fed every line of the file, blank ones included, one by one."""
    stats = LogScan()
    ctx = logs._Ctx(str(path), logs.compile_user_pattern(logs.DEFAULT_USER_PATTERN), DEFAULT_CONSTRAINT, stats)
    ctx.format = fmt
    lines, skipped = reference_lines(path.read_bytes(), logs.MAX_LINE_BYTES)
    stats.skipped_lines += skipped
    units = [(n, t) for n, t in lines] if fmt != "pg_csv" else [(n, t if t else 1) for n, t in lines]
    parser = logs._PARSERS[fmt]
    return [f.to_dict() for f in parser(units, ctx)], stats.skipped_lines


def with_blank_runs(text: str, rng: random.Random) -> str:
    out = []
    for line in text.splitlines():
        out.append(line)
        if rng.random() < 0.4:
            out.extend([""] * rng.choice([1, 2, 9, 10, 11, 12, 30, 70]))
    return "\n".join(out) + "\n"


SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix != ".md"
                      and p.read_bytes()[:2] != b"\x1f\x8b")


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_blank_runs_give_what_a_line_by_line_parse_gives(tmp_path, sample):
    text = sample.read_bytes().decode("utf-8", errors="replace")
    for seed in range(3):
        path = tmp_path / f"{seed}-{sample.name}"
        path.write_text(with_blank_runs(text, random.Random(seed)), encoding="utf-8")
        scan = scan_logs(path)
        fmt = scan.file_reads[0].format
        failures, skipped = every_line_parse(path, fmt)
        assert [f.to_dict() for f in scan.failures] == failures
        assert scan.skipped_lines == skipped


# -- skimming (issue 13): the same results as reading every line ------------------------------------
ALL_SAMPLES = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix != ".md")


@pytest.mark.parametrize("sample", ALL_SAMPLES, ids=lambda p: str(p.relative_to(SAMPLES)))
@pytest.mark.parametrize("block", [64, 1 << 20])
def test_skimming_finds_what_a_full_read_finds_in_every_sample(monkeypatch, sample, block, scans):
    monkeypatch.setattr(logs, "READ_BLOCK", block)
    skimmed, full = scans.both_ways(sample)
    scans.same(skimmed, full)


def random_text_log(rng: random.Random, lines: int) -> bytes:
    users = [f"did:privy:u{i:04d}" for i in range(6)]
    workspaces = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(4)]
    other = 'insert or update on table "workspace_members" violates foreign key constraint "wm_fk"'
    out = []
    sec = 0
    sparse = rng.random() < 0.5  # long quiet stretches between errors: most of it is skimmed
    for _ in range(lines):
        sec += rng.randint(0, 3)
        ts = f"2025-10-08T14:{sec // 60 % 60:02d}:{sec % 60:02d}.{rng.randint(0, 999):03d}Z"
        r = rng.random()
        if sparse and rng.random() < 0.9:
            r = 0.0 if rng.random() < 0.8 else 0.72
        if r < 0.35:
            out.append(f"{ts} info GET /api 200 user={rng.choice(users)}")
        elif r < 0.45:
            out.append(f"{ts} info tick")
        elif r < 0.52:
            out.append(f"error: {FK_TEXT}")
        elif r < 0.55:
            out.append(f"{ts} error: {other}")
        elif r < 0.62:
            out.append(f'Detail: Key (primary_workspace_id)=({rng.choice(workspaces)}) is not present in table "workspaces".')
        elif r < 0.7:
            out.append("    at /var/task/node_modules/pg-pool/index.js:45:11")
        elif r < 0.78:
            out.append("" if rng.random() < 0.5 else "\n" * rng.randint(1, 40))
        elif r < 0.8:
            out.append(f"error: {FK_TEXT[:rng.randint(5, len(FK_TEXT))]}")  # cut
        elif r < 0.82:
            out.append(rng.choice(["caf\u00e9 user=" + rng.choice(users), "\x1b[31merror\x1b[0m: " + FK_TEXT,
                                   "bin\x00ary", "\ufeff" + ts + " bom line"]))
        else:
            out.append(f"{ts} debug user={rng.choice(users)} " + "x" * rng.randint(0, 120))
    data = ("\n".join(out) + "\n").encode()
    if rng.random() < 0.3:  # a stretch of invalid UTF-8
        k = rng.randrange(len(data))
        data = data[:k] + b"\xff\xfe" + data[k:]
    return data


@pytest.mark.parametrize("seed", range(20))
def test_skimming_matches_a_full_read_on_random_text_logs(tmp_path, monkeypatch, seed, scans):
    rng = random.Random(seed)
    path = tmp_path / "app.log"
    path.write_bytes(random_text_log(rng, rng.randint(200, 3000)))
    monkeypatch.setattr(logs, "READ_BLOCK", rng.choice([256, 4096, 1 << 20]))
    skimmed, full = scans.both_ways(path)
    assert full.file_reads[0].format == "text" and full.failures
    scans.same(skimmed, full)


def test_skimming_passes_over_lines(monkeypatch, tmp_path):
    """The skim does skip work: far fewer lines reach the text parser than the file holds."""
    path = tmp_path / "app.log"
    quiet = "".join(f"2025-10-08T14:00:{i % 60:02d}.000Z info GET /api 200 user=did:privy:u{i}\n" for i in range(20000))
    path.write_text(quiet + error_record("2025-10-08T14:03:22.481Z").decode() + quiet)
    fed = []
    real = logs._TextParser.feed

    def counting(self, n, text):
        fed.append(n)
        return real(self, n, text)

    monkeypatch.setattr(logs._TextParser, "feed", counting)
    [failure] = scan_logs(path).failures
    assert (failure.user_id, failure.workspace_id, failure.line) == (USER, WORKSPACE, 20002)
    assert len(fed) < 200
