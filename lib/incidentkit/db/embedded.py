"""The embedded PostgreSQL server the kit starts itself for the demo and the tests.

Binaries come from the ``pgserver`` wheel (PostgreSQL 16, pip-installed), or else from a
PostgreSQL installation on the machine (``initdb``/``pg_ctl`` on PATH, or Debian's
``/usr/lib/postgresql/N/bin``). The data directory lives in the kit's cache directory, is
reused across runs, started on demand and stopped with ``pg_ctl stop -m fast``.

The server listens on 127.0.0.1 only, on a port chosen once and kept in its configuration.
The superuser ``postgres`` logs in without a password from 127.0.0.1; every other role needs
its password (SCRAM), so tests can exercise real authentication. The server writes its own
logs as ``stderr`` text, ``csvlog`` and (PostgreSQL 15+) ``jsonlog``, with bind parameters
on error, because the log ingestion reads exactly those.

Several kit processes may use the server at once (two commands, cron, a notebook kernel):
each takes a *lease* (a file named by its PID in ``.<datadir>.leases/`` beside the data
directory). A server started on demand is stopped by the last process to release its lease,
never under another one; ``incidentkit server start`` keeps it running until ``server stop``,
which refuses while other kit processes use it (unless ``--force``). A ``postmaster.pid`` whose
PID is not our postmaster (a crash, then the PID reused) is recognised as stale and replaced.

PostgreSQL refuses to run as root; when the kit runs as root it runs the server as the
system user ``incidentkit`` (created with ``useradd`` when missing).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..exceptions import EmbeddedServerError

SERVER_USER = "incidentkit"
SUPERUSER = "postgres"
HOST = "127.0.0.1"

_CONF_MARK = "# --- incidentkit settings ---"

#: Servers this process holds a lease on (the CLI releases them when its verb is done; the last
#: process to release a server that was started on demand stops it).
STARTED_HERE: list["EmbeddedServer"] = []


def installed_bin_dirs() -> list[Path]:
    """Every PostgreSQL installation this machine has (pgserver's wheel, PATH, Debian's), newest first."""
    seen: list[Path] = []
    spec = importlib.util.find_spec("pgserver")
    dirs = [Path(loc) / "pginstall" / "bin" for loc in (spec.submodule_search_locations or [])] if spec else []
    on_path = shutil.which("pg_ctl")
    dirs += [Path(on_path).resolve().parent] if on_path else []
    dirs += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for d in dirs:
        if all((d / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")) and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def find_bin_dir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are: pgserver's wheel first, then the machine."""
    env = os.environ.get("INCIDENTKIT_PG_BIN")
    candidates: list[Path] = []
    if env:
        candidates.append(Path(env))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "pginstall" / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        candidates.append(Path(d))
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    raise EmbeddedServerError(
        "no PostgreSQL binaries found: install the kit's dependencies (pip install -e .) "
        "which bring pgserver, or install PostgreSQL so that pg_ctl is on PATH"
    )


def _version_key(path: str) -> int:
    m = re.search(r"/(\d+)/bin$", path)
    return int(m.group(1)) if m else 0


#: ``postgres --version`` answers already known to this process: {binary's key: major}.
_VERSIONS: dict[str, int] = {}


def _versions_file() -> Path:
    return config.cache_dir() / ".pg-versions.json"


