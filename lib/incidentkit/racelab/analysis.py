"""Reading the results: verdicts per strategy, conclusions, the recommended fix, the matrix.

**Conclusions** derive from the results only: a strategy *closes the race* when its login
ended ``ok`` in every interleaving run and no deletion was lost (a deletion that committed
while W still exists afterwards). The *recommended* strategy is the cheapest of those:
fewest deleting-side failures and waits, then fewest login attempts thrown away, then
fewest statements on the uncontended path (``no_concurrent_delete``).

Nothing here touches a database; pandas is imported only by the frame functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..exceptions import ConfigError
from .cells import FAILURES, INTERLEAVINGS, CellResult
from .sql import AUDIT_FILE
from .strategies import STRATEGIES, Strategy


# -- verdicts per strategy ---------------------------------------------------------------------

def by_strategy(results: Sequence[CellResult]) -> dict[str, list[CellResult]]:
    """The cells per strategy, strategies and interleavings in the lab's order."""
    out: dict[str, list[CellResult]] = {}
    order = {n: i for i, n in enumerate(INTERLEAVINGS)}
    for r in results:
        out.setdefault(r.strategy, []).append(r)
    for cells in out.values():
        cells.sort(key=lambda c: order.get(c.interleaving, 99))
    known = list(STRATEGIES)
    return dict(sorted(out.items(), key=lambda kv: known.index(kv[0]) if kv[0] in known else 99))


def _login_waited(cell: CellResult) -> list[dict[str, Any]]:
    return [w for w in cell.detail.get("waits", []) if w["waiter"] == "login"]


def _delete_waited(cell: CellResult) -> list[dict[str, Any]]:
    return [w for w in cell.detail.get("waits", []) if w["waiter"] == "delete"]


@dataclass
class Verdict:
    """What the results say about one strategy (derived, never declared)."""

    strategy: str
    interleavings: list[str]
    login_failures: dict[str, str]
    lost_deletions: list[str]
    delete_costs: dict[str, str]
    login_waits: dict[str, float]
    attempts_thrown_away: int
    uncontended_statements: int | None
    original_workspace: list[str]
    new_workspace: list[str]

    @property
    def closes_race(self) -> bool:
        return not self.login_failures and not self.lost_deletions

    @property
    def concurrent_delete_costs(self) -> dict[str, str]:
        """The deleting side's costs where it raced the login (``no_concurrent_delete`` left out)."""
        return {k: t for k, t in self.delete_costs.items() if k != "no_concurrent_delete"}

    def cost_key(self) -> tuple:
        return (len(self.concurrent_delete_costs), self.attempts_thrown_away, self.uncontended_statements or 0)


def verdicts(results: Sequence[CellResult]) -> dict[str, Verdict]:
    """Per strategy: failures, lost deletions, costs -- all read from the cells."""
    out = {}
    for name, cells in by_strategy(results).items():
        baseline = [c for c in cells if c.interleaving == "no_concurrent_delete"]
        delete_costs = {}
        for c in cells:
            waited = _delete_waited(c)
            if c.delete_outcome != "ok" or waited:
                text = c.delete_outcome if c.delete_outcome != "ok" else "ok"
                if waited:
                    text += f", after waiting {sum(w['seconds'] for w in waited):.3f} s on the login"
                delete_costs[c.interleaving] = text
        out[name] = Verdict(
            strategy=name,
            interleavings=[c.interleaving for c in cells],
            login_failures={c.interleaving: c.login_outcome for c in cells if c.login_outcome != "ok"},
            lost_deletions=[c.interleaving for c in cells if c.detail.get("lost_deletion")],
            delete_costs=delete_costs,
            login_waits={c.interleaving: round(sum(w["seconds"] for w in _login_waited(c)), 4)
                         for c in cells if _login_waited(c)},
            attempts_thrown_away=sum(max(0, len(c.detail.get("login_attempts", [])) - 1) for c in cells),
            uncontended_statements=baseline[0].detail.get("login_statements") if baseline else None,
            original_workspace=[c.interleaving for c in cells if c.detail.get("login_workspace") == "original"],
            new_workspace=[c.interleaving for c in cells if c.detail.get("login_workspace") == "new"],
        )
    return out


def _fingerprint(cells: Sequence[CellResult]) -> tuple:
    return tuple((c.interleaving, c.login_outcome, c.delete_outcome, c.detail.get("login_workspace"))
                 for c in cells)


