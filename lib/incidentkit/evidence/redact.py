"""Redaction: stable pseudonyms for user ids and e-mail addresses (and, optionally, workspace ids).

The same id gets the same pseudonym throughout a report: pseudonyms are an HMAC of the id
under a key made for the report and never written anywhere (the CLI hands it to the
kernels through the environment, not through parameters), so nobody holding the report can
confirm a guessed id by hashing it.

Redaction happens twice, on purpose: in the kernel (figure labels, tables and text, through
:func:`active`), so that pictures never hold an id; and over every text artifact after
execution (notebooks, HTML, Markdown, the entry page), as a safety net.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field

from .logs import DEFAULT_USER_PATTERN

ENV_ON = "INCIDENTKIT_REDACT"
ENV_KEY = "INCIDENTKIT_REDACT_KEY"
ENV_WORKSPACES = "INCIDENTKIT_REDACT_WORKSPACES"

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")


@dataclass
class Redactor:
    key: bytes
    user_pattern: str = DEFAULT_USER_PATTERN
    workspaces: bool = False
    _users: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._users = re.compile(self.user_pattern)

    @classmethod
    def new(cls, workspaces: bool = False) -> "Redactor":
        return cls(secrets.token_bytes(32), workspaces=workspaces)

    def _tag(self, kind: str, value: str) -> str:
        return hmac.new(self.key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:10]

    def user(self, user_id: str) -> str:
        return f"user-{self._tag('user', user_id)}"

    def email(self, address: str) -> str:
        return f"email-{self._tag('email', address.lower())}@redacted.invalid"

    def workspace(self, workspace_id: str) -> str:
        return f"workspace-{self._tag('workspace', workspace_id.lower())}"

    def text(self, text: str) -> str:
        """``text`` with every user id and e-mail (and workspace UUID, if asked) pseudonymised."""
        if not text:
            return text
        out = self._users.sub(lambda m: self.user(m.group(0)), text)
        out = EMAIL.sub(lambda m: m.group(0) if m.group(0).endswith("@redacted.invalid") else self.email(m.group(0)),
                        out)
        if self.workspaces:
            out = UUID.sub(lambda m: self.workspace(m.group(0)), out)
        return out

    def env(self) -> dict[str, str]:
        """What a kernel needs to redact the same way (handed over through the environment)."""
        return {ENV_ON: "1", ENV_KEY: self.key.hex(), ENV_WORKSPACES: "1" if self.workspaces else ""}


def active() -> Redactor | None:
    """The redactor this process was started with (``incidentkit report --redact``), if any."""
    if os.environ.get(ENV_ON) != "1" or not os.environ.get(ENV_KEY):
        return None
    return Redactor(bytes.fromhex(os.environ[ENV_KEY]), workspaces=bool(os.environ.get(ENV_WORKSPACES)))


def label(text: str) -> str:
    """``text`` as it may be shown: pseudonymised when redaction is on, unchanged otherwise."""
    r = active()
    return r.text(text) if r and isinstance(text, str) else text
