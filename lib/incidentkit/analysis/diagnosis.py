"""The diagnosis statistics, computed by PostgreSQL in one read-only snapshot.

The figures the 2025-10-08 report counted by hand: users, workspaces, memberships, users
without or with an invalid primary workspace, orphaned memberships; plus capped samples of
the offending keys and the foreign keys that guard these relationships, from the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import config
from ..db import queries

FIGURES = (
    "total_users",
    "total_workspaces",
    "total_memberships",
    "users_without_primary_workspace",
    "users_with_invalid_primary_workspace",
    "orphaned_memberships",
)
#: The figures that mean something is wrong when above zero, with a readable label.
PROBLEM_FIGURES = {
    "users_without_primary_workspace": "users without a primary workspace",
    "users_with_invalid_primary_workspace": "users with an invalid primary workspace",
    "orphaned_memberships": "orphaned memberships",
}
LABELS = {
    "total_users": "Total users",
    "total_workspaces": "Total workspaces",
    "total_memberships": "Total workspace memberships",
    "users_without_primary_workspace": "Users without primary_workspace_id",
    "users_with_invalid_primary_workspace": "Users with INVALID primary_workspace_id",
    "orphaned_memberships": "Orphaned memberships",
}


@dataclass
class Diagnosis:
    total_users: int
    total_workspaces: int
    total_memberships: int
    users_without_primary_workspace: int
    users_with_invalid_primary_workspace: int
    orphaned_memberships: int
    foreign_keys: list[dict[str, Any]]
    samples: dict[str, list[dict[str, Any]]]
    snapshot_at: datetime
    database: str = ""
    server_version: str = ""
    wal_lsn: str = ""
    sample_limit: int = config.DEFAULT_SAMPLE_LIMIT
    schema: dict[str, Any] = field(default_factory=dict)

    # -- views --------------------------------------------------------------------------
    def figures(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in FIGURES}

    def problems(self) -> dict[str, int]:
        """The problem figures that are above zero."""
        return {k: getattr(self, k) for k in PROBLEM_FIGURES if getattr(self, k)}

    @property
    def clean(self) -> bool:
        return not self.problems()

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``incidentkit diagnose --json``."""
        out: dict[str, Any] = self.figures()
        out["foreign_keys"] = [
            {k: fk[k] for k in ("name", "table", "columns", "references_table", "references_columns",
                                "on_delete", "validated", "deferrable")}
            for fk in self.foreign_keys
        ]
        out["samples"] = {
            "invalid_primary_workspace": self.samples.get("invalid_primary_workspace", []),
            "orphaned_memberships": self.samples.get("orphaned_memberships", []),
        }
        out["snapshot_at"] = self.snapshot_at.isoformat().replace("+00:00", "Z")
        return out

    def figures_frame(self):
        """The figures as a two-column DataFrame (label, value), in the report's order."""
        import pandas as pd

        return pd.DataFrame({"figure": [LABELS[k] for k in FIGURES], "value": [getattr(self, k) for k in FIGURES]})

    def foreign_keys_frame(self):
        import pandas as pd

        cols = ["name", "table", "columns", "references_table", "references_columns", "on_delete", "validated",
                "deferrable"]
        frame = pd.DataFrame(self.foreign_keys, columns=cols)
        for c in ("columns", "references_columns"):
            frame[c] = frame[c].map(lambda v: ", ".join(v))
        return frame

    def samples_frames(self) -> dict[str, Any]:
        import pandas as pd

        return {
            "invalid_primary_workspace": pd.DataFrame(self.samples.get("invalid_primary_workspace", []),
                                                      columns=["user_id", "primary_workspace_id"]),
            "orphaned_memberships": pd.DataFrame(self.samples.get("orphaned_memberships", []),
                                                 columns=["membership_id", "user_id", "workspace_id"]),
        }

    def conclusion_markdown(self) -> str:
        """What the figures mean, in sentences built from this diagnosis only."""
        fk = next((f for f in self.foreign_keys if f["references_table"].split(".")[-1] ==
                   self.schema.get("workspaces", {}).get("table", "workspaces").split(".")[-1]
                   and f["table"].split(".")[-1] == self.schema.get("users", {}).get("table", "users").split(".")[-1]),
                  None)
        parts = [f"In `{self.database}` at {self.snapshot_at:%Y-%m-%d %H:%M:%S} UTC there are "
                 f"{self.total_users:,} users, {self.total_workspaces:,} workspaces and "
                 f"{self.total_memberships:,} memberships."]
        if self.clean:
            parts.append("No user lacks a primary workspace or points at a missing one, and no membership is "
                         "orphaned: **the data is clean**. A failure on the users' foreign key therefore did not "
                         "come from rows stored here; it happened inside a transaction that rolled back, which is "
                         "what the timelines and the race lab examine.")
        else:
            found = ", ".join(f"{v:,} {PROBLEM_FIGURES[k]}" for k, v in self.problems().items())
            parts.append(f"**The data is not clean**: {found}. The samples below list the offending keys.")
        if fk is not None:
            state = "validated" if fk["validated"] else "NOT VALID (existing rows were never checked)"
            parts.append(f"The users' primary workspace is guarded by `{fk['name']}` (ON DELETE {fk['on_delete']}, "
                         f"{state}).")
        return " ".join(parts)

    def summary_lines(self) -> list[str]:
        """A one-screen text summary (the CLI's table)."""
        width = max(len(LABELS[k]) for k in FIGURES)
        lines = [f"database: {self.database}   snapshot: {self.to_dict()['snapshot_at']}"]
        lines += [f"{LABELS[k]:<{width}}  {getattr(self, k):>10,}" for k in FIGURES]
        return lines

    def chart(self, ax=None):
        """A bar chart of the six figures; problem bars in red when above zero."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3.6))
        labels = [LABELS[k] for k in FIGURES]
        values = [getattr(self, k) for k in FIGURES]
        colors = ["#4c72b0" if k not in PROBLEM_FIGURES else ("#c44e52" if getattr(self, k) else "#55a868")
                  for k in FIGURES]
        bars = ax.barh(labels[::-1], values[::-1], color=colors[::-1])
        ax.bar_label(bars, labels=[f"{v:,}" for v in values[::-1]], padding=3)
        ax.set_xlabel("rows")
        ax.set_title(f"Diagnosis of {self.database}")
        ax.margins(x=0.15)
        ax.figure.tight_layout()
        return ax


def diagnose(db, sample_limit: int = config.DEFAULT_SAMPLE_LIMIT, check_schema: bool = True) -> Diagnosis:
    """The diagnosis of ``db`` (an :class:`incidentkit.Database`) in one read-only snapshot."""
    from ..exceptions import ConfigError

    if not isinstance(sample_limit, int) or sample_limit < 0 or sample_limit > 10_000:
        raise ConfigError("the sample limit must be a whole number from 0 to 10000")
    m = db.schema
    with db.read() as r:
        if check_schema:
            m = m.check(r)
        snapshot_at = r.snapshot_at
        figures, samples = queries.diagnosis(r, m, sample_limit)
        fks = queries.guarding_foreign_keys(r, m)
        facts = queries.server_facts(r)
    return Diagnosis(**figures, foreign_keys=fks, samples=samples, snapshot_at=snapshot_at,
                     database=db.describe(), server_version=facts["server_version"], wal_lsn=facts["wal_lsn"] or "",
                     sample_limit=sample_limit,
                     schema=m.describe())


@dataclass
class CheckResult:
    ok: bool
    thresholds: dict[str, int]
    diagnosis: Diagnosis

    def lines(self) -> list[str]:
        out = []
        for key, label in PROBLEM_FIGURES.items():
            value, limit = getattr(self.diagnosis, key), self.thresholds[key]
            status = "ok" if value <= limit else "FAIL"
            out.append(f"{status:<4}  {label}: {value:,} (max {limit:,})")
        head = "check passed" if self.ok else "check failed"
        out.insert(0, f"{head}: {self.diagnosis.database} at {self.diagnosis.to_dict()['snapshot_at']}")
        for key, rows in self.diagnosis.samples.items():
            if rows and not self.ok:
                out.append(f"  e.g. {key}: " + "; ".join(
                    ", ".join(f"{k}={v}" for k, v in row.items()) for row in rows[:3]))
        return out


def check(diagnosis: Diagnosis, max_users_without_primary_workspace: int = 0,
          max_users_with_invalid_primary_workspace: int = 0, max_orphaned_memberships: int = 0) -> CheckResult:
    """Pass when every problem figure is within its threshold (0 by default), as dbt tests do."""
    thresholds = {
        "users_without_primary_workspace": max_users_without_primary_workspace,
        "users_with_invalid_primary_workspace": max_users_with_invalid_primary_workspace,
        "orphaned_memberships": max_orphaned_memberships,
    }
    ok = all(getattr(diagnosis, k) <= v for k, v in thresholds.items())
    return CheckResult(ok, thresholds, diagnosis)
