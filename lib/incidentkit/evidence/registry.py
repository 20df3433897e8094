"""The verdicts: every one the rules can give, with its label and its meaning, in one place.

Each failed login gets exactly one verdict (:func:`incidentkit.evidence.rules.judge` decides
which). This is the only list of them: the CLI's counts, the notebooks' tables, the plots'
colours and the postmortem's sentences all read it. To add a verdict, add it here and a branch
for it in :mod:`incidentkit.evidence.rules` (a test checks that every verdict the rules can
return is listed here).

Two families share the list: ``seed``, the mapped users -> workspaces relationship's own verdicts
(:data:`VERDICTS`, :data:`NAMES`, in their order), and ``generic``, the verdicts of any foreign
key (:func:`incidentkit.evidence.generic.decide_generic`). ``concurrent_deletion``,
``stale_read`` and ``insufficient_evidence`` belong to both; :func:`names` lists a family's.
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
    #: The families it belongs to (:data:`FAMILIES`).
    family: tuple[str, ...] = ("seed",)
    #: For a verdict of both families: its label and meaning for any foreign key (the seed's
    #: ``label``/``meaning`` speak of workspaces and logins).
    generic_label: str = ""
    generic_meaning: str = ""


#: The verdict families: the mapped relationship's own, and any foreign key's.
FAMILIES = ("seed", "generic")
_BOTH = ("seed", "generic")


#: Every verdict of both families, in the order tables list them (the incident's race first).
ALL: tuple[Verdict, ...] = (
    Verdict("concurrent_deletion",
            label="workspace deleted while the login ran",
            meaning="the workspace was deleted while the login ran: the race between `ensureUserWorkspace` and "
                    "the deletion",
            color="#c44e52", family=_BOTH,
            generic_label="referenced row deleted while the write ran",
            generic_meaning="the referenced row was deleted while the write that needed it ran: a race between "
                            "reading the key and writing the row that references it"),
    Verdict("stale_read",
            label="login read data already gone (replica, long transaction, cache)",
            meaning="the workspace and the membership were gone before the login started: it read stale data "
                    "(a replica, a long transaction or a cache)",
            color="#dd8452", family=_BOTH,
            generic_label="write used a key already gone (replica, long transaction, cache)",
            generic_meaning="the referenced row was gone before the write started: the key came from stale data "
                            "(a replica, a long transaction or a cache)"),
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
    Verdict("dangling_path",
            label="a path row references a missing row",
            meaning="a row on another foreign key into the referenced table (the path the key was read from) "
                    "still points at the missing row: stored data a foreign key should have prevented (NOT VALID, "
                    "triggers disabled), which keeps failing until it is cleaned up",
            color="#8172b3", family=("generic",)),
    Verdict("key_never_existed",
            label="no trace of the referenced row ever existing",
            meaning="nothing records the referenced row ever existing: the key was written for a row that was "
                    "never created",
            color="#937860", family=("generic",)),
    Verdict("path_before_parent",
            label="referenced row created only after the failure",
            meaning="the referenced row was created only after the failure: the row that needed it was written "
                    "before its parent",
            color="#55a868", family=("generic",)),
    Verdict("still_referenced",
            label="delete refused: rows still reference it",
            meaning="a delete (or key update) of the referenced row was refused because rows of the referencing "
                    "table still pointed at it",
            color="#4c72b0", family=("generic",)),
    Verdict("insufficient_evidence",
            label="not decidable from what is recorded",
            meaning="the evidence does not decide it",
            color="#8c8c8c", family=_BOTH),
)

#: The seed's verdicts (the mapped users -> workspaces relationship), in the order tables list them.
VERDICTS: tuple[Verdict, ...] = tuple(v for v in ALL if "seed" in v.family)

#: The seed's verdicts' names, in order.
NAMES: tuple[str, ...] = tuple(v.name for v in VERDICTS)

_BY_NAME = {v.name: v for v in ALL}


def names(family: str = "seed") -> tuple[str, ...]:
    """The names of one family's verdicts (``seed`` or ``generic``), in the order tables list them."""
    if family not in FAMILIES:
        raise KeyError(f"unknown verdict family {family!r} (known: {', '.join(FAMILIES)})")
    return tuple(v.name for v in ALL if family in v.family)


def get(name: str) -> Verdict:
    """The verdict called ``name``; :class:`KeyError` naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown verdict {name!r} (known: {', '.join(v.name for v in ALL)})") from None


def label(name: str, family: str = "seed") -> str:
    """The one-line label of verdict ``name`` (as the ``generic`` family words it, when asked)."""
    v = get(name)
    return (v.generic_label or v.label) if family == "generic" else v.label


def meaning(name: str, family: str = "seed") -> str:
    """What verdict ``name`` means, as a clause for prose (as the ``generic`` family words it, when asked)."""
    v = get(name)
    return (v.generic_meaning or v.meaning) if family == "generic" else v.meaning


def frame(family: str = "seed"):
    """One family's verdicts with their labels and meanings, as a DataFrame (for notebooks)."""
    import pandas as pd

    return pd.DataFrame([{"verdict": n, "label": label(n, family), "meaning": meaning(n, family)}
                         for n in names(family)], columns=["verdict", "label", "meaning"])