def _binary_key(exe: Path) -> str | None:
    """What identifies a binary's build: its real path, size, modification time and inode."""
    try:
        real = exe.resolve()
        st = real.stat()
    except OSError:
        return None
    return f"{real}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def server_version(bin_dir: Path) -> int:
    """The major version of the binaries in ``bin_dir`` (e.g. 16).

    ``postgres --version`` is run once per binary: its answer is kept (in this process and in
    the cache directory's ``.pg-versions.json``) under the binary's path, size, modification
    time and inode, so a replaced or upgraded binary is asked again."""
    import json

    exe = Path(bin_dir) / "postgres"
    key = _binary_key(exe)
    if key is not None and key in _VERSIONS:
        return _VERSIONS[key]
    known: dict = {}
    if key is not None:
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(_versions_file().read_text(encoding="utf-8"))
            known = loaded if isinstance(loaded, dict) else {}
        major = known.get(key)
        if type(major) is int and 0 < major < 1000:
            _VERSIONS[key] = major
            return major
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    if not m:
        raise EmbeddedServerError(f"cannot read the PostgreSQL version from {out.strip()!r}")
    major = int(m.group(1))
    if key is not None and key == _binary_key(exe):  # unchanged while it answered
        _VERSIONS[key] = major
        known = {k: v for k, v in known.items() if type(v) is int and Path(k.rsplit("|", 3)[0]).exists()}
        known[key] = major
        path = _versions_file()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)
    return major


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As PostgreSQL does: a port whose old connections linger in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (ours or not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_identity(pid: int) -> str | None:
    """The process's start time (``/proc/PID/stat`` field 22): tells a PID from its reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _is_our_postmaster(pid: int, data_dir: Path) -> bool | None:
    """Whether ``pid`` is a ``postgres`` serving ``data_dir``; None when ``/proc`` cannot tell."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if not argv or not argv[0]:
        return None  # a zombie, or a kernel thread: no command line to judge by
    if os.path.basename(argv[0].decode(errors="replace")) not in ("postgres", "postmaster"):
        return False
    args = [a.decode(errors="replace") for a in argv[1:]]
    for i, a in enumerate(args):
        value = None
        if a == "-D" and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith("-D") and len(a) > 2:
            value = a[2:]
        if value is not None:
            with contextlib.suppress(OSError):
                return Path(value).resolve() == data_dir.resolve()
            return False
    return None  # started without -D (PGDATA): the port decides


def _ensure_system_user() -> str | None:
    """The user to run the server as: None normally, ``incidentkit`` when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                       check=True, capture_output=True)
    return SERVER_USER


def _make_traversable(path: Path) -> None:
    """Let the server's user reach ``path``: add o+x (traverse, not read) on each parent."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        except OSError:
            pass


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in files:
            try:
                os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
            except OSError:
                pass


@dataclass
class EmbeddedServer:
    """One PostgreSQL cluster in ``data_dir``; ``start()`` is idempotent and safe across processes."""

    data_dir: Path
    fast_unsafe: bool = False  # fsync off: for throwaway test clusters only
    bin_dir: Path | None = None  # PostgreSQL binaries to use; None: find_bin_dir()

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        self.bin_dir = Path(self.bin_dir) if self.bin_dir else find_bin_dir()
        self.major = server_version(self.bin_dir)
        self.port: int | None = None
        self.started_here = False

    # -- life cycle ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self):
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        user = _ensure_system_user()
        # As root, drop to the server's user *and* its group only: keeping root's group would
        # deny traversal of a 0701 /root, where a pip-installed pgserver usually lives.
        drop = {"user": user, "group": user, "extra_groups": []} if user else {}
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd="/",
                                  check=True, stdin=subprocess.DEVNULL, **drop)
        except subprocess.CalledProcessError as e:
            tail = (e.stderr or e.stdout or "").strip().splitlines()[-3:]
            raise EmbeddedServerError(f"{Path(args[0]).name} failed: {' / '.join(tail) or e}") from None
        except subprocess.TimeoutExpired:
            raise EmbeddedServerError(f"{Path(args[0]).name} did not finish within {timeout:.0f} s") from None

    def _initdb(self) -> None:
        user = _ensure_system_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            _make_traversable(self.data_dir.parent)
            _make_traversable(self.bin_dir)
            _chown_tree(self.data_dir, user)
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                   "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                   "--locale=C", "--no-instructions"], timeout=120)
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# incidentkit embedded server: the superuser trusts loopback, every other role uses SCRAM\n"
            "local all all trust\n"
            f"host all {SUPERUSER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    def _write_conf(self, port: int) -> None:
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        if _CONF_MARK in text:
            text = text[: text.index(_CONF_MARK)]
        dests = "stderr,csvlog,jsonlog" if self.major >= 15 else "stderr,csvlog"
        settings = {
            "listen_addresses": f"'{HOST}'",
            "port": str(port),
            "unix_socket_directories": "''",
            "max_connections": "100",
            "shared_buffers": "'128MB'",
            "synchronous_commit": "off",
            "logging_collector": "on",
            "log_destination": f"'{dests}'",
            "log_directory": "'log'",
            "log_filename": "'postgresql'",
            "log_rotation_age": "0",
            "log_rotation_size": "0",
            "log_truncate_on_rotation": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d/%a '",
            "log_min_error_statement": "error",
            "log_parameter_max_length_on_error": "-1",
            "log_timezone": "'UTC'",
            "timezone": "'UTC'",
            # dates rows whose table has no created_at column (as some production servers do)
            "track_commit_timestamp": "on",
        }
        if self.fast_unsafe:
            settings.update({"fsync": "off", "full_page_writes": "off"})
        lines = [_CONF_MARK] + [f"{k} = {v}" for k, v in settings.items()]
        conf.write_text(text + "\n".join(lines) + "\n")

    def _read_pid_file(self) -> tuple[int, int] | None:
        """``(pid, port)`` of *our* postmaster, or None when none runs on this data directory.

        A ``postmaster.pid`` left by a crash may name a PID that now belongs to another process:
        the PID must be a ``postgres`` whose data directory is ours (``/proc``), and when that
        cannot be read, its port must answer.
        """
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not pid_alive(pid):
            return None
        ours = _is_our_postmaster(pid, self.data_dir)
        if ours is False:
            return None
        if ours is None and not _port_answers(port):
            return None
        return pid, port

    def _stale_pid_file(self) -> bool:
        """True when ``postmaster.pid`` exists but names no postmaster of ours (safe to remove)."""
        return (self.data_dir / "postmaster.pid").exists() and self._read_pid_file() is None

    def is_running(self) -> bool:
        return self._read_pid_file() is not None

    # -- leases: which processes use the server --------------------------------------------
    @property
    def _lease_dir(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.leases"

    @property
    def _on_demand_mark(self) -> Path:
        return self._lease_dir / "started-on-demand"

    def _take_lease(self) -> None:
        self._lease_dir.mkdir(parents=True, exist_ok=True)
        (self._lease_dir / f"{os.getpid()}.lease").write_text(_process_identity(os.getpid()) or "")
        if self not in STARTED_HERE:
            STARTED_HERE.append(self)

    def holders(self, include_self: bool = False) -> list[int]:
        """PIDs of the live kit processes holding a lease on this server (dead ones are pruned)."""
        out = []
        for lease in sorted(self._lease_dir.glob("*.lease")) if self._lease_dir.is_dir() else []:
            try:
                pid = int(lease.name.split(".")[0])
                identity = lease.read_text()
            except (OSError, ValueError):
                continue
            if pid_alive(pid) and (not identity or identity == _process_identity(pid)):
                if include_self or pid != os.getpid():
                    out.append(pid)
            else:
                with contextlib.suppress(OSError):
                    lease.unlink()
        return out

    def release(self) -> bool:
        """Give up this process's lease; stop the server when it was started on demand and no other
        kit process holds a lease on it any more. True when it was stopped."""
        with self._lock():
            with contextlib.suppress(OSError):
                (self._lease_dir / f"{os.getpid()}.lease").unlink()
            if self in STARTED_HERE:
                STARTED_HERE.remove(self)
            if self.holders() or not self._on_demand_mark.exists():
                return False
            with contextlib.suppress(OSError):
                self._on_demand_mark.unlink()
            return self._stop_locked()

    def stop_if_orphaned(self) -> bool:
        """Stop a server started on demand whose starters have all exited (e.g. a report's kernel
        started it for the race lab): no live kit process holds a lease. True when stopped."""
        if not self._on_demand_mark.exists():
            return False
        with self._lock():
            if self.holders(include_self=True) or not self._on_demand_mark.exists():
                return False
            with contextlib.suppress(OSError):
                self._on_demand_mark.unlink()
            return self._stop_locked()

    def start(self, persistent: bool = False) -> "EmbeddedServer":
        """Initialise the cluster if needed and start it if it is not running.

        This process takes a lease on the server (see :meth:`release`). A server started on
        demand is stopped by the last process to release it; ``persistent=True`` (``incidentkit
        server start``) keeps it running until ``incidentkit server stop``.
        """
        with self._lock():
            if persistent:
                with contextlib.suppress(OSError):
                    self._on_demand_mark.unlink()
            else:
                self._take_lease()
            running = self._read_pid_file()
            if running:
                self.port = running[1]
                return self
            if self._stale_pid_file():
                # Left by a crash; its PID is not our postmaster (PostgreSQL would refuse to start).
                (self.data_dir / "postmaster.pid").unlink()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            port = self._configured_port()
            if port is None or not _port_free(port):
                port = _free_port()
            self._write_conf(port)
            if _ensure_system_user():
                _chown_tree(self.data_dir, SERVER_USER)
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60",
                       "-l", str(self.data_dir / "startup.log"), "start"], timeout=90)
            self.port = port
            self.started_here = True
            if not persistent:
                self._lease_dir.mkdir(parents=True, exist_ok=True)
                self._on_demand_mark.write_text(str(os.getpid()))
        self._wait_ready()
        return self

    def _configured_port(self) -> int | None:
        conf = self.data_dir / "postgresql.conf"
        if not conf.exists():
            return None
        m = re.findall(r"^port = (\d+)", conf.read_text(), re.M)
        return int(m[-1]) if m else None

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise EmbeddedServerError(f"the embedded server did not accept connections on port {self.port}")

    def stop(self) -> bool:
        """Stop the server cleanly (``pg_ctl stop -m fast``) whoever uses it; True when it was running.

        ``incidentkit server stop`` checks :meth:`holders` first; this method does not.
        """
        with self._lock():
            with contextlib.suppress(OSError):
                self._on_demand_mark.unlink()
            return self._stop_locked()

    def _stop_locked(self) -> bool:
        if not self.is_running():
            if self._stale_pid_file():
                with contextlib.suppress(OSError):
                    (self.data_dir / "postmaster.pid").unlink()
            return False
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60",
                   "-m", "fast", "stop"], timeout=90)
        return True

    def restart(self) -> "EmbeddedServer":
        self.stop()
        return self.start()

    # -- connecting ---------------------------------------------------------------------
    def url(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        """A libpq URL (``postgresql://``) to a database on this server."""
        if self.port is None:
            self.start()
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@{HOST}:{self.port}/{dbname}"

    def sqlalchemy_url(self, dbname: str = "postgres") -> str:
        return self.url(dbname).replace("postgresql://", "postgresql+psycopg://", 1)

    def admin(self, dbname: str = "postgres"):
        """A psycopg autocommit connection as the superuser (for set-up, never for the kit's reads)."""
        import psycopg

        return psycopg.connect(self.url(dbname), autocommit=True)

    def database_exists(self, name: str) -> bool:
        with self.admin() as conn:
            return conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is not None

    def create_database(self, name: str, template: str | None = None, replace: bool = False) -> str:
        """Create database ``name`` (from ``template`` when given) and return its URL."""
        from psycopg import sql

        with self.admin() as conn:
            if replace:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            stmt = sql.SQL("create database {}").format(sql.Identifier(name))
            if template:
                stmt = sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template))
            conn.execute(stmt)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"


def stop_started_here() -> None:
    """Release every server this process holds a lease on: one started on demand is stopped,
    cleanly, by the last kit process to release it (never under another one still using it)."""
    while STARTED_HERE:
        server = STARTED_HERE[-1]
        try:
            server.release()
        except EmbeddedServerError:
            pass
        finally:
            if server in STARTED_HERE:
                STARTED_HERE.remove(server)


def default_server(fast_unsafe: bool = False) -> EmbeddedServer:
    """The kit's own server, in the cache directory, for the demo and interactive use."""
    major = server_version(find_bin_dir())
    return EmbeddedServer(config.cache_dir() / f"pg{major}", fast_unsafe=fast_unsafe)


def ensure_server() -> EmbeddedServer:
    """Start (on demand) and return the kit's own embedded server."""
    return default_server().start()
