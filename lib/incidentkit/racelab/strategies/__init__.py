"""The strategies the lab runs: each one way of writing the login, with its app code change.

A strategy is the same login program with some steps switched on (:class:`Strategy`), plus
the TypeScript change an app engineer would make for it, kept next to this module as
``<strategy name>.ts`` (package data). To add a strategy: write its ``.ts`` file here, add a
:class:`Strategy` to :func:`_strategies`, and teach the login program in
:mod:`incidentkit.racelab.driver` any new step it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..sql import (
    CASCADE_FILE,
    CLEANUP_FILE,
    SQL_BEGIN,
    SQL_CHECK_WORKSPACE,
    SQL_COMMIT,
    SQL_CREATE_WORKSPACE,
    SQL_DELETE_MEMBERSHIP,
    SQL_INSERT_PRIMARY_MEMBERSHIP,
    SQL_INSERT_USER,
    SQL_LOCK_WORKSPACE,
    SQL_ROLLBACK,
    SQL_SELECT_MEMBERSHIP,
    SQL_SELECT_USER,
)

_HERE = Path(__file__).resolve().parent


def _typescript(name: str) -> str:
    """The app code change of strategy ``name`` (the file ``<name>.ts`` next to this module)."""
    return (_HERE / f"{name}.ts").read_text()


@dataclass(frozen=True)
class Strategy:
    """One way of writing the login, as the SQL steps an app engineer would apply.

    The login program is the same for every strategy; these fields switch its steps on:
    ``check`` is what it does with the membership's workspace before the insert (nothing,
    ``"exists"``: a plain select, or ``"key_share"``: ``select ... for key share``);
    ``delete_orphan_membership`` deletes the membership when its workspace is gone;
    ``isolation``, ``retry_sqlstates`` and ``max_attempts`` say how the transaction runs
    and when it is re-run from the start (re-reading the membership). ``setup_files`` are
    remediation templates applied to the scratch database before each cell.
    ``typescript`` is the code change in the app (Drizzle), for the report.
    """

    name: str
    description: str
    typescript: str
    check: str | None = None
    delete_orphan_membership: bool = False
    isolation: str = "read committed"
    retry_sqlstates: tuple[str, ...] = ()
    max_attempts: int = 1
    setup_files: tuple[str, ...] = ()

    @property
    def steps(self) -> tuple[tuple[str, str], ...]:
        """``(label, SQL)`` in the order the login issues them (branches labelled)."""
        out: list[tuple[str, str]] = [
            ("begin", SQL_BEGIN[self.isolation]),
            ("select user", SQL_SELECT_USER),
            ("select membership", SQL_SELECT_MEMBERSHIP),
        ]
        if self.check == "exists":
            out.append(("[membership] check workspace exists", SQL_CHECK_WORKSPACE))
        elif self.check == "key_share":
            out.append(("[membership] lock workspace for key share", SQL_LOCK_WORKSPACE))
        out.append(("[membership%s] insert user" % (", workspace found" if self.check else ""), SQL_INSERT_USER))
        if self.delete_orphan_membership:
            out.append(("[workspace gone] delete orphaned membership", SQL_DELETE_MEMBERSHIP))
        fallback = "[no membership or workspace gone]" if self.check else "[no membership]"
        out += [
            (f"{fallback} create workspace", SQL_CREATE_WORKSPACE),
            (f"{fallback} insert user", SQL_INSERT_USER),
            (f"{fallback} insert primary membership", SQL_INSERT_PRIMARY_MEMBERSHIP),
            ("commit", SQL_COMMIT),
        ]
        if self.retry_sqlstates:
            states = ", ".join(self.retry_sqlstates)
            out.append((f"[on SQLSTATE {states}] rollback, then re-run from begin "
                        f"(at most {self.max_attempts} attempts)", SQL_ROLLBACK))
        return tuple(out)

    @property
    def sql(self) -> str:
        """The steps as one commented SQL script (for the report)."""
        lines = [f"-- strategy {self.name}: {self.description}"]
        for f in self.setup_files:
            lines.append(f"-- before: the remediation file {f}")
        for label, stmt in self.steps:
            lines.append(f"-- {label}")
            lines.append(stmt.rstrip(";") + ";")
        return "\n".join(lines) + "\n"


def _strategies() -> dict[str, Strategy]:
    items = [
        Strategy(
            "seed_original",
            "the code as the report quotes it: read the membership, insert the user with its workspace",
            _typescript("seed_original"),
        ),
        Strategy(
            "seed_option1_validate",
            "the report's Option 1: check that the membership's workspace exists (plain select), "
            "else take the no-membership path",
            _typescript("seed_option1_validate"),
            check="exists",
        ),
        Strategy(
            "seed_option2_cleanup",
            "the report's Option 2: the orphan cleanup SQL, plus Option 1's check that also deletes "
            "the orphaned membership before the no-membership path",
            _typescript("seed_option2_cleanup"),
            check="exists",
            delete_orphan_membership=True,
            setup_files=(CLEANUP_FILE,),
        ),
        Strategy(
            "seed_option3_cascade",
            "the report's Option 3: the ON DELETE CASCADE migration on workspace_members "
            "(the users foreign key keeps no ON DELETE action); login code unchanged",
            _typescript("seed_option3_cascade"),
            setup_files=(CASCADE_FILE,),
        ),
        Strategy(
            "lock_workspace_for_key_share",
            "lock the membership's workspace with select ... for key share before the insert; "
            "when no row comes back (deleted), take the no-membership path",
            _typescript("lock_workspace_for_key_share"),
            check="key_share",
        ),
        Strategy(
            "retry_on_fk_violation",
            "the original code, with the whole transaction retried (re-reading the membership) "
            "on SQLSTATE 23503, at most 3 attempts",
            _typescript("retry_on_fk_violation"),
            retry_sqlstates=("23503",),
            max_attempts=3,
        ),
        Strategy(
            "serializable_retry",
            "the original code in a SERIALIZABLE transaction (the login only; the admin's deletion "
            "is unchanged), retried on SQLSTATE 40001, at most 3 attempts",
            _typescript("serializable_retry"),
            isolation="serializable",
            retry_sqlstates=("40001",),
            max_attempts=3,
        ),
    ]
    return {s.name: s for s in items}


#: Every strategy the lab runs, by name.
STRATEGIES: dict[str, Strategy] = _strategies()
