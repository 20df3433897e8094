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
    """``user_id`` unchanged if it can be a user id; :class:`ConfigError` otherwise."""
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
    """The workspace id in canonical (lower-case) UUID form; :class:`ConfigError` when it is not a UUID."""
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

