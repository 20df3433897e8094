"""Deletions read from application logs (``evidence/app_events.py``, issue 10 item 4).

Pure and fast: over ``tests/samples/logs/app_events/`` (a text access log in the demo log's style,
a JSON-lines drain of the same requests, a gzip copy, damaged files; see the README there and
``make_samples.py``) and over the PostgreSQL server-log samples, which must be left out.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from incidentkit.db.schema import SchemaMap, log_event_rules
from incidentkit.evidence import app_events, logs
from incidentkit.evidence.app_events import (
    AppEventScan,
    AppLogEvent,
    check_rules,
    iter_app_events,
    merge_app_events,
    required_literal,
    scan_app_events,
)
from incidentkit.exceptions import ConfigError, LogReadError
from incidentkit.text import iso_utc

SAMPLES = Path(__file__).parent / "samples" / "logs" / "app_events"
ACCESS, DRAIN = SAMPLES / "app" / "access.log", SAMPLES / "app" / "drain.jsonl"
ACCESS_GZ = SAMPLES / "gzip" / "access.log.gz"
DAMAGED_TEXT, DAMAGED_DRAIN = SAMPLES / "damaged" / "access-damaged.log.gz", SAMPLES / "damaged" / "drain-damaged.jsonl"
SERVER = Path(__file__).parent / "samples" / "logs" / "server"
SERVER_LOGS = [SERVER / "postgresql", SERVER / "postgresql.csv", SERVER / "postgresql.json"]

OWNER = "did:privy:cmepupsjwkkftpvfdaww49bkb"
ADMIN = "did:privy:cmgkz1y3p00g9l80b6s4v0xnd"
MEMBER = "did:privy:cmgj0x7rk00a2l50d9u3m1qzp"
WS = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"
WS_404 = "5d0c4f3e-9b8a-4e1f-a2c3-7b6d5e4f3a21"
WS_REPLAY = "0f3e2d1c-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
WS_LATE = "7b6d5e4f-3a21-4c9d-8e7f-6a5b4c4d9e3f"  # upper case in the logs
WS_TEAM = "3c9d8e7f-6a5b-4c4d-9e3f-2a1b0c9d8e7f"  # upper case in the logs
WS_PINO = "0c1d2e3f-4a5b-4c6d-8e7f-1a2b3c4d5e6f"

WORKSPACE_2XX = r"DELETE /api/workspaces/(?P<id>[0-9a-fA-F-]{36}) 2[0-9][0-9]"
MEMBERSHIP_2XX = r"DELETE /api/workspaces/[0-9a-fA-F-]{36}/members/(?P<id>did:privy:[a-z0-9]+) 2[0-9][0-9]"
#: Matches pino's raw line only (its message is "request completed").
PINO_RAW = r'"method": ?"DELETE", ?"url": ?"/api/workspaces/(?P<id>[0-9a-f-]{36})"'


def rules(*entries: tuple[str, str]):
    return log_event_rules([{"table": t, "pattern": p} for t, p in entries])


RULES = rules(("workspaces", WORKSPACE_2XX), ("memberships", MEMBERSHIP_2XX))


def summary(events) -> list[tuple]:
    return [(e.table, e.id, iso_utc(e.at), Path(e.file).name, e.line, e.format, e.actor) for e in events]


# -- text logs ------------------------------------------------------------------------------
def test_text_log_deletions_with_times_ids_actors_and_lines():
    scan = scan_app_events(ACCESS, RULES)
    assert summary(scan.events) == [
        ("workspaces", WS, "2025-10-08T09:41:27.131Z", "access.log", 5, "text", OWNER),
        # the member's id is a user id too: the actor is the other one, the request's user=
        ("memberships", MEMBER, "2025-10-08T09:52:10.402Z", "access.log", 11, "text", ADMIN),
        # a continuation line without a timestamp: dated by the latest one before it
        ("workspaces", WS_REPLAY, "2025-10-08T09:52:44.918Z", "access.log", 13, "text", None),
        ("workspaces", WS_LATE, "2025-10-08T10:15:03.007Z", "access.log", 14, "text", None),
    ]
    assert scan.files == [str(ACCESS)] and scan.skipped_lines == 0 and scan.skipped_files == []
    first = scan.events[0]
    assert first.at.tzinfo is not None and first.at.utcoffset().total_seconds() == 0
    assert first.where == f"{ACCESS}:5" and first.seen_in == ((str(ACCESS), 5),)
    assert first.rule == WORKSPACE_2XX
    assert first.message.startswith("2025-10-08T09:41:27.131Z info [web] DELETE /api/workspaces/" + WS + " 200")


def test_a_404_delete_is_not_a_2xx_deletion_nor_is_the_request_start():
    ids = [e.id for e in scan_app_events(ACCESS, RULES).events]
    assert WS_404 not in ids and ids.count(WS) == 1  # line 3 ("start") is not a deletion either
    # the 404 line is there and readable: a rule for any outcome finds it (and the start line does not match)
    any_outcome = rules(("workspaces", r"DELETE /api/workspaces/(?P<id>[0-9a-fA-F-]{36}) [0-9]{3}"))
    found = {(e.id, e.line) for e in scan_app_events(ACCESS, any_outcome).events}
    assert (WS_404, 2) in found and (WS, 3) not in found


def test_memberships_rule_alone():
    scan = scan_app_events(ACCESS, rules(("memberships", MEMBERSHIP_2XX)))
    assert summary(scan.events) == [("memberships", MEMBER, "2025-10-08T09:52:10.402Z", "access.log", 11, "text", ADMIN)]


def test_user_group_names_the_actor_and_user_pattern_is_used_otherwise():
    with_user = rules(("workspaces", WORKSPACE_2XX + r" in \d+ms user=(?P<user>\S+)"))
    assert [(e.id, e.actor) for e in scan_app_events(ACCESS, with_user).events] == [(WS, OWNER)]
    # another user pattern: the request id stands in for the user
    scan = scan_app_events(ACCESS, RULES, user_pattern=r"requestId=(req_\w+)")
    assert [(e.line, e.actor) for e in scan.events] == [(5, "req_7f3aa402"), (11, "req_7f3b0c11"), (13, None),
                                                        (14, "req_7f3c2e90")]


def test_workspace_ids_are_normalised_membership_ids_kept():
    events = scan_app_events(ACCESS, RULES).events
    late = next(e for e in events if e.line == 14)
    assert late.id == WS_LATE and WS_LATE.upper() in late.message  # shown as logged, compared lower-case


def test_gzip_copy_reads_the_same():
    plain = [e.to_dict() | {"file": None, "seen_in": None} for e in scan_app_events(ACCESS, RULES).events]
    scan = scan_app_events(ACCESS_GZ, RULES)
    assert [e.to_dict() | {"file": None, "seen_in": None} for e in scan.events] == plain
    assert scan.file_reads[0].compressed and scan.file_reads[0].format == "text"


# -- JSON lines -----------------------------------------------------------------------------
def test_jsonl_message_field_nested_time_and_user_field():
    scan = scan_app_events(DRAIN, RULES)
    assert summary(scan.events) == [
        ("workspaces", WS, "2025-10-08T09:41:27.133Z", "drain.jsonl", 2, "jsonl", OWNER),  # attributes.usr.id
        ("workspaces", WS_LATE, "2025-10-08T10:15:05.512Z", "drain.jsonl", 3, "jsonl", None),
    ]
    assert scan.events[0].message == f"DELETE /api/workspaces/{WS} 200 in 242ms"  # the message field, not the line


def test_jsonl_raw_line_when_the_message_does_not_match():
    scan = scan_app_events(DRAIN, rules(("workspaces", PINO_RAW)))
    assert summary(scan.events) == [("workspaces", WS_PINO, "2025-10-08T10:20:00.250Z", "drain.jsonl", 4, "jsonl", ADMIN)]
    assert scan.events[0].message == "request completed"  # time from epoch milliseconds under "time"


def test_jsonl_message_match_is_not_counted_again_in_the_raw_line():
    # the raw line holds the message too: one event per record, not two
    events = scan_app_events(DRAIN, rules(("workspaces", r"DELETE /api/workspaces/(?P<id>[0-9a-fA-F-]{36})"))).events
    assert [(e.line, e.id) for e in events] == [(1, WS_404), (2, WS), (3, WS_LATE)]


def test_jsonl_message_field_first_raw_line_second(tmp_path):
    drain = tmp_path / "drain.jsonl"
    drain.write_text(json.dumps({"note": f"DELETE /api/workspaces/{WS_404} 200 (dry run)", "ts": 1759916487.5,
                                 "message": f"DELETE /api/workspaces/{WS} 200 in 3ms"}) + "\n"
                     + json.dumps({"ts": 1759916488.5, "message": f'DELETE "/api/workspaces/{WS_LATE}" 204'}) + "\n")
    # the message field matches: the raw line's other match (an earlier field) is not taken
    assert [e.id for e in scan_app_events(drain, RULES).events] == [WS]
    # quotes are escaped in the raw line: only the message field holds this text as logged
    quoted = rules(("workspaces", r'DELETE "/api/workspaces/(?P<id>[0-9a-f-]{36})" 204'))
    assert [(e.id, iso_utc(e.at)) for e in scan_app_events(drain, quoted).events] == [(WS_LATE, "2025-10-08T09:41:28.500Z")]


# -- one deletion, several logs -------------------------------------------------------------
def test_same_deletion_in_text_and_json_is_one_event_with_both_places():
    scan = scan_app_events(SAMPLES / "app", RULES)
    assert scan.files == [str(ACCESS), str(DRAIN)]
    ws = [e for e in scan.events if e.id == WS]
    assert len(ws) == 1
    assert ws[0].seen_in == ((str(ACCESS), 5), (str(DRAIN), 2))
    assert ws[0].at.isoformat().startswith("2025-10-08T09:41:27.131") and ws[0].format == "text"
    assert ws[0].to_dict()["seen_in"] == [{"file": str(ACCESS), "line": 5}, {"file": str(DRAIN), "line": 2}]
    # 2.5 s apart: two deletions (the window is 2 s)
    late = [e for e in scan.events if e.id == WS_LATE]
    assert [len(e.seen_in) for e in late] == [1, 1]
    assert [e.at for e in scan.events] == sorted(e.at for e in scan.events)
    assert len(scan.events) == 5


def test_merge_window_and_same_file_records_stay_apart():
    events = list(iter_app_events([ACCESS, DRAIN], RULES))
    assert len(events) == 6  # streamed: one per record, the shared deletion twice
    assert len(merge_app_events(events, seconds=3)) == 4  # the late one merges too
    again = AppLogEvent(**{**_fields(events[0]), "line": 99})  # the same request again in the same file
    assert len(merge_app_events([events[0], again])) == 2  # a repeat in one log is never merged


def _fields(e: AppLogEvent) -> dict:
    return {k: getattr(e, k) for k in AppLogEvent.__dataclass_fields__}


def test_merge_takes_a_missing_actor_from_another_copy():
    events = list(iter_app_events([ACCESS, DRAIN], RULES))
    text_copy = next(e for e in events if e.id == WS and e.format == "text")
    json_copy = next(e for e in events if e.id == WS and e.format == "jsonl")
    merged = merge_app_events([AppLogEvent(**{**_fields(text_copy), "actor": None}), json_copy])
    assert len(merged) == 1 and merged[0].actor == OWNER and merged[0].line == 5


# -- what is not read -----------------------------------------------------------------------
def test_postgresql_server_logs_are_left_out():
    literal_delete = rules(("workspaces", r"delete from workspaces where id = '(?P<id>[^']+)'"))
    # the rule would match those files' lines if they were read as application logs
    assert any(literal_delete[0].pattern.search(line) for line in SERVER_LOGS[0].read_text().splitlines())
    scan = scan_app_events(SERVER_LOGS, literal_delete)
    assert scan.events == [] and scan.files == [] and scan.file_reads == []
    assert scan.skipped_files == [(str(SERVER_LOGS[0]), "pg_stderr"), (str(SERVER_LOGS[1]), "pg_csv"),
                                  (str(SERVER_LOGS[2]), "pg_json")]
    # beside an application log, only the application log counts
    mixed = scan_app_events([*SERVER_LOGS, ACCESS], RULES)
    assert mixed.files == [str(ACCESS)] and len(mixed.events) == 4


def test_no_rules_reads_nothing(monkeypatch, tmp_path):
    def must_not_run(*a, **k):
        raise AssertionError("read although there is no rule")

    monkeypatch.setattr(logs, "iter_log_files", must_not_run)
    monkeypatch.setattr(logs, "read_log_lines", must_not_run)
    missing = tmp_path / "no-such-log"
    for no_rules in ((), [], None, SchemaMap.default()):
        scan = scan_app_events(missing, no_rules)
        assert scan.events == [] and scan.files == [] and scan.skipped_lines == 0
        assert list(iter_app_events(missing, no_rules)) == []
    monkeypatch.undo()
    with pytest.raises(LogReadError):  # with a rule, the same path is an error
        scan_app_events(missing, RULES)


def test_schema_map_rules_are_used(tmp_path):
    toml = tmp_path / "schema.toml"
    toml.write_text(f"[[deletions.log_events]]\ntable = \"workspaces\"\npattern = '{WORKSPACE_2XX}'\n")
    scan = scan_app_events(ACCESS, SchemaMap.from_toml(toml))
    assert [e.id for e in scan.events] == [WS, WS_REPLAY, WS_LATE]


def test_rules_must_be_rules():
    for bad in ("DELETE (?P<id>x)", 42, [object()], {"table": "workspaces", "pattern": "(?P<id>x)"}):
        with pytest.raises(ConfigError):
            check_rules(bad)
    with pytest.raises(ConfigError, match="does not compile"):
        check_rules([{"table": "workspaces", "pattern": "DELETE ("}])
    with pytest.raises(ConfigError, match="no named group"):
        check_rules([{"table": "workspaces", "pattern": "DELETE (x)"}])
    assert check_rules([{"table": "memberships", "pattern": "(?P<id>x)"}])[0].table == "memberships"


# -- damaged input --------------------------------------------------------------------------
def test_damaged_text_log_lines_are_counted_never_fatal():
    scan = scan_app_events(DAMAGED_TEXT, RULES)
    # skipped: a match before any timestamp (line 1), binary junk (2), an overlong line (4),
    # invalid UTF-8 (5); the cut-off last line matches nothing
    assert scan.skipped_lines == 4
    assert [(e.line, e.id, e.actor) for e in scan.events] == [(3, WS, OWNER), (6, WS_LATE, ADMIN)]
    shown = scan.events[1].message
    assert "\\u202e" in shown and "\u202e" not in shown and "\x0c" not in shown  # escaped when shown
    assert scan.file_reads[0].compressed and scan.file_reads[0].lines == 7


def test_damaged_jsonl_lines_are_counted_never_fatal():
    scan = scan_app_events(DAMAGED_DRAIN, RULES)
    # skipped: broken JSON (1), a deletion without a time (2), a bare array (4)
    assert scan.skipped_lines == 3
    assert [(e.line, e.id) for e in scan.events] == [(3, WS_TEAM), (5, WS_REPLAY), (5, WS_PINO)]  # 5: a batch
    shown = scan.events[0].message
    assert "\\x07" in shown and "\\u202e" in shown and "\x07" not in shown
    assert len(shown) <= app_events.MESSAGE_CHARS and "\n" not in shown


def test_overlong_and_hostile_lines_in_a_fresh_file(tmp_path):
    log = tmp_path / "app.log"
    line = f"2025-10-08T12:00:00.000Z DELETE /api/workspaces/{WS} 200"
    log.write_bytes(b"\n".join([
        line.encode() + b" " + b"y" * logs.MAX_LINE_BYTES,  # overlong: skipped, not matched
        b"\x00" * 100,
        line.encode(),
    ]) + b"\n")
    scan = scan_app_events(log, RULES)
    assert scan.skipped_lines == 2 and [e.line for e in scan.events] == [3]


def test_a_pattern_matching_everywhere_stays_bounded(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("2025-10-08T12:00:00.000Z " + " ".join(f"id={n}" for n in range(500)) + "\n")
    every = rules(("memberships", r"id=(?P<id>\d+)"), ("workspaces", r"(?P<id>x*)"))  # the second never names an id
    events = scan_app_events(log, every).events
    assert len(events) == app_events.MAX_MATCHES_PER_RECORD and {e.table for e in events} == {"memberships"}


# -- the prefilter --------------------------------------------------------------------------
LITERALS = {
    WORKSPACE_2XX: "DELETE /api/workspaces/",
    r"DELETEs? /x/(?P<id>\d+)": "DELETE",
    r"del{2,3}ete (?P<id>x)": "ete ",
    r"foo\.bar(?P<id>x)": "foo.bar",
    r"(?:DELETE|POST) /w/(?P<id>\d+)": " /w/",
    r"(?P<id>a)\x41bc": "bc",
    r"x{foo}(?P<id>y)": "foo}",
    r"[]a)(|]zz(?P<id>q)": "zz",
    r"a|DELETE (?P<id>x)": None,
    r"(?i)DELETE (?P<id>x)": None,
    r"(?x) DELETE (?P<id>x)": None,
    r"(?P<id>\d+)": None,
}


@pytest.mark.parametrize("pattern", sorted(LITERALS))
def test_required_literal(pattern):
    assert required_literal(pattern) == LITERALS[pattern]
    assert required_literal(re.compile(pattern)) == LITERALS[pattern]


TRICKY = [
    *LITERALS, PINO_RAW, MEMBERSHIP_2XX, r"DELETE\s+/api/workspaces/(?P<id>\S{36})", r"(?i)delete /API/(?P<id>[^/ ]+)",
    r"workspaces/(?P<id>[0-9A-F-]{36})\b", r"\bDELETE\b.*?(?P<id>[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})",
    r"(?P<id>did:privy:\w+) 20[04]", r"DELETE /api/workspaces/(?P<id>[^ ]+) (?:200|204)", r'"url": "(?P<id>[^"]+)"',
    r"DEL\u0045TE (?P<id>\S+)", r"DELETE\x20/api/(?P<id>\S+)", r"in \d{2,3}ms (?P<id>user=\S+)",
]


#: Lines that tell a right literal from a wrong one (each matches a pattern of LITERALS).
NEAR_MISSES = ["DELETE /x/12", "DELETEs /x/1", "delllete x", "foo.barx", "POST /w/9", "aAbc", "x{foo}y", "]zzq", "zz)q"]


def test_every_match_holds_the_required_literal():
    lines = [text for path in (ACCESS, DRAIN, DAMAGED_DRAIN) for text in path.read_text().splitlines()]
    lines += gzip.decompress(DAMAGED_TEXT.read_bytes()).decode("utf-8", "replace").splitlines()
    lines += NEAR_MISSES
    tried = 0
    for pattern in TRICKY:
        lit = required_literal(pattern)
        for text in lines:
            for m in re.finditer(pattern, text):
                tried += 1
                assert lit is None or lit in m.group(0), (pattern, lit, text)
    assert tried > 50


@pytest.mark.parametrize("paths", [[SAMPLES / "app", ACCESS_GZ], [DAMAGED_TEXT, DAMAGED_DRAIN], ["near-misses"]])
def test_prefilter_gives_what_every_rule_on_every_line_gives(monkeypatch, tmp_path, paths):
    if paths == ["near-misses"]:
        log = tmp_path / "near-misses.log"
        log.write_text("".join(f"2025-10-08T12:00:{n:02d}.000Z {text}\n" for n, text in enumerate(NEAR_MISSES)))
        paths = [log]
    all_rules = rules(*[("workspaces" if i % 2 else "memberships", p) for i, p in enumerate(TRICKY)
                        if "(?P<id>" in p])
    assert sum(1 for r in all_rules if required_literal(r.pattern)) >= 8  # the prefilter does work here
    with_filter = scan_app_events(paths, all_rules)
    monkeypatch.setattr(app_events, "PREFILTER", False)
    without = scan_app_events(paths, all_rules)
    assert with_filter.to_dict() == without.to_dict()
    assert len(with_filter.events) >= 8


# -- the API ----------------------------------------------------------------------------------
def test_streaming_updates_the_stats_as_it_goes():
    stats = AppEventScan()
    it = iter_app_events([*SERVER_LOGS[:1], ACCESS, DRAIN], RULES, stats=stats)
    first = next(it)  # files are read in name order: access.log, drain.jsonl, then the server log
    assert first.line == 5 and stats.files == [str(ACCESS)] and stats.skipped_files == []
    rest = list(it)
    assert len(rest) == 5 and stats.files == [str(ACCESS), str(DRAIN)]
    assert stats.skipped_files == [(str(SERVER_LOGS[0]), "pg_stderr")] and stats.events == []  # events: scan's job


def test_to_dict_is_json_ready():
    scan = scan_app_events(SAMPLES / "app", RULES)
    data = json.loads(json.dumps(scan.to_dict()))
    first = data["events"][0]
    assert first["at"] == "2025-10-08T09:41:27.131Z" and first["id"] == WS and first["table"] == "workspaces"
    assert set(first) == {"table", "id", "at", "file", "line", "format", "actor", "message", "rule", "seen_in"}
    assert data["skipped_lines"] == 0 and data["files"] == [str(ACCESS), str(DRAIN)]


def _naive_merge(events, seconds):
    """merge_app_events as its docstring says it, by looking at every open group (the reference)."""
    groups: list[list[AppLogEvent]] = []
    for _, e in sorted(enumerate(events), key=lambda p: (p[1].at, p[0])):
        home = next((g for g in groups if (e.at - g[0].at).total_seconds() <= seconds
                     and (g[0].table, g[0].id, g[0].rule) == (e.table, e.id, e.rule)
                     and not {f for x in g for f, _ in x.places} & {f for f, _ in e.places}), None)
        if home is None:
            groups.append(home := [])
        home.append(e)
    return [tuple(dict.fromkeys(p for x in g for p in x.places)) for g in groups]


def test_merge_equals_the_naive_merge_on_random_events():
    import random
    from datetime import timedelta

    base = next(iter_app_events(ACCESS, RULES))
    rnd = random.Random(10)
    for _ in range(200):
        events = []
        for n in range(rnd.randint(1, 40)):
            files = rnd.sample("abcd", rnd.choice([1, 1, 1, 2]))
            places = tuple((f, n) for f in files)
            events.append(AppLogEvent(**{**_fields(base), "id": rnd.choice("xy"), "file": files[0], "line": n,
                                         "at": base.at + timedelta(seconds=rnd.choice([0, 0.5, 1, 1.5, 2, 2.5, 4])
                                                                   * rnd.randint(0, 3)),
                                         "seen_in": places}))
        assert [e.seen_in for e in merge_app_events(events, 2.0)] == _naive_merge(events, 2.0)


def test_many_copies_in_one_file_stay_apart():
    base = next(iter_app_events(ACCESS, RULES))
    copies = [AppLogEvent(**{**_fields(base), "line": n, "seen_in": ((base.file, n),)}) for n in range(20_000)]
    other = AppLogEvent(**{**_fields(base), "file": "drain", "line": 1, "seen_in": (("drain", 1),)})
    merged = merge_app_events([*copies, other])  # 20,000 open groups: the naive merge would take minutes
    assert len(merged) == 20_000 and merged[0].seen_in == ((base.file, 0), ("drain", 1))


def test_time_is_the_latest_leading_timestamp_however_far_back(tmp_path):
    log = tmp_path / "app.log"
    delete = f"DELETE /api/workspaces/{WS} 200"
    log.write_text("\n".join([
        "2025-10-08T12:00:00.000Z worker started",
        *[f"    at frame {n}" for n in range(150)],  # indented: may hold a timestamp, holds none
        f"    {delete}",  # line 152
        "2025-10-08T12:00:05.250+02:00 worker next",
        *[f"[worker] step {n}" for n in range(70)],
        *["2025-10-08 garbled" for _ in range(3)],  # a date without a time of day: no timestamp
        delete,  # line 227
        "2025-10-08T12:00:07.000Z " + delete,  # 228
        "2025-10-08T12:00:09.000Z " + "z" * 400,  # long lines are read differently
        "    " + "q" * 400,
        delete,  # 231
    ]) + "\n")
    events = list(iter_app_events(log, RULES))  # in line order (a scan sorts them by time)
    assert [(e.line, iso_utc(e.at)) for e in events] == [
        (152, "2025-10-08T12:00:00.000Z"), (227, "2025-10-08T10:00:05.250Z"), (228, "2025-10-08T12:00:07.000Z"),
        (231, "2025-10-08T12:00:09.000Z")]


def test_the_lazy_clock_tells_the_time_every_line_parsed_would():
    import random

    pool = ["2025-10-08T12:00:0{}.000Z x", "    at frame", "[worker] y", "", "2025-10-08 garbled",
            "2025-10-08T13:00:0{}Z " + "w" * 300, "  " + "v" * 300, " 2025-10-08 14:00:0{} +0200 z"]
    rnd = random.Random(3)
    for _ in range(50):
        clock, eager = app_events._Clock(), None
        for n in range(rnd.randint(1, 400)):
            text = rnd.choice(pool).format(rnd.randint(0, 9))
            clock.see(text)
            eager = logs.leading_time(text) or eager
            if rnd.random() < 0.1:
                assert clock.now() == eager
        assert clock.now() == eager
