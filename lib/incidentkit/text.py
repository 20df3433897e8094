"""How the kit writes times, durations and anything it echoes back: each format once.

Every module that shows a time, a duration or an error line imports it from here.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import quote


# -- times --------------------------------------------------------------------------------
def iso_utc(at: datetime) -> str:
    """``2025-10-08T14:03:22.481Z``: milliseconds, or microseconds when they are not round."""
    at = at.astimezone(timezone.utc)
    spec = "milliseconds" if at.microsecond % 1000 == 0 else "microseconds"
    return at.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def fmt_time(at: datetime | None) -> str:
    """``2025-10-08 09:41:27.118 UTC`` (microseconds when they are not round)."""
    if at is None:
        return "an unknown time"
    at = at.astimezone(timezone.utc)
    spec = "milliseconds" if at.microsecond % 1000 == 0 else "microseconds"
    return at.replace(tzinfo=None).isoformat(sep=" ", timespec=spec) + " UTC"


def fmt_duration(seconds: float) -> str:
    """``46 ms``, ``3.2 s``, ``4 min 10 s``, ``2 h 5 min``, ``3 days 4 h``."""
    s = abs(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 else f"{s * 1e6:.0f} µs"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    days = int(s // 86400)
    return f"{days} day{'s' if days != 1 else ''} {int(s % 86400 // 3600)} h"


def as_utc(value: Any) -> datetime | None:
    """A timestamp from a row or from JSON (ISO text), as an aware UTC datetime; None if it is not one."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


# -- what the kit echoes back: one line, escaped, cut, with no secret ----------------------
#: How an unparseable connection string is named (never quoted: it may hold a password).
MALFORMED_URL = "a malformed database URL"

#: Characters that reorder or hide text on a terminal or page (bidi controls, separators, BOM).
_INVISIBLE = frozenset("\u061c\u200b\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
                       "\u2066\u2067\u2068\u2069\ufeff")
_LIBPQ_SCHEMES = ("postgresql://", "postgres://")
_SQLALCHEMY_SCHEMES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres+psycopg://")


def escape_char(ch: str) -> str:
    """``ch`` itself, or ``\\xNN`` / ``\\uNNNN`` for control, bidi and other invisible characters."""
    o = ord(ch)
    if o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0 or ch in _INVISIBLE:
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"
    return ch


def first_line(text: Any) -> str:
    """The first non-blank line of ``text``, stripped (an error's message without its traceback)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return str(text).strip()


def one_line(text: Any, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters: whitespace runs become one space,
    control and bidi characters are escaped (``\\x00``, ``\\u202e``), and a longer text keeps
    its beginning and its end (where a path or a hint usually is) around `` … ``.

    Linear in the input; only the first and the last ``64 * limit`` characters are looked at.
    """
    s = str(text)
    limit = max(int(limit), 8)
    window = limit * 64
    if len(s) <= window:
        full = _flatten(s)
        if len(full) <= limit:
            return full
        head, tail = full, full
    else:
        head, tail = _flatten(s[:window]), _flatten(s[-window:])
    keep_head = limit * 2 // 3
    keep_tail = limit - keep_head - 3
    return head[:keep_head].rstrip() + " … " + tail[len(tail) - keep_tail:].lstrip()


def _flatten(s: str) -> str:
    return "".join(map(escape_char, " ".join(s.split())))


def _scrub_url_userinfo(s: str) -> str:
    """Every ``scheme://user:password@`` becomes ``scheme://***@``, up to the token's *last* ``@``
    (an unencoded ``@`` in a password is hidden too). One left-to-right pass."""
    out: list[str] = []
    pos = 0
    i = s.find("://")
    while i != -1:
        start = i + 3
        m = _TOKEN_END.search(s, start)
        end = m.start() if m else len(s)
        at = s.rfind("@", start, end)
        if at != -1:
            out.append(s[pos:start])
            out.append("***@")
            pos = at + 1
        i = s.find("://", max(end, start))
    out.append(s[pos:])
    return "".join(out)


_TOKEN_END = re.compile(r"[\s'\"<>`]")
_KV_PASSWORD = re.compile(r"\b(password|passwd|pwd|pgpassword)(\s*[=:]\s*)('(?:[^'\\]|\\.)*'?|\"[^\"]*\"?|[^\s&;,]+)",
                          re.I)


def scrub_secrets(text: Any, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials replaced by ``***``: each of ``secrets`` (and its percent-encoded
    form), the user and password part of any URL, and ``password=...`` in key=value strings.

    Linear in the length of ``text`` (for a fixed number of secrets).
    """
    out = str(text)
    wanted: set[str] = set()
    for secret in secrets or ():
        if secret:
            secret = str(secret)
            wanted.add(secret)
            wanted.add(quote(secret, safe=""))
    for secret in sorted(wanted, key=len, reverse=True):
        out = out.replace(secret, "***")
    if "://" in out:
        out = _scrub_url_userinfo(out)
    return _KV_PASSWORD.sub(r"\1\2***", out)


def conninfo_parts(url: str) -> dict[str, str]:
    """A connection string (URL or ``key=value``) parsed by libpq itself, as a dict.

    SQLAlchemy-style schemes (``postgresql+psycopg://``) are read as ``postgresql://``. Raises
    ``ValueError`` with a reason that quotes nothing from ``url`` when libpq refuses it, or when
    it only parses because a password holds an unencoded ``@`` or ``/``.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if not isinstance(url, str) or not url.strip():
        raise ValueError("it is empty")
    raw = url.strip()
    for scheme in _SQLALCHEMY_SCHEMES:
        if raw.lower().startswith(scheme):
            raw = "postgresql://" + raw[len(scheme):]
            break
    is_url = raw.lower().startswith(_LIBPQ_SCHEMES)
    if "://" in raw.split(None, 1)[0] and not is_url:
        raise ValueError("it must start with postgresql:// (or be key=value pairs)")
    if is_url:
        rest = raw.split("://", 1)[1].split("?", 1)[0]
        slash = rest.find("/")
        authority, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash + 1:])
        if authority.count("@") > 1 or "@" in path:
            raise ValueError("a special character in the user name or password ('@', '/', ':', '?', '#') "
                             "must be percent-encoded (e.g. %40 for @)")
    try:
        parts = {k: str(v) for k, v in conninfo_to_dict(raw).items() if v is not None}
    except (psycopg.Error, TypeError, ValueError):
        raise ValueError("libpq cannot parse it (expected postgresql://user:password@host:port/dbname "
                         "or key=value pairs)") from None
    if "@" in parts.get("host", ""):
        raise ValueError("an '@' in the password must be percent-encoded (%40)")
    for port in parts.get("port", "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("it has an invalid port")
    return parts


def describe_parts(parts: dict[str, str]) -> str:
    """``host/dbname`` from :func:`conninfo_parts` (no user, password or port); each part cut."""
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    dbname = parts.get("dbname") or parts.get("user") or "(default database)"
    return f"{one_line(host, 100)}/{one_line(dbname, 100)}"


def describe_url(url: str) -> str:
    """``host/dbname`` for a connection string libpq parses, else :data:`MALFORMED_URL`.

    Never more than that: no user, no password, no port, nothing quoted from a malformed URL.
    """
    try:
        return describe_parts(conninfo_parts(url))
    except ValueError:
        return MALFORMED_URL
