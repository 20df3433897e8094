"""Large logs of every family the kit reads, with a known number of foreign-key failures.

Four families, each modelled line for line on the real samples of ``tests/samples/logs/``
(the generator replicates their lines with new ids and times):

* ``text``: the incident's application log (``lib/incidentkit/data/demo-app.log``, the shapes of
  :mod:`applog`): request lines, and a failed login every ``every`` records (error line,
  ``Detail:`` line, stack);
* ``jsonl``: a Datadog log drain (``tests/samples/logs/drains/datadog.jsonl``): nested
  ``attributes.timestamp`` and ``attributes.message``; failures alternate between the sample's two
  shapes (the error in ``attributes.attributes.error``/``db`` with a multi-line ``stack``, and a
  multi-line message holding the error and its ``Detail:`` line inside the JSON string);
* ``pg_stderr``: PostgreSQL 16 stderr with ``log_line_prefix = '%m [%p] %q%u@%d/%a '`` and
  ``log_statement = 'mod'`` (``tests/samples/logs/server/postgresql``): ``execute <unnamed>:``
  statements with their ``DETAIL:  parameters:`` line, and failures as the server writes them
  (``ERROR``, ``DETAIL``, ``CONTEXT`` with the bound user id, ``STATEMENT``;
  ``tests/samples/logs/postgres/postgresql``);
* ``pg_json``: the same traffic as PostgreSQL 16 ``jsonlog`` records
  (``tests/samples/logs/server/postgresql.json``, ``tests/samples/logs/postgres/postgresql.json``).

Every file spans a day, holds the demo incident itself (the incident user's failed login 46 ms
after the deletion of its workspace, at the demo's times, so ``--demo`` gives it the verdict
``concurrent_deletion``; the server families also hold the ``delete`` statement), and comes with
its facts (``<file>.facts.json``): failures, the lines ``grep -c`` of the error text must count,
the lines naming the incident user. :func:`ensure` writes a file once into the cache and reuses it
while its size, family and :data:`VERSION` are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import applog

#: Bump when a generator's output changes: cached files of another version are rewritten.
VERSION = 1
FAMILIES = ("text", "jsonl", "pg_stderr", "pg_json")
#: What ``grep -c`` looks for, and what every failure record holds on exactly one line.
NEEDLE = "violates foreign key constraint"

INCIDENT_USER = "did:privy:cmgiqkpg0001wl40cqhofcvo4"  # incidentkit.db.demo.INCIDENT_USER
INCIDENT_WORKSPACE = "a7189b92-ba75-4160-8fa0-426bfe8fa33a"  # incidentkit.db.demo.INCIDENT_WORKSPACE
INCIDENT_ADMIN = "did:privy:cmepupsjwkkftpvfdaww49bkb"  # who deleted it
INCIDENT_MS = 1_759_916_487_164  # 2025-10-08T09:41:27.164Z, the failed login in demo-app.log
DELETED_MS = INCIDENT_MS - 46  # the workspace's deletion (audit transaction 919)
DAY_MS = 86_400_000
#: Where in the file (fraction of its bytes) the incident falls.
INCIDENT_AT = 0.3

_FK = "users_primary_workspace_id_workspaces_id_fk"


def _uuid(seed: str) -> str:
    h = hashlib.md5(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _pg_ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _pg_ts_s(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


# -- the families: one record (possibly several lines) at a time ---------------------------------
class _Family:
    """Writes ordinary records, failure records and the incident's records, each ending in a newline."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.users = ["did:privy:cm" + hashlib.md5(f"log{i}".encode()).hexdigest()[:23] for i in range(2000)]

    def ordinary(self, ms: int, n: int) -> str:
        raise NotImplementedError

    def failure(self, ms: int, n: int, user: str, workspace: str) -> str:
        raise NotImplementedError

    def incident(self) -> str:
        raise NotImplementedError


