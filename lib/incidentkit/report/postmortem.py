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


# -- the report of any foreign key -----------------------------------------------------------------
# The notebooks' cells for a ``constraint`` (any foreign key): every title and sentence is built from
# the constraint's definition and this run's results, never from the mapped relationship's names.

def constraint_logs(logs: list[str] | None, database_url_env: str = "") -> list[str]:
    """The logs a constraint's notebooks read: the ones given, else on the demo its application logs."""
    if logs:
        return list(logs)
    if database_url_env:
        return []
    from ..db.demo import app_logs

    return [str(p) for p in app_logs()]


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


def definition_md(cd) -> str:
    """The foreign key's definition (from the catalog) and its paths, as Markdown."""
    from .notebook import md_text

    fk = cd.constraint
    lines = [f"**`{md_text(fk.name)}`**: {md_text(fk.describe())}", "", f"{md_text(fk.properties())}.", ""]
    if cd.paths:
        lines.append(f"Other foreign keys into `{md_text(fk.qualified_referenced_table)}` (the paths by which an "
                     "application may have read the key):")
        lines += [f"- `{md_text(p.constraint.name)}`: {md_text(p.constraint.describe())}" for p in cd.paths]
    else:
        lines.append(f"No other foreign key points into `{md_text(fk.qualified_referenced_table)}`: the key was "
                     "read from that table itself, or from outside the database.")
    return "\n".join(lines)


def figures_frame(cd):
    """One row per foreign key (the constraint, then its paths): rows, NULL keys, dangling keys."""
    import pandas as pd

    rows = []
    for fk, f in [(cd.constraint, cd.figures)] + [(p.constraint, p.figures) for p in cd.paths]:
        n = f["null_keys"]
        rows.append({"foreign key": fk.name, "referencing table": fk.qualified_table,
                     "referencing rows": f["referencing_rows"], "with a NULL column": n["any_null"],
                     "all NULL": n["all_null"], "NULL mixes breaking MATCH FULL": n["violating"],
                     "dangling keys": f["dangling_keys"]})
    return pd.DataFrame(rows)


def diagnosis_conclusion_md(cd) -> str:
    """What the figures say: clean, or what breaks the constraint and how much."""
    fk = cd.constraint
    broken = [(p.constraint, p.figures) for p in cd.paths if p.figures["dangling_keys"]]
    if cd.clean and not broken:
        text = (f"Clean: every one of the {_plural(cd.figures['referencing_rows'], 'row')} of "
                f"`{fk.qualified_table}` that holds a key finds its row in `{fk.qualified_referenced_table}`"
                + (", and so do the rows of every other foreign key into it." if cd.paths else ".")
                + " A failure of this constraint left nothing behind: the rejected write was rolled back, so "
                  "only the logs and the history of the key can say why it failed.")
        if not fk.validated:
            text += " The constraint is NOT VALID: rows written before it was added were never checked."
        return text
    parts = []
    if cd.figures["dangling_keys"]:
        parts.append(f"{_plural(cd.figures['dangling_keys'], 'row')} of `{fk.qualified_table}` hold a key missing "
                     f"from `{fk.qualified_referenced_table}`"
                     + (" (the constraint is NOT VALID: it never checked them)" if not fk.validated else ""))
    if cd.figures["null_keys"]["violating"]:
        parts.append(f"{_plural(cd.figures['null_keys']['violating'], 'row')} mix NULL and non-NULL key columns "
                     "under MATCH FULL")
    for p, f in broken:
        parts.append(f"{_plural(f['dangling_keys'], 'row')} of `{p.qualified_table}` (on `{p.name}`) point at a "
                     f"missing row of `{fk.qualified_referenced_table}`")
    return "Not clean: " + "; ".join(parts) + ". These rows are data a foreign key should have prevented."


def dangling_frame(cd):
    """The capped samples of dangling keys, each with the row holding it."""
    import pandas as pd

    rows = [{"foreign key": cd.constraint.name, "key": _key_text(s["key"]), "row": _key_text(s["row"])}
            for s in cd.samples.get("dangling", [])]
    rows += [{"foreign key": p.constraint.name, "key": _key_text(s["key"]), "row": _key_text(s["row"])}
             for p in cd.paths for s in p.samples.get("dangling", [])]
    return pd.DataFrame(rows, columns=["foreign key", "key", "row"])


def verdicts_frame(found):
    """Failures per verdict of the generic family, zeros included, with each verdict's label."""
    import pandas as pd

    counts = found.by_verdict()
    return pd.DataFrame([{"verdict": v, "failures": counts.get(v, 0), "meaning": registry.label(v, "generic")}
                         for v in registry.names("generic")])


