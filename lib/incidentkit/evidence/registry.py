"""The verdicts: every one the rules can give, with its label and its meaning, in one place.

Each failed login gets exactly one verdict (:func:`incidentkit.evidence.rules.judge` decides
which). This is the only list of them: the CLI's counts, the notebooks' tables, the plots'
colours and the postmortem's sentences all read it. To add a verdict, add it here and a branch
for it in :mod:`incidentkit.evidence.rules` (a test checks that every verdict the rules can
return is listed here).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One verdict: its name (as in JSON and reports), a one-line label and what it means."""

    name: str
    #: One line, for tables and legends.
    label: str
    #: A clause for prose ("It means ..."), as the postmortem states it.
    meaning: str
    #: Its colour in plots.
    color: str


#: Every verdict, in the order tables list them (the incident's race first).
VERDICTS: tuple[Verdict, ...] = (
    Verdict("concurrent_deletion",
            label="workspace deleted while the login ran",
            meaning="the workspace was deleted while the login ran: the race between `ensureUserWorkspace` and "
                    "the deletion",
            color="#c44e52"),
    Verdict("stale_read",
            label="login read data already gone (replica, long transaction, cache)",
            meaning="the workspace and the membership were gone before the login started: it read stale data "
                    "(a replica, a long transaction or a cache)",
            color="#dd8452"),
    Verdict("orphaned_membership",
            label="a membership references a missing workspace",
            meaning="a membership still points at the missing workspace: stored data the foreign keys should have "
                    "prevented, which keeps failing until it is cleaned up",
            color="#8172b3"),
    Verdict("workspace_never_existed",
            label="no trace of the workspace ever existing",
            meaning="nothing records the workspace ever existing: the membership was written for a workspace "
                    "that was never created",
            color="#937860"),
    Verdict("membership_before_workspace",
            label="workspace created only after the failure",
            meaning="the workspace was created only after the failure: the membership was written before its "
                    "workspace",
            color="#55a868"),
    Verdict("insufficient_evidence",
            label="not decidable from what is recorded",
            meaning="the evidence does not decide it",
            color="#8c8c8c"),
)

#: The verdicts' names, in order.
NAMES: tuple[str, ...] = tuple(v.name for v in VERDICTS)

_BY_NAME = {v.name: v for v in VERDICTS}


def get(name: str) -> Verdict:
    """The verdict called ``name``; :class:`KeyError` naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown verdict {name!r} (known: {', '.join(NAMES)})") from None


def label(name: str) -> str:
    """The one-line label of verdict ``name``."""
    return get(name).label


def meaning(name: str) -> str:
    """What verdict ``name`` means, as a clause for prose."""
    return get(name).meaning


def frame():
    """Every verdict with its label and meaning, as a DataFrame (for notebooks)."""
    import pandas as pd

    return pd.DataFrame([{"verdict": v.name, "label": v.label, "meaning": v.meaning} for v in VERDICTS],
                        columns=["verdict", "label", "meaning"])