class _Text(_Family):
    def ordinary(self, ms, n):
        rng = self.rng
        route = rng.choice(applog._ROUTES).format(ms=rng.randint(5, 400))
        return f"{applog._ts(ms)} info  [web] {route} user={rng.choice(self.users)} requestId=req_{n:08x}\n"

    def failure(self, ms, n, user, workspace):
        return applog._failure_block(ms, user, workspace, f"req_{n:08x}")

    def incident(self):
        # demo-app.log's lines around the failed login (the admin deletes the workspace meanwhile).
        a, ts = INCIDENT_ADMIN, applog._ts
        return (f"{ts(INCIDENT_MS - 275)} info  [web] POST /api/trpc/workspace.delete start user={a} "
                f"workspaceId={INCIDENT_WORKSPACE} requestId=req_7f3aa402\n"
                + applog._failure_block(INCIDENT_MS, INCIDENT_USER, INCIDENT_WORKSPACE, "req_7f3aa4e8")
                + f"{ts(INCIDENT_MS + 4238)} info  [web] GET /api/trpc/workspace.list 200 in 35ms user={a} "
                f"requestId=req_7f3aa9b7\n")


_DD_HEAD = ('{{"id": "{id}", "type": "log", "attributes": {{"service": "web-app", "host": "i-0a1b2c3d4e5f60718", '
            '"status": "{status}", "timestamp": "{ts}", "tags": ["env:production", "service:web-app", '
            '"source:nodejs", "version:2025.10.08-1"], ')
_DD_STACK = ('\\n    at /var/task/node_modules/pg-pool/index.js:45:11\\n    at process.processTicksAndRejections '
             '(node:internal/process/task_queues:95:5)\\n    at async ensureUserWorkspace '
             '(/var/task/.next/server/chunks/8861.js:1:20512)')
_DD_ERR = f'insert or update on table \\"users\\" violates foreign key constraint \\"{_FK}\\"'
_DD_PATHS = ("workspace.list", "workspace.members", "document.save", "user.me", "document.list")


class _Datadog(_Family):
    def _id(self, n: int) -> str:
        return "AgAAAZnF" + hashlib.md5(f"dd{n}".encode()).hexdigest() + "AAAAAEFabkY1ZjFrQUFCVHNQTlNWVFRPcXdBQQ"

    def ordinary(self, ms, n):
        rng = self.rng
        path = rng.choice(_DD_PATHS)
        method = "POST" if path == "document.save" else "GET"
        if n % 2:
            msg = f"--> {method} /api/trpc/{path}?batch=1"
            http = f'{{"method": "{method}", "url_details": {{"path": "/api/trpc/{path}"}}}}'
        else:
            msg = f"<-- {method} /api/trpc/{path}?batch=1 200 {rng.randint(5, 400)}ms"
            http = f'{{"method": "{method}", "status_code": 200, "url_details": {{"path": "/api/trpc/{path}"}}}}'
        return (_DD_HEAD.format(id=self._id(n), status="info", ts=applog._ts(ms))
                + f'"message": "{msg}", "attributes": {{"http": {http}, "usr": {{"id": "{rng.choice(self.users)}"}}, '
                f'"logger": {{"name": "http"}}}}}}}}\n')

    def failure(self, ms, n, user, workspace):
        head = _DD_HEAD.format(id=self._id(n), status="error", ts=applog._ts(ms))
        detail = f'Key (primary_workspace_id)=({workspace}) is not present in table \\"workspaces\\".'
        http = ('"http": {"method": "POST", "status_code": 500, "url_details": {"path": '
                '"/api/trpc/workspace.getOrCreateWorkspaceV2"}}')
        self.k = getattr(self, "k", 0) + 1
        if self.k % 2 == 0:  # datadog.jsonl line 2: the error in attributes, its stack on several lines
            return (head + f'"message": "tRPC failed on workspace.getOrCreateWorkspaceV2: {_DD_ERR}", "attributes": '
                    f'{{"error": {{"kind": "DatabaseError", "message": "{_DD_ERR}", "stack": "error: {_DD_ERR}'
                    f'{_DD_STACK}"}}, "db": {{"system": "postgresql", "code": "23503", "detail": "{detail}", '
                    f'"constraint": "{_FK}"}}, {http}, "usr": {{"id": "{user}"}}, "logger": {{"name": "trpc"}}}}}}}}\n')
        # datadog.jsonl line 3: a multi-line message holding the error and its Detail line
        return (head + f'"message": "ensureUserWorkspace failed\\nerror: {_DD_ERR}\\nDetail: {detail}", '
                f'"attributes": {{"userId": "{user}", "logger": {{"name": "workspace"}}, {http}}}}}}}\n')

    def incident(self):
        a = INCIDENT_ADMIN
        return (_DD_HEAD.format(id=self._id(-1), status="info", ts=applog._ts(INCIDENT_MS - 275))
                + f'"message": "--> POST /api/trpc/workspace.delete?batch=1", "attributes": {{"http": {{"method": '
                f'"POST", "url_details": {{"path": "/api/trpc/workspace.delete"}}}}, "usr": {{"id": "{a}"}}, '
                f'"logger": {{"name": "http"}}}}}}}}\n'
                + _DD_HEAD.format(id=self._id(-2), status="info", ts=applog._ts(INCIDENT_MS - 61))
                + f'"message": "--> POST /api/trpc/workspace.getOrCreateWorkspaceV2?batch=1", "attributes": '
                f'{{"http": {{"method": "POST", "url_details": {{"path": "/api/trpc/workspace.getOrCreateWorkspaceV2"}}}}, '
                f'"usr": {{"id": "{INCIDENT_USER}"}}, "logger": {{"name": "http"}}}}}}}}\n'
                + self.failure(INCIDENT_MS, 1, INCIDENT_USER, INCIDENT_WORKSPACE))


