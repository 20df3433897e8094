"""The incident document: a postmortem whose every figure and fact comes from this run.

:func:`gather` collects the evidence once (the diagnosis, every failed login with its
verdict, the timeline of the first affected user, the race lab's results); the section
methods turn it into Markdown. Nothing here is boilerplate that would read the same for a
different incident: sentences are built from the data, and a section whose data is absent
says what is missing instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import config
from ..text import fmt_time
from ..analysis.diagnosis import PROBLEM_FIGURES, Diagnosis, diagnose
from ..evidence import registry



def _when(at) -> str:
    return fmt_time(at)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


@dataclass
class Postmortem:
    diagnosis: Diagnosis
    affected: Any = None  # verdicts.Affected, or None without logs
    timeline: Any = None  # timeline.Timeline of the first affected user
    race: list = field(default_factory=list)  # racelab.CellResult
    logs_given: bool = False
    window: float = config.DEFAULT_WINDOW_SECONDS

    # -- figures --------------------------------------------------------------------------
    @property
    def failures(self) -> list:
        return list(self.affected.failures) if self.affected else []

    @property
    def users(self) -> list[str]:
        seen: list[str] = []
        for f in self.failures:
            if f.user_id and f.user_id not in seen:
                seen.append(f.user_id)
        return seen

    def by_verdict(self) -> dict[str, int]:
        return {k: v for k, v in (self.affected.by_verdict() if self.affected else {}).items() if v}

    def headline(self) -> dict[str, Any]:
        return {"failures": len(self.failures), "users": len(self.users), "by_verdict": self.by_verdict(),
                "clean": self.diagnosis.clean,
                "recommended": self._recommended().name if self.race else None}

    def _evidence_link(self, failure) -> str:
        """`` ([record](evidence/…))`` in a report run, where the record is copied; empty otherwise."""
        from .kept_evidence import evidence_file
        from .notebook import in_report_run

        if not in_report_run() or not getattr(failure, "source", None):
            return ""
        return f" (record: [{evidence_file(failure.source)}]({evidence_file(failure.source)}), line {failure.line})"

    def _recommended(self):
        from ..racelab import recommended

        return recommended(self.race)

    # -- sections -------------------------------------------------------------------------
    def summary_md(self) -> str:
        d = self.diagnosis
        out = []
        if self.failures:
            first, last = self.failures[0].at, self.failures[-1].at
            span = (f"at {_when(first)}" if first == last else f"between {_when(first)} and {_when(last)}")
            out.append(f"**What failed.** {_plural(len(self.failures), 'login')} of "
                       f"{_plural(len(self.users), 'user')} failed {span}: PostgreSQL rejected the insert of the "
                       f"user row on `{self.constraint}`, and the app answered 500.")
            top = max(self.by_verdict().items(), key=lambda kv: kv[1])
            out.append(f"**Why.** {top[1]:,} of {len(self.failures):,} failed because "
                       f"{registry.meaning(top[0])} (`{top[0]}`)." + self._how_known(top[0]))
        elif self.logs_given:
            out.append(f"**What failed.** The logs given ({_plural(len(self.affected.files), 'file')}) hold no "
                       f"failure on `{self.constraint}`.")
        else:
            out.append("**What failed.** No logs were given, so the failed logins are not known to this report; "
                       "run it with `--logs`.")
        state = ("holds no row that breaks these keys" if d.clean else
                 "is not clean: " + ", ".join(f"{v:,} {PROBLEM_FIGURES[k]}" for k, v in d.problems().items()))
        out.append(f"**The data.** At {_when(d.snapshot_at)}, `{d.database}` ({d.total_users:,} users, "
                   f"{d.total_workspaces:,} workspaces, {d.total_memberships:,} memberships) {state}.")
        if self.race:
            rec = self._recommended()
            out.append(f"**The fix.** Of {_plural(len({c.strategy for c in self.race}), 'strategy', 'strategies')} "
                       f"run against the race, `{rec.name}` closes it at the least cost; see *The fix* below.")
        return "\n\n".join(out)

    @property
    def constraint(self) -> str:
        from ..evidence.logs import DEFAULT_CONSTRAINT

        return getattr(self.affected, "constraint", None) or DEFAULT_CONSTRAINT

    def _how_known(self, verdict: str) -> str:
        """`` Evidence: recorded, from the server log (1).``: how strong the verdict's evidence is, and where from."""
        mine = [f for f in self.failures if f.verdict == verdict]
        strengths = sorted({getattr(f, "evidence_strength", "none") for f in mine} - {"none"})
        sources: dict[str, int] = {}
        for f in mine:
            d = getattr(f, "deletion", None)
            if d is not None:
                sources[d.origin] = sources.get(d.origin, 0) + 1
        if not strengths:
            return ""
        where = ", ".join(f"`{k}` ({v:,})" for k, v in sources.items())
        return f" Evidence: {', '.join(strengths)}" + (f", from {where}" if where else "") + "."

    def impact_md(self) -> str:
        if not self.failures:
            return ("No failed login is known to this report." if self.logs_given else
                    "Unknown: no logs were given.")
        from .notebook import frame_to_markdown

        first, last = self.failures[0].at, self.failures[-1].at
        span = f"at {_when(first)}" if first == last else f"from {_when(first)} to {_when(last)}"
        lines = [f"- Failed logins: **{len(self.failures):,}**, {span}.",
                 f"- Affected users: **{len(self.users):,}** (each blocked from the app at first login)."]
        without_user = sum(1 for f in self.failures if not f.user_id)
        if without_user:
            lines.append(f"- {_plural(without_user, 'failure')} could not be tied to a user.")
        frame = self.affected.by_verdict_frame()
        return "\n".join(lines) + "\n\n" + frame_to_markdown(frame)

    def root_cause_md(self) -> str:
        if not self.failures:
            return "Without failures there is nothing to attribute."
        parts = []
        for verdict, n in sorted(self.by_verdict().items(), key=lambda kv: -kv[1]):
            example = next(f for f in self.failures if f.verdict == verdict)
            evidence = "\n".join(f"  - {e}" for e in example.evidence)
            parts.append(f"**`{verdict}`: {_plural(n, 'failure')}.** It means {registry.meaning(verdict)}. "
                         f"The evidence for the first one ({example.user_id or 'unknown user'}, "
                         f"{_when(example.at)}){self._evidence_link(example)}:\n\n{evidence}")
        return "\n\n".join(parts)

    def race_md(self) -> str:
        if not self.race:
            return "The race lab was not run for this report."
        from ..racelab import conclusions, matrix_frame
        from .notebook import frame_to_markdown

        return "\n\n".join([frame_to_markdown(matrix_frame(self.race)), *conclusions(self.race)])

    def fix_md(self) -> str:
        if not self.race:
            return "Without the race lab this report recommends no fix."
        from ..racelab import fix_markdown

        return fix_markdown(self._recommended())

    def remediation_md(self) -> str:
        if not self.race:
            return "Run `incidentkit remediation --out DIR` for the remediation SQL."
        from ..racelab import REMEDIATION_FILES, render_remediation

        blocks = []
        for name in REMEDIATION_FILES:
            blocks.append(f"**`{name}`**\n\n```sql\n{render_remediation(name, self.race).strip()}\n```")
        return ("For review, never run by the kit: `incidentkit remediation --out DIR` writes these files for "
                "the team's migration tool.\n\n" + "\n\n".join(blocks))

    def prevention_md(self) -> str:
        d = self.diagnosis
        thresholds = " ".join(f"--max-{flag} {getattr(d, key)}" for key, flag in (
            ("users_without_primary_workspace", "users-without-primary"),
            ("users_with_invalid_primary_workspace", "invalid-primary"),
            ("orphaned_memberships", "orphaned-memberships")) if getattr(d, key))
        lines = [
            "- Monitor the data with `incidentkit check` on a schedule; it exits 1 when a user lacks or has an "
            "invalid primary workspace or a membership is orphaned:\n\n"
            f"  ```\n  */15 * * * *  DATABASE_URL=… incidentkit check{(' ' + thresholds) if thresholds else ''}\n  ```"
            + (f"\n\n  (thresholds set to today's figures, so it alerts on growth: {thresholds})" if thresholds else ""),
        ]
        source = d.schema.get("deletion_source", "audit")
        if source == "audit":
            lines.append("- Keep the audit trigger: this report dated the deletions from "
                         f"`{d.schema.get('audit', {}).get('table', 'the audit log')}`.")
        elif source == "soft_delete":
            lines.append("- Deletions were dated from the soft-delete column; keep it written on every deletion.")
        else:
            used = [x for x in (getattr(self.affected, "deletion_sources", None) or []) if x != "none"]
            if used:
                lines.append(f"- No audit table: this report dated deletions from {', '.join(f'`{x}`' for x in used)}. "
                             "Logs cover only their own time; install the audit trigger (`03_audit_trigger.sql`) "
                             "for a complete history, or keep `log_statement = 'mod'` and the as-of command.")
            else:
                lines.append("- Install the audit trigger (`03_audit_trigger.sql`): without a deletion source this "
                             "report could not date deletions, and verdicts stay `insufficient_evidence`.")
        if self.failures:
            lines.append(f"- Alert on the error itself: {_plural(len(self.failures), 'failure')} reached users as "
                         "a 500 before anyone looked.")
        return "\n".join(lines)

    def open_questions_md(self) -> str:
        qs = []
        undecided = [f for f in self.failures if f.verdict == "insufficient_evidence"]
        for f in undecided[:10]:
            missing = f.evidence[-1] if f.evidence else "no evidence was found"
            qs.append(f"- {_when(f.at)}, {f.user_id or 'unknown user'}: undecided. {missing}")
        if len(undecided) > 10:
            qs.append(f"- … and {len(undecided) - 10:,} more undecided failures (see the affected-users notebook).")
        if self.affected and self.affected.skipped_lines:
            qs.append(f"- {_plural(self.affected.skipped_lines, 'log line')} could not be read and were skipped: "
                      "a failure in them would be missing here.")
        if not self.logs_given:
            qs.append("- Which logins failed? No logs were given.")
        if self.affected and (getattr(self.affected, "deletion_sources", None) or ["none"]) == ["none"]:
            qs.append("- When were workspaces deleted? No deletion source: no audit table, no server log "
                      "statements, no application events, no point-in-time probes.")
        if not self.race:
            qs.append("- Does the chosen fix close the race? The race lab was not run.")
        return "\n".join(qs) if qs else "None: the evidence decided every failure in this report."