def _why(cell: CellResult, strategy: Strategy) -> str:
    """Why the login failed in this cell, read from its statements and waits."""
    attempts = cell.detail.get("login_attempts", [])
    last = attempts[-1] if attempts else {}
    step = last.get("step") or "a step"
    parts = [f"in {cell.interleaving} its '{step}' failed with {cell.login_outcome}"]
    if cell.detail.get("login_constraint"):
        parts.append(f" on {cell.detail['login_constraint']}")
    checks = [s for s in cell.detail.get("statements", [])
              if s["side"] == "login" and s["step"] in ("check workspace exists", "lock workspace for key share")]
    if checks and checks[-1]["rows"]:
        parts.append(f" although its '{checks[-1]['step']}' had just found the workspace")
    waited = _login_waited(cell)
    if waited:
        parts.append(f", after waiting {sum(w['seconds'] for w in waited):.3f} s on the "
                     f"{' and '.join(waited[-1]['blocked_by'])} side")
    if len(attempts) > 1:
        parts.append(f" ({len(attempts)} attempts; retried on {', '.join(strategy.retry_sqlstates)} only)")
    return "".join(parts)


def conclusions(results: Sequence[CellResult]) -> list[str]:
    """Plain sentences derived from the results: what closes the race, what does not and why, costs."""
    results = list(results)
    if not results:
        return ["The race lab produced no results."]
    cells_by = by_strategy(results)
    v = verdicts(results)
    server = results[0].detail.get("server", "PostgreSQL")
    n_inter = len({r.interleaving for r in results})
    out = [f"The race lab ran {len(cells_by)} strategies under {n_inter} interleavings on {server}; "
           "every cell was observed on two real connections, none predicted."]
    fingerprints = {name: _fingerprint(cells) for name, cells in cells_by.items()}
    for name, cells in cells_by.items():
        verdict = v[name]
        strategy = STRATEGIES.get(name)
        if verdict.closes_race:
            s = (f"{name} closes the race: the login ended ok in all {len(cells)} interleavings "
                 f"(original workspace in {len(verdict.original_workspace)}, new fallback workspace in "
                 f"{len(verdict.new_workspace)}) and no deletion was lost.")
        else:
            reasons = []
            for c in cells:
                if c.login_outcome != "ok" and strategy is not None:
                    reasons.append(_why(c, strategy))
            if verdict.lost_deletions:
                reasons.append("a committed deletion was lost in " + ", ".join(verdict.lost_deletions))
            s = f"{name} does not close the race: " + "; ".join(reasons) + "."
        if verdict.login_waits:
            longest = max(verdict.login_waits.values())
            s += (f" Its login waited on the deletion's lock in {', '.join(verdict.login_waits)} "
                  f"(longest {longest:.3f} s).")
        if verdict.attempts_thrown_away:
            s += f" It threw away {verdict.attempts_thrown_away} login attempt(s) in all."
        concurrent_costs = verdict.concurrent_delete_costs
        if concurrent_costs:
            s += " Cost to the deleting side: " + "; ".join(f"{k}: {t}" for k, t in concurrent_costs.items()) + "."
        else:
            s += (" Cost to the deleting side: none in the concurrent interleavings"
                  " (it never waited and was never refused).")
        twins = [o for o in fingerprints if o != name and fingerprints[o] == fingerprints[name]
                 and list(cells_by).index(o) < list(cells_by).index(name)]
        if twins:
            s += f" Its outcomes (both sides, every interleaving) are identical to {twins[0]}'s."
        out.append(s)
    baseline = [r for r in results if r.interleaving == "no_concurrent_delete"]
    refused = [r for r in baseline if r.delete_outcome == "fk_violation"]
    if baseline and len(refused) == len(baseline):
        constraint = refused[0].detail.get("delete_constraint") or "the users foreign key"
        out.append(f"In no_concurrent_delete, deleting W after the login had committed was refused (fk_violation on "
                   f"{constraint}) under every strategy: the user now has W as primary workspace and that foreign key "
                   "has no ON DELETE action. This is the schema's doing, the same for every fix, not a cost of one.")
    elif refused:
        out.append("In no_concurrent_delete, deleting W after the login had committed was refused under "
                   + ", ".join(r.strategy for r in refused) + ".")
    audited = [r for r in results if r.detail.get("delete_end") == "commit" and r.delete_outcome == "ok"]
    if audited:
        logged = sum(1 for r in audited if r.detail["final_state"]["deletion_audited"])
        out.append(f"The audit trigger ({AUDIT_FILE}) logged the deletion of W in {logged} of the {len(audited)} "
                   "cells where it committed.")
    closers = [n for n in cells_by if v[n].closes_race]
    if closers:
        best = recommended(results)
        bv = v[best.name]
        out.append(f"Recommended: {best.name}, the cheapest of the strategies that close the race "
                   f"({', '.join(closers)}): {len(bv.concurrent_delete_costs)} concurrent interleaving(s) with a "
                   f"cost to the deleting side, {bv.attempts_thrown_away} login attempt(s) thrown away, "
                   f"{bv.uncontended_statements} statements on the uncontended login. Its code change is "
                   "shown with the recommended fix.")
    else:
        out.append("None of the strategies run closes the race.")
    return out