class _Server(_Family):
    """Both server families share the traffic: (severity, message, detail, context, statement) per line."""

    def __init__(self, rng):
        super().__init__(rng)
        self.pids = [rng.randint(20_000, 60_000) for _ in range(24)]
        self.vx = 1000

    def _ordinary_events(self, n):
        rng, u = self.rng, self.rng.choice(self.users)
        kind = n % 4
        if kind == 0:
            return "INSERT", "execute <unnamed>: insert into documents (id, workspace_id, title) values ($1, $2, $3)", \
                f"parameters: $1 = '{_uuid(f'd{n}')}', $2 = '{_uuid(f'w{n % 977}')}', $3 = 'Notes {n}'"
        if kind == 1:
            return "UPDATE", "execute <unnamed>: update users set last_seen_at = now() where privy_did = $1", \
                f"parameters: $1 = '{u}'"
        if kind == 2:
            return "INSERT", "execute <unnamed>: insert into workspace_members (workspace_id, user_id) values ($1, $2)", \
                f"parameters: $1 = '{_uuid(f'w{n % 977}')}', $2 = '{u}'"
        return "UPDATE", "execute _pg3_0: update documents set title = $1, updated_at = now() where id = $2", \
            f"parameters: $1 = 'Draft {rng.randint(1, 99)}', $2 = '{_uuid(f'd{n // 3}')}'"

    def _failure_events(self, user, workspace):
        return ("ERROR", f'insert or update on table "users" violates foreign key constraint "{_FK}"',
                f'Key (primary_workspace_id)=({workspace}) is not present in table "workspaces".',
                f"unnamed portal with parameters: $1 = '{user}', $2 = '{workspace}'",
                "insert into users (privy_did, primary_workspace_id) values ($1, $2)")