def gather(db, logs=None, *, window: float = config.DEFAULT_WINDOW_SECONDS, race_lab: bool = True,
           timeline_key=None) -> Postmortem:
    """Collect everything the incident document states, once.

    In a report run the detail notebooks have already computed the diagnosis, the affected
    users, each timeline and the race lab, and kept them (:func:`incidentkit.report.notebook.keep`):
    the document is assembled from those results and computes nothing again, so each of its
    figures is the one its detail notebook shows. Opened on its own (JupyterLab), it computes them."""
    from .notebook import in_report_run, kept

    if in_report_run():
        d = kept("diagnosis") or diagnose(db)
        found = kept("affected")
        pm = Postmortem(d, found, logs_given=found is not None, window=window)
        first_user = next((f.user_id for f in pm.failures if f.user_id), None)
        pm.timeline = kept(f"timeline:{first_user}") if first_user else None
        pm.race = list(kept("race_lab") or []) if race_lab else []
        return pm
    from ..evidence import affected, default_logs, user_timeline

    d = diagnose(db)
    effective = logs or default_logs(db)
    found = affected(db, effective, window=window) if effective else None
    pm = Postmortem(d, found, logs_given=bool(effective), window=window)
    first_user = next((f.user_id for f in pm.failures if f.user_id), None)
    if first_user:
        pm.timeline = user_timeline(db, first_user, logs=effective, window=window)
    if race_lab:
        from ..racelab import run_race_lab

        pm.race = run_race_lab()
    return pm