def failures_frame(found):
    """One row per failure, in time order; in a report run each links to its record in ``evidence/``."""
    import pandas as pd

    from .kept_evidence import evidence_file
    from .notebook import Link, in_report_run

    rows = []
    for j in found.failures:
        f, d = j.failure, j.deletion
        row = {"failed at": fmt_time(f.at), "direction": f.direction, "key": _key_text(f.key),
               "verdict": j.verdict, "evidence": j.evidence_strength,
               "seconds after deletion": round((f.at - d.at).total_seconds(), 3) if d else None,
               "source": f.source.rsplit("/", 1)[-1], "line": f.line}
        if in_report_run():
            row["record"] = Link(f"line {f.line}", evidence_file(f.source)) if f.source else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["failed at", "direction", "key", "verdict", "evidence",
                                       "seconds after deletion", "source", "line"]
                        + (["record"] if in_report_run() else []))


def evidence_md(found) -> str:
    """The sentences that decide each failure's verdict."""
    from .notebook import md_text

    if not found.failures:
        return f"No failure of `{md_text(found.constraint)}` was found in the logs read."
    out = []
    for j in found.failures:
        out += _judged_md(j, f"{md_text(fmt_time(j.failure.at))}, key ({md_text(_key_text(j.failure.key))})")
    return "\n".join(out)


def _judged_md(j, head: str) -> list[str]:
    """One judged failure of any constraint: ``head``, its verdict and strength, the sentences behind it."""
    from .notebook import md_text

    return [f"**{head}**: `{j.verdict}` ({md_text(registry.label(j.verdict, 'generic'))}), {j.evidence_strength}.",
            *(f"- {md_text(s)}" for s in j.evidence), ""]


def affected_headline(found) -> dict[str, Any]:
    return {"constraint": found.constraint, "failures": len(found.failures),
            "by_verdict": {k: v for k, v in found.by_verdict().items() if v},
            "keys": [_key_text(j.failure.key) for j in found.failures]}


def key_events_frame(kt):
    """A key's events in time order (created, deleted, rows written holding it, failures)."""
    import pandas as pd

    return pd.DataFrame([{"at": fmt_time(e.at), "event": e.kind, "detail": e.detail, "source": e.source}
                         for e in kt.events], columns=["at", "event", "detail", "source"])


def key_verdict_md(kt) -> str:
    from .notebook import md_text

    fk = kt.constraint
    head = (f"Key ({md_text(_key_text(kt.key))}) of `{md_text(fk.qualified_referenced_table)}`: "
            + ("a row holds it now." if kt.exists_now else "no row holds it now.")
            + f" Sources read: {md_text(', '.join(kt.sources) or 'none')}.")
    if not kt.failures:
        return head + "\n\nNo failure on this key was found in the logs read."
    out = [head, ""]
    for j in kt.failures:
        out += _judged_md(j, f"Failure at {md_text(fmt_time(j.failure.at))}")
    return "\n".join(out)


def race_matrix_frame(results):
    """The generic race lab's matrix: strategy rows, interleaving columns, each cell's outcome."""
    import pandas as pd

    data: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for c in results:
        data.setdefault(c.strategy, {})[c.interleaving] = c.detail.get("summary") or (
            f"insert {c.login_outcome} / delete {c.delete_outcome}")
        if c.interleaving not in order:
            order.append(c.interleaving)
    frame = pd.DataFrame.from_dict(data, orient="index").reindex(columns=order)
    frame.index.name = "strategy"
    return frame


def race_conclusions_md(results) -> str:
    from ..racelab import generic_conclusions
    from .notebook import md_text

    return "\n\n".join(md_text(c) for c in generic_conclusions(results))