class _PgStderr(_Server):
    def _prefix(self, ms, pid, app="web"):
        return f"{_pg_ts(ms)} [{pid}] postgres@incident_app/{app} "

    def ordinary(self, ms, n):
        _, msg, detail = self._ordinary_events(n)
        p = self._prefix(ms, self.pids[n % len(self.pids)])
        return f"{p}LOG:  {msg}\n{p}DETAIL:  {detail}\n"

    def failure(self, ms, n, user, workspace, pid=None):
        _, msg, detail, context, stmt = self._failure_events(user, workspace)
        p = self._prefix(ms, pid or self.pids[n % len(self.pids)])
        return (f"{p}LOG:  execute <unnamed>: insert into users (privy_did, primary_workspace_id) values ($1, $2)\n"
                f"{p}DETAIL:  parameters: $1 = '{user}', $2 = '{workspace}'\n"
                f"{p}ERROR:  {msg}\n{p}DETAIL:  {detail}\n{p}CONTEXT:  {context}\n{p}STATEMENT:  {stmt}\n")

    def incident(self):
        p = self._prefix(DELETED_MS, 31_337)
        return (f"{p}LOG:  execute <unnamed>: delete from workspaces where id = $1\n"
                f"{p}DETAIL:  parameters: $1 = '{INCIDENT_WORKSPACE}'\n"
                + self.failure(INCIDENT_MS, 0, INCIDENT_USER, INCIDENT_WORKSPACE, pid=31_338))


class _PgJson(_Server):
    def _record(self, ms, pid, n, ps, severity, message, detail=None, context=None, statement=None, txid=0):
        esc = (lambda s: s.replace("\\", "\\\\").replace('"', '\\"'))
        self.vx += 1
        out = (f'{{"timestamp":"{_pg_ts(ms)}","user":"postgres","dbname":"incident_app","pid":{pid},'
               f'"remote_host":"10.0.3.17","remote_port":{40000 + pid % 20000},"session_id":"68e6{pid:x}.{pid:x}",'
               f'"line_num":{n},"ps":"{ps}","session_start":"{_pg_ts_s(ms - 3_600_000)}","vxid":"4/{self.vx}",'
               f'"txid":{txid},"error_severity":"{severity}",')
        if severity == "ERROR":
            out += '"state_code":"23503",'
        out += f'"message":"{esc(message)}"'
        if detail:
            out += f',"detail":"{esc(detail)}"'
        if context:
            out += f',"context":"{esc(context)}"'
        if statement:
            out += f',"statement":"{esc(statement)}"'
        return out + ',"application_name":"web","backend_type":"client backend","query_id":0}\n'

    def ordinary(self, ms, n):
        ps, msg, detail = self._ordinary_events(n)
        return self._record(ms, self.pids[n % len(self.pids)], n, ps, "LOG", msg, detail)

    def failure(self, ms, n, user, workspace, pid=None):
        _, msg, detail, context, stmt = self._failure_events(user, workspace)
        pid = pid or self.pids[n % len(self.pids)]
        return (self._record(ms, pid, n, "INSERT", "LOG", f"execute <unnamed>: {stmt}",
                             f"parameters: $1 = '{user}', $2 = '{workspace}'")
                + self._record(ms, pid, n + 1, "INSERT", "ERROR", msg, detail, context, stmt, txid=7000 + n % 1000))

    def incident(self):
        return (self._record(DELETED_MS, 31_337, 1, "DELETE", "LOG", "execute <unnamed>: delete from workspaces where id = $1",
                             f"parameters: $1 = '{INCIDENT_WORKSPACE}'")
                + self.failure(INCIDENT_MS, 0, INCIDENT_USER, INCIDENT_WORKSPACE, pid=31_338))


_CLASSES = {"text": _Text, "jsonl": _Datadog, "pg_stderr": _PgStderr, "pg_json": _PgJson}
_SUFFIX = {"text": ".log", "jsonl": ".jsonl", "pg_stderr": "", "pg_json": ".json"}


def _count(block: str, needle: str) -> int:
    return sum(1 for line in block.splitlines() if needle in line)


