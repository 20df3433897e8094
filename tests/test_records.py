"""The log records a timeline shows (evidence.records): found at the byte level, they are exactly the
lines a line-by-line read finds, numbered and dated the same, across blocks, gzip and CRLF."""

from __future__ import annotations

import gzip

import pytest

from incidentkit import config
from incidentkit.evidence import records
from incidentkit.evidence.logs import iter_lines, leading_time

USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"
WS = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"


def _slow(path, ids):
    """The reference: every line read one by one, dated by its own or the latest earlier timestamp."""
    out, last = [], None
    for n, text in iter_lines(path):
        at = leading_time(text)
        last = at or last
        if any(i in text for i in ids) and not any(m in text for m in records._FAILURE_MARKS):
            out.append((n, at or last))
    return out


def _log(tmp_path, name="app.log", crlf=False, gz=False, lines=3000):
    body = []
    for i in range(lines):
        body.append(f"2025-10-08T09:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z info [web] GET /x user=did:privy:u{i}")
        if i % 97 == 0:
            body.append(f"    continuation naming {USER}")
        if i % 331 == 0:
            body.append(f"2025-10-08T10:00:00.000Z info [web] DELETE /api/workspaces/{WS} 204 user={USER}")
    text = ("\r\n" if crlf else "\n").join(body) + "\n"
    path = tmp_path / name
    if gz:
        path = tmp_path / (name + ".gz")
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, newline="")
    return path


@pytest.mark.parametrize("crlf, gz", [(False, False), (True, False), (False, True)])
def test_byte_level_records_equal_a_line_by_line_read(tmp_path, monkeypatch, crlf, gz):
    monkeypatch.setattr(records, "READ_BLOCK", 4096)  # many block boundaries, lines cut across them
    path = _log(tmp_path, crlf=crlf, gz=gz)
    got = [(r.line, r.at) for r in records.records_naming([str(path)], [USER, WS], limit=0)]
    assert got == sorted(_slow(path, [USER, WS]), key=lambda x: (x[1], x[0]))
    assert len(got) > 40


def test_the_demo_records_and_their_places():
    found = records.records_naming([str(config.demo_log_path())], [USER, WS])
    assert [r.where for r in found] == ["demo-app.log:3", "demo-app.log:4", "demo-app.log:6", "demo-app.log:13"]
    assert all("violates foreign key" not in r.text for r in found)


@pytest.mark.parametrize("block", [4096, 1 << 16])
@pytest.mark.parametrize("parts", [2, 3])
def test_a_large_file_read_in_parts_gives_the_same_records(tmp_path, monkeypatch, block, parts):
    """Read in parts (each from a line start, numbered on from the parts before), a file gives the
    records, line numbers and times of one read; and they are those of a line-by-line read."""
    path = _log(tmp_path, lines=6000)
    monkeypatch.setattr(records, "READ_BLOCK", block)
    whole = list(records._hits(str(path), [USER.encode(), WS.encode()], "text"))
    monkeypatch.setattr(records, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(records, "PARTS", parts)
    monkeypatch.setattr(records.os, "sched_getaffinity", lambda pid: set(range(parts)))
    bounds = records._parts(str(path))
    assert len(bounds) == parts + 1 and bounds[0] == 0 and bounds[-1] == path.stat().st_size
    data = path.read_bytes()
    assert all(data[b - 1:b] == b"\n" for b in bounds[1:-1])
    in_parts = records._file_hits(str(path), [USER.encode(), WS.encode()], "text")
    assert in_parts == whole and len(whole) > 60
    assert [(n, at) for n, _, at in in_parts] == _slow(path, [USER, WS])
