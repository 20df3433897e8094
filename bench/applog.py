"""Application logs in the incident's format (``lib/incidentkit/data/demo-app.log``), any size.

* :func:`write_report_log`: a short log of a bench database's incident users (their failed
  first logins, 46 ms after their workspace's deletion), for the report's affected-users and
  timeline notebooks;
* :func:`write_big_log`: a large log (hundreds of MB) of ordinary requests with one failed
  login every ``every`` lines, for the log parser's throughput and memory.
"""

from __future__ import annotations

import hashlib
import os
import random
from datetime import datetime, timezone
from pathlib import Path

_STACK = (
    '    at /var/task/node_modules/pg-pool/index.js:45:11\n'
    '    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n'
    '    at async ensureUserWorkspace (/var/task/packages/web/.next/server/chunks/8841.js:1:20433)\n'
    '    at async createContext (/var/task/packages/web/.next/server/app/api/trpc/[trpc]/route.js:1:3312)\n'
)
_ROUTES = ("GET /api/trpc/workspace.list 200 in {ms}ms", "GET /api/trpc/workspace.members 200 in {ms}ms",
           "POST /api/trpc/document.save 200 in {ms}ms", "GET /api/trpc/user.me 200 in {ms}ms",
           "GET /api/trpc/document.list 200 in {ms}ms")


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _failure_block(ms: int, user: str, workspace: str, req: str) -> str:
    return (f"{_ts(ms - 61)} info  [web] POST /api/trpc/workspace.getOrCreateWorkspaceV2 start user={user} "
            f"requestId={req}\n"
            f"{_ts(ms)} error [web] tRPC failed on workspace.getOrCreateWorkspaceV2 user={user} requestId={req}\n"
            'error: insert or update on table "users" violates foreign key constraint '
            '"users_primary_workspace_id_workspaces_id_fk"\n'
            f'Detail: Key (primary_workspace_id)=({workspace}) is not present in table "workspaces".\n'
            + _STACK +
            f"{_ts(ms + 2)} info  [web] POST /api/trpc/workspace.getOrCreateWorkspaceV2 500 in 63ms user={user} "
            f"requestId={req}\n")


def write_report_log(path: Path, failures: list[dict]) -> Path:
    """A log holding the given failures (``dataset.incident_failures``), with requests around each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for k, f in enumerate(failures):
            ms = f["failed_ms"]
            fh.write(f"{_ts(ms - 900)} info  [web] GET /api/trpc/workspace.list 200 in 38ms "
                     f"user=did:privy:cmbenchadmin0000000000{k:03d} requestId=req_{k:04x}a\n")
            fh.write(_failure_block(ms, f["user_id"], f["workspace_id"], f"req_{k:04x}b"))
    os.replace(tmp, path)
    return path


def write_big_log(path: Path, size_bytes: int, every: int = 5000, seed: int = 6) -> Path:
    """About ``size_bytes`` of log: request lines, and a failed-login record every ``every`` lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    users = ["did:privy:cm" + hashlib.md5(f"log{i}".encode()).hexdigest()[:23] for i in range(2000)]
    ms = 1_759_881_600_000  # 2025-10-08T00:00:00Z
    tmp = path.with_suffix(".tmp")
    written = n = 0
    with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as fh:
        while written < size_bytes:
            lines = []
            for _ in range(1000):
                ms += rng.randint(1, 40)
                n += 1
                if n % every == 0:
                    ws = hashlib.md5(f"ws{n}".encode()).hexdigest()
                    ws = f"{ws[:8]}-{ws[8:12]}-{ws[12:16]}-{ws[16:20]}-{ws[20:]}"
                    lines.append(_failure_block(ms, rng.choice(users), ws, f"req_{n:08x}"))
                else:
                    route = rng.choice(_ROUTES).format(ms=rng.randint(5, 400))
                    lines.append(f"{_ts(ms)} info  [web] {route} user={rng.choice(users)} requestId=req_{n:08x}\n")
            chunk = "".join(lines)
            fh.write(chunk)
            written += len(chunk)
    os.replace(tmp, path)
    return path