def write_log(family: str, path: Path, size_bytes: int, every: int = 5000, seed: int = 13) -> dict:
    """Write about ``size_bytes`` of ``family`` to ``path``: a day of records, a failure every ``every``
    records, the demo incident at :data:`INCIDENT_AT` of the file. Returns (and stores next to it) its facts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    fam = _CLASSES[family](rng)
    ms_per_byte = DAY_MS / size_bytes
    t = INCIDENT_MS - INCIDENT_AT * DAY_MS - 2000  # the clock follows the bytes: the file spans a day
    tmp = path.with_name(path.name + ".tmp")
    written = n = failures = error_lines = user_lines = lines = 0
    incident_done = False
    with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as fh:
        while written < size_bytes:
            parts = []
            for _ in range(1000):
                n += 1
                ms = int(t)
                if not incident_done and ms >= INCIDENT_MS - 1000:
                    rec = fam.incident()
                    incident_done = True
                    failures += 1
                    error_lines += _count(rec, NEEDLE)
                    user_lines += _count(rec, INCIDENT_USER)
                    t = INCIDENT_MS + 5000
                elif n % every == 0:
                    ws = _uuid(f"ws{n}")
                    rec = fam.failure(ms, n, rng.choice(fam.users), ws)
                    failures += 1
                    error_lines += _count(rec, NEEDLE)
                else:
                    rec = fam.ordinary(ms, n)
                parts.append(rec)
                t += len(rec) * ms_per_byte * (0.5 + rng.random())
            chunk = "".join(parts)
            fh.write(chunk)
            written += len(chunk.encode()) if not chunk.isascii() else len(chunk)
            lines += chunk.count("\n")
    if not incident_done:  # a file too small to reach the incident's time still holds it, at its end
        rec = fam.incident()
        with open(tmp, "a", encoding="utf-8") as fh:
            fh.write(rec)
        failures += 1
        error_lines += _count(rec, NEEDLE)
        user_lines += _count(rec, INCIDENT_USER)
        lines += rec.count("\n")
    os.replace(tmp, path)
    facts = {"family": family, "version": VERSION, "bytes": path.stat().st_size, "lines": lines,
             "records": n, "failures": failures, "error_lines": error_lines, "incident_user": INCIDENT_USER,
             "user_lines": user_lines, "every": every}
    _facts_path(path).write_text(json.dumps(facts, indent=1))
    return facts


def _facts_path(path: Path) -> Path:
    return path.with_name(path.name + ".facts.json")


def _size_label(size_bytes: int) -> str:
    return f"{size_bytes >> 30}G" if size_bytes % (1 << 30) == 0 else f"{size_bytes >> 20}M"


def log_path(data_dir: Path, family: str, size_bytes: int) -> Path:
    return data_dir / f"{family}-{_size_label(size_bytes)}-v{VERSION}{_SUFFIX[family]}"


def ensure(data_dir: Path, family: str, size_bytes: int, say=lambda m: None) -> tuple[Path, dict]:
    """The generated log of ``family`` and ``size_bytes`` (written now, or reused) and its facts."""
    path = log_path(data_dir, family, size_bytes)
    fp = _facts_path(path)
    if path.exists() and fp.exists():
        facts = json.loads(fp.read_text())
        if facts.get("version") == VERSION and facts.get("bytes") == path.stat().st_size:
            say(f"logs: reusing {path}")
            return path, facts
    say(f"logs: writing {path} ({size_bytes >> 20} MB of {family})")
    return path, write_log(family, path, size_bytes)


def ensure_gz(path: Path, say=lambda m: None) -> Path:
    """``path`` gzipped (``gzip -6``, or ``pigz`` when installed) next to it, written once."""
    gz = path.with_name(path.name + ".gz")
    if gz.exists() and gz.stat().st_mtime >= path.stat().st_mtime:
        say(f"logs: reusing {gz}")
        return gz
    say(f"logs: gzipping {path.name}")
    tool = shutil.which("pigz") or shutil.which("gzip")
    tmp = gz.with_name(gz.name + ".tmp")
    with open(tmp, "wb") as out:
        subprocess.run([tool, "-6", "-c", str(path)], stdout=out, check=True)
    os.replace(tmp, gz)
    return gz