def recommended(results: Sequence[CellResult]) -> Strategy:
    """The cheapest strategy that closes the race, judged from the results (its code: ``.typescript``).

    Cheapest: fewest interleavings costing the deleting side (refused, aborted or waiting),
    then fewest login attempts thrown away, then fewest statements on the uncontended path.
    When nothing closes the race: the strategy with the fewest failed logins.
    """
    v = verdicts(results)
    if not v:
        raise ConfigError("no results to recommend from")
    order = list(STRATEGIES)
    closers = [x for x in v.values() if x.closes_race and x.strategy in STRATEGIES]
    if closers:
        best = min(closers, key=lambda x: (x.cost_key(), order.index(x.strategy)))
    else:
        known = [x for x in v.values() if x.strategy in STRATEGIES]
        if not known:
            raise ConfigError("the results name no strategy the lab knows")
        best = min(known, key=lambda x: (len(x.login_failures), x.cost_key(), order.index(x.strategy)))
    return STRATEGIES[best.strategy]


# -- the matrix as tables -------------------------------------------------------------------------

def _cell_text(cell: CellResult) -> str:
    login = cell.login_outcome
    if cell.login_outcome == "ok":
        login += " (W)" if cell.detail.get("login_workspace") == "original" else " (new ws)"
    n = len(cell.detail.get("login_attempts", []))
    notes = []
    if n > 1:
        notes.append(f"{n} attempts")
    lw = _login_waited(cell)
    if lw:
        notes.append(f"waited {sum(w['seconds'] for w in lw) * 1000:.0f} ms")
    if notes:
        login += ", " + ", ".join(notes)
    delete = cell.delete_outcome
    if cell.delete_outcome == "ok" and cell.detail.get("delete_end") == "rollback":
        delete += " (rolled back)"
    elif cell.delete_outcome == "fk_violation":
        delete += " (refused)"
    dw = _delete_waited(cell)
    if dw:
        delete += f", waited {sum(w['seconds'] for w in dw) * 1000:.0f} ms"
    return f"login {login} / delete {delete}"


def matrix_frame(results: Sequence[CellResult]):
    """Strategy rows x interleaving columns; each cell: the login's and the deletion's outcome."""
    import pandas as pd

    cells_by = by_strategy(list(results))
    columns = [i for i in INTERLEAVINGS if any(r.interleaving == i for r in results)]
    data = {name: {c.interleaving: _cell_text(c) for c in cells} for name, cells in cells_by.items()}
    frame = pd.DataFrame.from_dict(data, orient="index").reindex(columns=columns)
    frame.index.name = "strategy"
    frame.columns.name = "interleaving"
    return frame


_GREEN, _AMBER, _RED = "#d4edda", "#fff3cd", "#f8d7da"


def _colour(cell: CellResult) -> str:
    if cell.login_outcome in FAILURES or cell.detail.get("lost_deletion"):
        return _RED
    if (cell.login_outcome == "blocked" or cell.delete_outcome != "ok" or cell.detail.get("waits")):
        return _AMBER
    return _GREEN


def styled_matrix(results: Sequence[CellResult]):
    """:func:`matrix_frame` as a pandas Styler: red = the login failed (or a deletion was lost),
    amber = the login got through but a side waited, was blocked or the deletion was refused,
    green = both sides ok without waiting."""
    import pandas as pd

    results = list(results)
    frame = matrix_frame(results)
    colours = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for r in results:
        if r.strategy in colours.index and r.interleaving in colours.columns:
            colours.loc[r.strategy, r.interleaving] = f"background-color: {_colour(r)}; color: #212529"
    return (frame.style.apply(lambda _: colours, axis=None)
            .set_caption("Race lab: login / deletion, observed on PostgreSQL "
                         "(green ok, amber waited/blocked/refused, red login failed)")
            .set_properties(**{"white-space": "pre-wrap", "font-size": "0.85em"}))


def waits_frame(results: Sequence[CellResult]):
    """Every lock wait the monitor saw: who waited on whom, at which step, for how long."""
    import pandas as pd

    rows = [{"strategy": r.strategy, "interleaving": r.interleaving, **w}
            for r in results for w in r.detail.get("waits", [])]
    cols = ["strategy", "interleaving", "waiter", "blocked_by", "step", "attempt", "seconds", "wait_event", "ended"]
    return pd.DataFrame(rows, columns=cols)


# -- for the index and the incident document ---------------------------------------------------------

def summary(results: Sequence[CellResult]) -> dict[str, Any]:
    """What the index and the incident document record of a lab run (JSON-ready)."""
    v = verdicts(results)
    return {
        "cells": len(results),
        "closes_race": sorted(k for k, x in v.items() if x.closes_race),
        "does_not_close": sorted(k for k, x in v.items() if not x.closes_race),
        "recommended": recommended(results).name if results else None,
    }