@dataclass
class ConstraintDocument:
    """The shorter incident document of any foreign key, from the results this run kept."""

    diagnosis: Any  # analysis.constraints.ConstraintDiagnosis
    affected: Any = None  # evidence.generic.AnyAffected, or None without logs
    timeline: Any = None  # evidence.generic.KeyTimeline of the first failed key
    race: list = field(default_factory=list)  # racelab.CellResult of the generic lab
    window: float = config.DEFAULT_WINDOW_SECONDS

    @property
    def failures(self) -> list:
        return list(self.affected.failures) if self.affected else []

    def headline(self) -> dict[str, Any]:
        from ..racelab import generic_summary

        return {"constraint": self.diagnosis.constraint.name, "failures": len(self.failures),
                "by_verdict": {k: v for k, v in (self.affected.by_verdict() if self.affected else {}).items() if v},
                "clean": self.diagnosis.clean,
                "safe_strategies": generic_summary(self.race)["never_fail_and_no_orphan"] if self.race else None}

    def title_md(self) -> str:
        from .notebook import md_text

        fk = self.diagnosis.constraint
        return (f"# 00 · Incident document: the `{md_text(fk.name)}` failures\n\n"
                f"{md_text(fk.describe())}. What failed and when, why (each failure's verdict and its evidence), "
                "and whether the generic strategies close the race; every figure comes from this run's data.")

    def summary_md(self) -> str:
        fk = self.diagnosis.constraint
        n = len(self.failures)
        if self.affected is None:
            return (f"No log was read: the failures of `{fk.name}` are unknown. The stored data is "
                    + ("clean." if self.diagnosis.clean else "not clean (see the diagnosis).")
                    + " Give the logs to decide why writes failed.")
        if not n:
            return f"The logs read hold no failure of `{fk.name}`."
        times = sorted(j.failure.at for j in self.failures)
        counts = {k: v for k, v in self.affected.by_verdict().items() if v}
        top = max(counts, key=counts.get)
        keys = {_key_text(j.failure.key) for j in self.failures}
        return (f"{_plural(n, 'write')} failed on `{fk.name}` ({fk.describe()}) between {_when(times[0])} and "
                f"{_when(times[-1])}, on {_plural(len(keys), 'key')}. The most frequent verdict is `{top}` "
                f"({registry.label(top, 'generic')}): {_plural(counts[top], 'failure')}. The stored data is "
                + ("clean: no row breaks the constraint now." if self.diagnosis.clean
                   else "not clean: rows break the constraint now (see the diagnosis)."))

    def impact_md(self) -> str:
        if not self.failures:
            return "No failure to count."
        counts = self.affected.by_verdict()
        return "\n".join(["| verdict | failures | meaning |", "|---|---|---|"]
                         + [f"| `{v}` | {counts[v]:,} | {registry.label(v, 'generic')} |"
                            for v in registry.names("generic") if counts.get(v)])

    def root_cause_md(self) -> str:
        if not self.failures:
            return "No failure, no verdict."
        out = []
        seen = set()
        for j in self.failures:
            if j.verdict in seen:
                continue
            seen.add(j.verdict)
            out.append(f"**`{j.verdict}`**: {registry.meaning(j.verdict, 'generic')}. Its first failure:")
            out += [f"- {s}" for s in j.evidence]
            out.append("")
        return "\n".join(out)

    def timeline_md(self) -> str:
        if self.timeline is None:
            return "No failed key: no history to show."
        kt = self.timeline
        lines = [f"Key ({_key_text(kt.key)}) of `{kt.constraint.qualified_referenced_table}`, sources: "
                 f"{', '.join(kt.sources) or 'none'}.", "", "| at | event | detail |", "|---|---|---|"]
        lines += [f"| {fmt_time(e.at)} | {e.kind} | {e.detail} |" for e in kt.events]
        return "\n".join(lines)

    def race_md(self) -> str:
        if not self.race:
            return "The race lab was not run in this report."
        from ..racelab import generic_conclusions

        return "\n\n".join(generic_conclusions(self.race))

    def open_questions_md(self) -> str:
        out = []
        if self.affected is None:
            out.append("- No log was read: which writes failed, and why, is not known.")
        weak = [j for j in self.failures if j.evidence_strength != "recorded"]
        if weak:
            out.append(f"- {_plural(len(weak), 'verdict')} {'rests' if len(weak) == 1 else 'rest'} on inferred "
                       "evidence, not on a recorded deletion: "
                       + ", ".join(f"key ({_key_text(j.failure.key)}) `{j.verdict}`" for j in weak)
                       + ". A deletion source (audit table, server log with `log_statement = 'mod'`, point-in-time "
                         "probes) covering those keys would settle them.")
        undecided = [j for j in self.failures if j.verdict == "insufficient_evidence"]
        if undecided:
            out.append(f"- {_plural(len(undecided), 'failure')} could not be decided from what is recorded.")
        return "\n".join(out) or "None: every failure's verdict rests on recorded evidence."


def timeline_name(key: list[Any]) -> str:
    """The name a key's timeline is kept under in a report run (its values, in the key's order)."""
    return "key_timeline:" + ",".join(str(v) for v in key)


def gather_constraint(db, constraint: str, logs=None, *, window: float = config.DEFAULT_WINDOW_SECONDS,
                      race_lab: bool = True, database_url_env: str = "") -> ConstraintDocument:
    """Everything the document of ``constraint`` states, once: in a report run, the results the
    detail notebooks kept; opened on its own, computed here."""
    from .notebook import in_report_run, kept

    if in_report_run():
        cd = kept("constraint_diagnosis")
        found = kept("constraint_affected")
        if cd is not None:
            doc = ConstraintDocument(cd, found, window=window)
            first = next((j.failure.key for j in doc.failures if j.failure.key), None)
            doc.timeline = kept(timeline_name(list(first.values()))) if first else None
            doc.race = list(kept("constraint_race_lab") or []) if race_lab else []
            return doc
    from ..analysis.constraints import diagnose_constraint
    from ..evidence.generic import affected_any, key_timeline

    cd = diagnose_constraint(db, constraint)
    effective = constraint_logs(logs, database_url_env)
    found = affected_any(db, effective, constraint=cd.constraint.name, window=window) if effective else None
    doc = ConstraintDocument(cd, found, window=window)
    first = next((j.failure.key for j in doc.failures if j.failure.key), None)
    if first:
        doc.timeline = key_timeline(db, cd.constraint.name, list(first.values()), logs_paths=effective, window=window)
    if race_lab:
        from ..racelab import run_generic_race_lab

        doc.race = run_generic_race_lab(cd.constraint.name, db)
    return doc
