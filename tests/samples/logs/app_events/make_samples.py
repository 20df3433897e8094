"""Write the application-log samples of tests/test_app_events.py (see README.md beside it).

    python3 tests/samples/logs/app_events/make_samples.py

Deterministic: the same bytes every run (the gzip copies carry no name and mtime 0).
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
OWNER = "did:privy:cmepupsjwkkftpvfdaww49bkb"  # deletes the incident's workspace
FAILED = "did:privy:cmgiqkpg0001wl40cqhofcvo4"  # the failed login of the incident
ADMIN = "did:privy:cmgkz1y3p00g9l80b6s4v0xnd"
MEMBER = "did:privy:cmgj0x7rk00a2l50d9u3m1qzp"
WS = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"  # the incident's workspace
WS_404 = "5d0c4f3e-9b8a-4e1f-a2c3-7b6d5e4f3a21"
WS_TEAM = "3C9D8E7F-6A5B-4C4D-9E3F-2A1B0C9D8E7F"  # upper case, as some clients send it
WS_REPLAY = "0f3e2d1c-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
WS_LATE = "7B6D5E4F-3A21-4C9D-8E7F-6A5B4C4D9E3F"
WS_PINO = "0c1d2e3f-4a5b-4c6d-8e7f-1a2b3c4d5e6f"

ACCESS_LOG = f"""\
2025-10-08T09:40:58.311Z info  [web] GET /api/workspaces 200 in 38ms user={OWNER} requestId=req_7f3a91c2
2025-10-08T09:41:05.020Z info  [web] DELETE /api/workspaces/{WS_404} 404 in 12ms user={OWNER} requestId=req_7f3a9a01
2025-10-08T09:41:26.889Z info  [web] DELETE /api/workspaces/{WS} start user={OWNER} requestId=req_7f3aa402
2025-10-08T09:41:27.103Z info  [web] POST /api/trpc/workspace.getOrCreateWorkspaceV2 start user={FAILED} requestId=req_7f3aa4e8
2025-10-08T09:41:27.131Z info  [web] DELETE /api/workspaces/{WS} 200 in 242ms user={OWNER} requestId=req_7f3aa402
2025-10-08T09:41:27.164Z error [web] tRPC failed on workspace.getOrCreateWorkspaceV2 user={FAILED} requestId=req_7f3aa4e8
error: insert or update on table "users" violates foreign key constraint "users_primary_workspace_id_workspaces_id_fk"
Detail: Key (primary_workspace_id)=({WS}) is not present in table "workspaces".
    at /var/task/node_modules/pg-pool/index.js:45:11
2025-10-08T09:41:27.166Z info  [web] POST /api/trpc/workspace.getOrCreateWorkspaceV2 500 in 63ms user={FAILED} requestId=req_7f3aa4e8
2025-10-08T09:52:10.402Z info  [web] DELETE /api/workspaces/{WS_TEAM}/members/{MEMBER} 204 in 31ms user={ADMIN} requestId=req_7f3b0c11
2025-10-08T09:52:44.918Z warn  [worker] job cleanupWorkspaces attempt 2 of 3:
    replayed DELETE /api/workspaces/{WS_REPLAY} 202 queued
2025-10-08T10:15:03.007Z info  [web] DELETE /api/workspaces/{WS_LATE} 204 in 57ms requestId=req_7f3c2e90
"""


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _datadog(at: str, message: str, user: str | None, status: int) -> dict:
    attrs: dict = {"http": {"method": "DELETE", "status_code": status}}
    if user:
        attrs["usr"] = {"id": user}
    return {"id": "AgAAAZnF" + at.replace(":", "").replace("-", "").replace(".", ""), "type": "log",
            "attributes": {"service": "web-app", "host": "i-0a1b2c3d4e5f60718", "status": "info",
                           "timestamp": at, "tags": ["env:production", "service:web-app"],
                           "message": message, "attributes": attrs}}


DRAIN = [
    _datadog("2025-10-08T09:41:05.022Z", f"DELETE /api/workspaces/{WS_404} 404 in 12ms", OWNER, 404),
    _datadog("2025-10-08T09:41:27.133Z", f"DELETE /api/workspaces/{WS} 200 in 242ms", OWNER, 200),
    _datadog("2025-10-08T10:15:05.512Z", f"DELETE /api/workspaces/{WS_LATE} 204 in 61ms", None, 204),
    {"level": 30, "time": _ms("2025-10-08T10:20:00.250Z"), "pid": 8, "hostname": "web-5f7c9d-x2k4q",
     "req": {"method": "DELETE", "url": f"/api/workspaces/{WS_PINO}"}, "res": {"statusCode": 204},
     "userId": ADMIN, "msg": "request completed"},
]

LONG = "x" * (1 << 20)  # past logs.MAX_LINE_BYTES with its newline
DAMAGED_TEXT = b"".join([
    f"booting: replaying DELETE /api/workspaces/{WS_REPLAY} 200 before the clock is set\n".encode(),
    b"\x00\x01\x02binary junk \x00\xff\x10\x11\n",
    f"2025-10-08T11:00:00.000Z info  [web] DELETE /api/workspaces/{WS} 200 in 20ms user={OWNER}\n".encode(),
    f"2025-10-08T11:00:00.500Z info  [web] DELETE /api/workspaces/{WS_404} 200 {LONG}\n".encode(),
    b"2025-10-08T11:00:01.000Z info  [web] DELETE /api/workspaces/\xff\xfe\xfd 200\n",
    f"2025-10-08T11:00:01.500Z info  [web] DELETE /api/workspaces/{WS_LATE} 204 in 9ms \u202euser\x0c={ADMIN}\n".encode(),
    b"2025-10-08T11:00:03.000Z info  [web] DELETE /api/worksp",  # cut off, no newline
])

DAMAGED_DRAIN = "\n".join([
    '{"timestamp": "2025-10-08T11:05:00.000Z", "message": "DELETE /api/workspaces/' + WS + ' 200 in 1',
    json.dumps({"message": f"DELETE /api/workspaces/{WS_404} 200 in 5ms", "level": "info"}),
    json.dumps({"timestamp": "2025-10-08T11:05:02.000Z",
                "message": f"DELETE /api/workspaces/{WS_TEAM} 200 in 5ms \u0007\u202e{'y' * 400}"}),
    "[1, 2]",
    json.dumps([{"timestamp": "2025-10-08T11:05:03.000Z", "message": f"DELETE /api/workspaces/{WS_REPLAY} 204 in 3ms"},
                {"timestamp": "2025-10-08T11:05:03.100Z", "message": f"DELETE /api/workspaces/{WS_PINO} 204 in 4ms"}]),
    json.dumps({"timestamp": "2025-10-08T11:05:04.000Z", "message": "GET /api/workspaces 200 in 8ms"}),
]) + "\n"


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def main() -> None:
    (HERE / "app").mkdir(exist_ok=True)
    (HERE / "gzip").mkdir(exist_ok=True)
    (HERE / "damaged").mkdir(exist_ok=True)
    (HERE / "app" / "access.log").write_text(ACCESS_LOG)
    (HERE / "app" / "drain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in DRAIN))
    (HERE / "gzip" / "access.log.gz").write_bytes(_gzip(ACCESS_LOG.encode()))
    (HERE / "damaged" / "access-damaged.log.gz").write_bytes(_gzip(DAMAGED_TEXT))
    (HERE / "damaged" / "drain-damaged.jsonl").write_text(DAMAGED_DRAIN)


if __name__ == "__main__":
    main()
