"""What the user gives the evidence layer, checked: user ids, workspace ids, the window.

Each check returns the value in the form the kit uses, or raises :class:`ConfigError` with a
message the CLI prints as one line.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from ..exceptions import ConfigError

_UUID_RX = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_USER_ID_LENGTH = 256


def check_user_id(user_id: Any) -> str:
    """``user_id`` without surrounding whitespace (as pasted) if it can be a user id;
    :class:`ConfigError` otherwise (empty, too long, whitespace or control characters inside)."""
    if isinstance(user_id, str):
        user_id = user_id.strip()
    if not isinstance(user_id, str) or not user_id:
        raise ConfigError("the user id is empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ConfigError(f"the user id is longer than {MAX_USER_ID_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in user_id):
        raise ConfigError(f"the user id {user_id[:80]!r} contains whitespace or control characters")
    return user_id


def is_workspace_id(value: Any) -> bool:
    """Whether ``value`` is a UUID in text form (any case)."""
    return isinstance(value, str) and bool(_UUID_RX.fullmatch(value))


def check_workspace_id(workspace_id: Any) -> str:
    """The workspace id in canonical (lower-case) UUID form, surrounding whitespace trimmed;
    :class:`ConfigError` when it is not a UUID."""
    if isinstance(workspace_id, str):
        workspace_id = workspace_id.strip()
    if not is_workspace_id(workspace_id):
        shown = workspace_id[:80] if isinstance(workspace_id, str) else workspace_id
        raise ConfigError(f"the workspace id {shown!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return str(uuid.UUID(workspace_id))


def check_window(window: Any) -> float:
    """The window in seconds as a float; :class:`ConfigError` unless a positive finite number."""
    if isinstance(window, bool) or not isinstance(window, (int, float)):
        raise ConfigError(f"the window must be a number of seconds (got {window!r})")
    value = float(window)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"the window must be a positive, finite number of seconds (got {window!r})")
    return value


def normalize_workspace_id(value: Any) -> str | None:
    """A workspace id as the kit compares them: a UUID lower-cased, anything else as text (None stays None)."""
    if value is None:
        return None
    text = str(value)
    return text.lower() if is_workspace_id(text) else text



#: The prefix the incident's user ids carry (Privy DIDs); ids pasted without it are matched too.
ID_PREFIXES = ("did:privy:",)


def id_variants(value: str) -> list[str]:
    """``value`` as it may have been meant: with or without a known prefix, lower-cased."""
    out = [value]
    for prefix in ID_PREFIXES:
        out.append(value[len(prefix):] if value.startswith(prefix) else prefix + value)
    out += [v.lower() for v in list(out)]
    return list(dict.fromkeys(out))


def one_edit_apart(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by at most one inserted, deleted or replaced character."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def nearest_ids(target: str, candidates, limit: int = 5) -> list[str]:
    """The candidates that may be what ``target`` meant: the same id with or without its prefix or
    in another case, or one character apart; best first, at most ``limit``."""
    variants = id_variants(target)
    lowered = {v.lower() for v in variants}
    exact, close = [], []
    for c in dict.fromkeys(x for x in candidates if isinstance(x, str) and x and x != target):
        if c in variants or c.lower() in lowered:
            exact.append(c)
        elif any(one_edit_apart(c.lower(), v) for v in lowered):
            close.append(c)
    return (exact + close)[:limit]
