"""Point-in-time ("as-of") probes: did workspace W exist at time t?

A production database without an audit table still has a history when its platform keeps one:
Neon gives a connection URL of the database *as it was* at any instant within its retention
(``neonctl connection-string main@2025-10-08T09:41:27.118Z``), and a self-hosted server can
script a point-in-time restore. The user names that command once, with ``{at}`` where the time
goes (:class:`AsOfCommand`); the kit runs it per probe time and asks the database it returns
whether the workspace was there (:func:`exists_at`).

The search (:func:`probe`, pure) walks backwards from the failure: the first probe is 5 ms
before it, then the offsets widen by a factor of 4 (20 ms, 80 ms, ... up to ``since``, 7 days
by default: 15 probes), so a deletion long before the failure is reached in few probes. The
first probe that finds the workspace present ends that walk; the interval between it and the
probe before (absent) is then bisected down to ``precision`` (10 ms). A 7-day search stays
within 40 probes; ``max_probes`` is a hard limit (the result then says it was cut). Probe
times are whole milliseconds, so ``{at}`` is always ``2025-10-08T09:41:27.118Z``. The result
is a :class:`Bracket`: existed at t1, gone at t2; present at the first probe (the failure
itself bounds the deletion); or absent at every probe back to ``since``. The walk assumes
the workspace, once created, lived until its deletion: an existence shorter than the gap
between two probes of the walk can be stepped over (then it reports absence).
:class:`AsOfProber` puts it together and caches both the URL per time and the answer per
(time, workspace), so several failures of one workspace share their probes.

Safety rules:

* the command runs without a shell (split like a shell does, ``shlex``), stdin closed, with
  a timeout (its whole process group is killed when it runs over) and a cap on what it may print;
* the URL it prints is never printed, logged, put in an exception message or a ``repr``; the
  command is named in errors by its executable's base name only (its arguments may carry a
  token), and the last line of its stderr, when shown, has every URL and credential scrubbed;
* the database it returns is read in one ``READ ONLY`` transaction (``BEGIN READ ONLY``:
  per transaction, as :mod:`incidentkit.db.connection` does, so a transaction-mode pooler
  keeps no session setting) with a statement timeout and ``application_name`` ``incidentkit-asof``;
  identifiers are composed with :mod:`psycopg.sql`, ids are bound values compared as text
  (uuid and text ids alike; a soft-deleted row counts as absent).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from ..exceptions import AsOfError, ConfigError
from ..text import as_utc, conninfo_parts, first_line, fmt_duration, fmt_time, iso_utc, one_line, scrub_secrets

#: ``application_name`` of the connections to the databases the as-of command returns.
APPLICATION_NAME = "incidentkit-asof"
#: The placeholder the command template must hold.
PLACEHOLDER = "{at}"
#: The first probe: this long before the failure.
FIRST_OFFSET = timedelta(milliseconds=5)
#: How much farther back each probe of the backward walk goes than the one before.
GROWTH = 4
#: The most the command may print on stdout (a URL is a line; anything past this is a fault).
MAX_STDOUT_BYTES = 1024 * 1024
#: How much of the command's stderr is kept (its last line is all that is ever shown).
STDERR_TAIL_BYTES = 8192
#: Defaults of the search.
DEFAULT_SINCE = timedelta(days=7)
DEFAULT_PRECISION = timedelta(milliseconds=10)
DEFAULT_MAX_PROBES = 40

_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")
_CREDENTIAL_OPTION = re.compile(r"key|token|secret|passw|auth|cred", re.I)
_TOKEN_LIKE = re.compile(r"(?=.*[A-Za-z])(?=.*[0-9])")


def _ms(at: datetime) -> datetime:
    """``at`` in UTC, cut down to a whole millisecond."""
    at = at.astimezone(timezone.utc)
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


def at_text(at: datetime) -> str:
    """What ``{at}`` becomes: ISO 8601 UTC with milliseconds, ``2025-10-08T09:41:27.118Z``."""
    return iso_utc(_ms(_utc(at)))


def _utc(at: datetime) -> datetime:
    value = as_utc(at)
    if value is None:
        raise ConfigError(f"not a time: {one_line(repr(at), 80)}")
    return value


# -- 1. the command ----------------------------------------------------------------------
class AsOfCommand:
    """The user's command that prints a URL of the database as it was at ``{at}``.

    ``AsOfCommand("neonctl connection-string main@{at} --project-id x")``: split like a shell,
    run without one; ``{at}`` is replaced inside every argument. :meth:`url_at` runs it.
    """

    def __init__(self, template: str, timeout: float = 120.0):
        if not isinstance(template, str) or not template.strip():
            raise ConfigError("the as-of command is empty (e.g. 'neonctl connection-string main@{at}')")
        try:
            argv = shlex.split(template)
        except ValueError as e:  # unbalanced quotes; the template itself is never quoted back
            raise ConfigError(f"the as-of command cannot be split like a shell would: {one_line(e, 80)}") from None
        if not argv:
            raise ConfigError("the as-of command is empty (e.g. 'neonctl connection-string main@{at}')")
        self.name = one_line(os.path.basename(argv[0]) or argv[0], 80)
        if not any(PLACEHOLDER in arg for arg in argv):
            raise ConfigError(f"the as-of command ({self.name} ...) has no {PLACEHOLDER} where the time goes "
                              "(e.g. 'neonctl connection-string main@{at}')")
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            raise ConfigError(f"the as-of command's timeout must be a number of seconds, not {timeout!r}") from None
        if not timeout > 0:
            raise ConfigError("the as-of command's timeout must be more than 0 s")
        self.timeout = timeout
        self._argv = argv
        # Arguments that may be tokens, scrubbed from any stderr line shown: the value of an option
        # named like a credential (``--api-key X``, ``--token=X``), and any long word of letters and digits.
        secrets = []
        previous = ""
        for arg in argv[1:]:
            name, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
            flag = name if eq else previous
            if PLACEHOLDER not in arg and value and (
                    _CREDENTIAL_OPTION.search(flag) or (len(value) >= 16 and _TOKEN_LIKE.search(value))):
                secrets.append(value)
            previous = arg if arg.startswith("-") and not eq else ""
        self._secrets = secrets

    def __repr__(self) -> str:
        return f"AsOfCommand({self.name} ..., timeout={self.timeout:g})"

    def argv(self, at: datetime) -> list[str]:
        """The arguments for one time (never shown: they may carry a token)."""
        stamp = at_text(at)
        return [arg.replace(PLACEHOLDER, stamp) for arg in self._argv]

    def scrub(self, text: Any) -> str:
        """``text`` as one short line with every URL-like word and credential replaced."""
        out = _URL_LIKE.sub("<url>", str(text))
        return one_line(scrub_secrets(out, self._secrets), 200)

    def url_at(self, at: datetime) -> str:
        """Run the command for ``at``; the last non-empty line of its stdout, stripped.

        Raises :class:`AsOfError` (one line, the command named by its executable only) when it
        is missing, runs over its timeout, exits non-zero, prints too much, or prints no URL.
        """
        stamp = at_text(at)
        what = f"the as-of command {self.name!r}"
        try:
            proc = subprocess.Popen(self.argv(at), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except FileNotFoundError:
            raise AsOfError(f"{what} was not found (is it installed and on PATH?)") from None
        except PermissionError:
            raise AsOfError(f"{what} is not executable") from None
        except OSError as e:
            raise AsOfError(f"{what} could not be started: {e.strerror or type(e).__name__}") from None
        out, err, verdict = _collect(proc, self.timeout)
        if verdict == "timeout":
            raise AsOfError(f"{what} did not finish within {self.timeout:g} s for {stamp} (stopped)")
        if verdict == "too_much":
            raise AsOfError(f"{what} printed more than {MAX_STDOUT_BYTES // 1024} KiB on stdout for {stamp} "
                            "(stopped; it should print one URL as its last line)")
        code = proc.returncode
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            last = _last_line(err)
            tail = f": {self.scrub(last)}" if last else " (nothing on stderr)"
            raise AsOfError(f"{what} {how} for {stamp}{tail}")
        url = _last_line(out)
        if not url:
            raise AsOfError(f"{what} printed no URL for {stamp} (its last line of output must be the URL)")
        try:
            conninfo_parts(url)
        except ValueError as e:
            raise AsOfError(f"{what} printed, as its last line for {stamp}, something that is not a database "
                            f"URL: {e}") from None
        return url


def _last_line(data: bytes) -> str:
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _collect(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bytes, str]:
    """Read stdout (at most MAX_STDOUT_BYTES) and the tail of stderr until the process ends or
    ``timeout`` passes; "ok", "timeout" or "too_much" (the process group is killed for the last two)."""
    out = bytearray()
    err = bytearray()
    too_much = threading.Event()

    def read_out() -> None:
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                return
            if len(out) + len(chunk) > MAX_STDOUT_BYTES:
                too_much.set()
                _kill_group(proc)
                return
            out.extend(chunk)

    def read_err() -> None:
        while True:
            chunk = proc.stderr.read1(65536)
            if not chunk:
                return
            err.extend(chunk)
            del err[:-STDERR_TAIL_BYTES]

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    verdict = "ok"
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        verdict = "timeout"
    if verdict == "ok":
        for t in readers:  # a child that outlives the command may hold the pipes open: bounded wait
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in readers):
            verdict = "timeout"
    if verdict != "ok" or too_much.is_set():
        _kill_group(proc)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for t in readers:
            t.join(2.0)
    for pipe in (proc.stdout, proc.stderr):
        try:
            pipe.close()
        except OSError:
            pass
    if too_much.is_set():
        verdict = "too_much"
    return bytes(out), bytes(err), verdict


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except OSError:
            pass


# -- 2. one probe: which of these workspaces exist in that database ------------------------
def exists_at(url: str, schema_map, workspace_ids: Iterable[str], at: datetime | None = None,
              statement_timeout_ms: int = 30_000, connect_timeout: int = 10) -> set[str]:
    """The ids among ``workspace_ids`` that exist in the mapped workspaces table of the database
    at ``url`` (a row whose soft-delete column is set counts as absent).

    One read-only transaction; ``at`` only names the probe in errors. Any failure to connect or
    to query is an :class:`AsOfError` of one line that never quotes the URL.
    """
    import psycopg
    from psycopg import sql

    ids = sorted({str(i) for i in workspace_ids})
    if not ids:
        return set()
    where = (f"the database the as-of command returned for {at_text(at)}" if at is not None
             else "the database the as-of command returned")
    table = schema_map.workspaces
    id_col = table.columns.get("id") or "id"
    deleted_col = table.columns.get("deleted_at") or ""
    query = sql.SQL("select {id}::text from {table} where {id}::text = any(%s::text[])").format(
        id=sql.Identifier(id_col), table=sql.Identifier(table.schema, table.name))
    if deleted_col:
        query = sql.SQL("{} and {} is null").format(query, sql.Identifier(deleted_col))
    secrets = _url_secrets(url)
    try:
        with _read_only(url, statement_timeout_ms, connect_timeout) as cur:
            cur.execute(query, (ids,))
            return {row[0] for row in cur.fetchall()}
    except AsOfError:
        raise
    except psycopg.Error as exc:
        raise AsOfError(_explain(exc, where, table.qualified, secrets)) from None


def _url_secrets(url: str) -> list[str]:
    secrets = [url]
    try:
        parts = conninfo_parts(url)
    except ValueError:
        return secrets
    return secrets + [parts[k] for k in ("password", "host", "hostaddr", "user", "dbname")
                      if len(parts.get(k) or "") >= 3]


class _read_only:
    """A cursor in one ``READ ONLY`` transaction with a statement timeout (context manager)."""

    def __init__(self, url: str, statement_timeout_ms: int, connect_timeout: int):
        self.url, self.statement_ms, self.connect_timeout = url, int(statement_timeout_ms), int(connect_timeout)
        self.conn = None

    def __repr__(self) -> str:
        return "_read_only(...)"

    def __enter__(self):
        import psycopg
        from psycopg.conninfo import make_conninfo

        try:
            parts = conninfo_parts(self.url)
        except ValueError as e:
            raise AsOfError(f"the as-of command returned a URL libpq cannot use: {e}") from None
        extra: dict[str, Any] = {"application_name": APPLICATION_NAME}
        if "connect_timeout" not in parts:
            extra["connect_timeout"] = self.connect_timeout
        parts.pop("application_name", None)
        conninfo = make_conninfo("", **parts, **extra)
        self.conn = psycopg.connect(conninfo, prepare_threshold=None, autocommit=False)
        self.conn.read_only = True  # BEGIN READ ONLY
        cur = self.conn.cursor()
        cur.execute("select set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                    (f"{self.statement_ms}ms", f"{min(self.statement_ms, 2000)}ms"))
        return cur

    def __exit__(self, *exc) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self.conn.close()


_CONNECT_REASONS = (
    (r"password authentication failed", "password authentication failed"),
    (r"database \"[^\"]*\" does not exist", "that database does not exist"),
    (r"Connection refused", "connection refused"),
    (r"could not translate host name|Name or service not known|nodename nor servname",
     "the host name does not resolve"),
    (r"timeout expired", "the connection timed out"),
    (r"no pg_hba\.conf entry", "the server refuses the connection (pg_hba.conf)"),
    (r"terminating connection|server closed the connection", "the connection was terminated by the server"),
    (r"SSL", "an SSL error"),
)


def _explain(exc: BaseException, where: str, table: str, secrets: list[str]) -> str:
    import psycopg
    from psycopg import errors as pe

    if isinstance(exc, pe.UndefinedTable):
        return f"{where} has no table {table} (check the schema mapping; did the table exist then?)"
    if isinstance(exc, pe.UndefinedColumn):
        return f"{where}: {_clean(first_line(exc), secrets)} (check the schema mapping of {table})"
    if isinstance(exc, pe.QueryCanceled):
        return f"a probe of {where} hit the statement timeout and was cancelled"
    if isinstance(exc, pe.InsufficientPrivilege):
        return f"{where}: {_clean(first_line(exc), secrets)} (the kit needs SELECT on {table})"
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc)
        for pattern, reason in _CONNECT_REASONS:
            if re.search(pattern, text):
                return f"{where} cannot be reached: {reason}"
        return f"{where} cannot be reached: {_clean(first_line(exc), secrets)}"
    return f"{where}: {_clean(first_line(exc), secrets)}"


def _clean(text: str, secrets: list[str]) -> str:
    return one_line(scrub_secrets(_URL_LIKE.sub("<url>", text), secrets), 200)


# -- 3. the search -----------------------------------------------------------------------
@dataclass(frozen=True)
class Bracket:
    """What the probes found about one workspace before one failure."""

    failure_at: datetime
    #: The latest probe time at which the workspace was present.
    existed_at: datetime | None
    #: The earliest probe time after ``existed_at`` at which it was absent.
    gone_at: datetime | None
    #: Present at the very first probe: the failure itself is the bound (``gone_at`` is None).
    gone_by_failure: bool
    #: Absent at every probe: the earliest time probed.
    absent_since: datetime | None
    #: Every probe of this search, in the order made: (time, present).
    probes: tuple[tuple[datetime, bool], ...]
    #: The search stopped at ``max_probes`` before it reached ``precision`` (or ``since``).
    cut: bool = False
    #: How many of ``probes`` an :class:`AsOfProber` answered from its cache (no command run).
    reused: int = 0

    @property
    def probe_count(self) -> int:
        return len(self.probes)

    @property
    def window(self) -> timedelta | None:
        """How long the deletion may have taken place in: ``gone_at - existed_at``, or up to the failure."""
        if self.existed_at is None:
            return None
        return (self.gone_at or self.failure_at) - self.existed_at

    def to_dict(self) -> dict[str, Any]:
        def iso(at):
            return None if at is None else iso_utc(at)

        return {
            "failure_at": iso(self.failure_at),
            "existed_at": iso(self.existed_at),
            "gone_at": iso(self.gone_at),
            "gone_by_failure": self.gone_by_failure,
            "absent_since": iso(self.absent_since),
            "probes": [{"at": iso(at), "present": present} for at, present in self.probes],
            "probe_count": self.probe_count,
            "reused": self.reused,
            "cut": self.cut,
        }

    def describe(self) -> str:
        """One sentence: the bracket, or absence back to the earliest probe, and the probe count."""
        n = self.probe_count
        count = f"{n} probe{'s' if n != 1 else ''}"
        if self.reused:
            count += f", {self.reused} reused"
        if self.cut:
            count += ", stopped at the probe limit"
        if self.existed_at is not None and self.gone_at is not None:
            return (f"existed at {fmt_time(self.existed_at)}, gone at {fmt_time(self.gone_at)}, "
                    f"{fmt_duration((self.gone_at - self.existed_at).total_seconds())} later ({count})")
        if self.existed_at is not None:
            before = fmt_duration((self.failure_at - self.existed_at).total_seconds())
            return (f"existed at {fmt_time(self.existed_at)}, {before} before the failure at "
                    f"{fmt_time(self.failure_at)}, which bounds its deletion ({count})")
        if self.absent_since is not None:
            return f"absent at every probe back to {fmt_time(self.absent_since)} ({count})"
        return f"not probed ({count})"


def probe_times(failure_at: datetime, since: timedelta = DEFAULT_SINCE) -> list[datetime]:
    """The backward walk: 5 ms before the failure, then 4 times farther each time, the last at ``since``."""
    failure_at = _utc(failure_at)
    out = []
    offset = FIRST_OFFSET
    while offset < since:
        out.append(_ms(failure_at - offset))
        offset *= GROWTH
    out.append(_ms(failure_at - since))
    return out


def _check_search(since: timedelta, precision: timedelta, max_probes: int) -> None:
    if not isinstance(since, timedelta) or since <= FIRST_OFFSET:
        raise ConfigError(f"the as-of search must reach back more than {fmt_duration(FIRST_OFFSET.total_seconds())}")
    if not isinstance(precision, timedelta) or precision < timedelta(milliseconds=1):
        raise ConfigError("the as-of precision must be at least 1 ms")
    if not isinstance(max_probes, int) or isinstance(max_probes, bool) or max_probes < 1:
        raise ConfigError("the as-of probe limit must be a whole number of at least 1")


def probe(present: Callable[[datetime], bool], failure_at: datetime, since: timedelta = DEFAULT_SINCE,
          precision: timedelta = DEFAULT_PRECISION, max_probes: int = DEFAULT_MAX_PROBES) -> Bracket:
    """Search backwards from ``failure_at`` for the last time the workspace was present
    (``present(t)``), then bisect to ``precision``; at most ``max_probes`` calls, one per time."""
    _check_search(since, precision, max_probes)
    failure_at = _utc(failure_at)
    seen: dict[datetime, bool] = {}
    order: list[tuple[datetime, bool]] = []

    def ask(at: datetime) -> bool:
        if at not in seen:
            seen[at] = bool(present(at))
            order.append((at, seen[at]))
        return seen[at]

    def done(**kw) -> Bracket:
        fields = {"existed_at": None, "gone_at": None, "gone_by_failure": False, "absent_since": None, "cut": False}
        fields.update(kw)
        return Bracket(failure_at=failure_at, probes=tuple(order), **fields)

    later: datetime | None = None  # the previous (later) probe, absent
    found: datetime | None = None
    walk = probe_times(failure_at, since)
    for at in walk:
        if len(seen) >= max_probes and at not in seen:
            return done(absent_since=later, cut=True)
        if ask(at):
            found = at
            break
        later = at
    if found is None:
        return done(absent_since=walk[-1])
    if later is None:
        return done(existed_at=found, gone_by_failure=True)
    lo, hi = found, later  # present at lo, absent at hi
    while hi - lo > precision:
        mid = _ms(lo + (hi - lo) / 2)
        if mid <= lo or mid >= hi:
            break
        if len(seen) >= max_probes and mid not in seen:
            return done(existed_at=lo, gone_at=hi, cut=True)
        if ask(mid):
            lo = mid
        else:
            hi = mid
    return done(existed_at=lo, gone_at=hi)


# -- 4. the prober -------------------------------------------------------------------------
class AsOfProber:
    """Brackets a workspace's deletion before a failure with the user's as-of command.

    One command run and one connection per probe time; the URL per time and the answer per
    (time, workspace) are cached, so several failures of one workspace re-use their probes.
    ``probes_used`` counts the probes actually run (``bracket().reused`` those that were not).
    ``progress(workspace_id, at, present)`` is called after each probe actually run.
    """

    def __init__(self, command: AsOfCommand, schema_map, since: timedelta = DEFAULT_SINCE,
                 precision: timedelta = DEFAULT_PRECISION, max_probes: int = DEFAULT_MAX_PROBES,
                 progress: Callable[[str, datetime, bool], None] | None = None,
                 statement_timeout_ms: int = 30_000):
        _check_search(since, precision, max_probes)
        self.command = command
        self.schema_map = schema_map
        self.since, self.precision, self.max_probes = since, precision, max_probes
        self.progress = progress
        self.statement_timeout_ms = statement_timeout_ms
        self.probes_used = 0
        self._urls: dict[datetime, str] = {}
        self._answers: dict[tuple[datetime, str], bool] = {}

    def __repr__(self) -> str:
        return (f"AsOfProber({self.command!r}, since={fmt_duration(self.since.total_seconds())}, "
                f"precision={fmt_duration(self.precision.total_seconds())}, probes_used={self.probes_used})")

    def url_at(self, at: datetime) -> str:
        """The command's URL for ``at`` (run once per time)."""
        at = _ms(_utc(at))
        if at not in self._urls:
            self._urls[at] = self.command.url_at(at)
        return self._urls[at]

    def present(self, workspace_id: str, at: datetime) -> bool:
        """Did ``workspace_id`` exist at ``at``? (Cached per time and workspace.)"""
        at = _ms(_utc(at))
        key = (at, str(workspace_id))
        if key not in self._answers:
            found = exists_at(self.url_at(at), self.schema_map, [key[1]], at=at,
                              statement_timeout_ms=self.statement_timeout_ms)
            self._answers[key] = key[1] in found
            self.probes_used += 1
            if self.progress is not None:
                self.progress(key[1], at, self._answers[key])
        return self._answers[key]

    def bracket(self, workspace_id: str, failure_at: datetime) -> Bracket:
        """The :class:`Bracket` of ``workspace_id``'s deletion before ``failure_at``."""
        workspace_id = str(workspace_id)
        reused = 0

        def ask(at: datetime) -> bool:
            nonlocal reused
            if (at, workspace_id) in self._answers:
                reused += 1
            return self.present(workspace_id, at)

        result = probe(ask, failure_at, since=self.since, precision=self.precision, max_probes=self.max_probes)
        return replace(result, reused=reused)
