"""The indexes the kit's per-user reads rely on: which are missing in a database, and what that costs.

Timelines and verdicts read one user's or one workspace's rows. On the reference schema
most of those reads are index lookups; three audit-log reads are not, because the
reference schema has no index on the audit rows' ``user_id``, ``workspace_id`` or the
users' key inside ``row_data``. :func:`index_advice` checks the target database's catalog
for each index the kit relies on, and for a missing one gives the statement to create it
and the planner's estimate of what each read costs without it (``EXPLAIN``, nothing run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..db import queries
from ..db.schema import quote_ident


@dataclass
class IndexAdvice:
    purpose: str
    table: str  # schema-qualified
    key: str  # what the index is on, as PostgreSQL prints it
    present: bool
    found: str  # the matching index's name, when present
    create: str  # the statement to create it (for review; the kit never runs it)
    cost_without: float | None = None  # planner's total cost of the read, as the database is now
    plan_without: str = ""
    table_rows: int = -1

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("purpose", "table", "key", "present", "found", "create",
                                              "cost_without", "plan_without", "table_rows")}


def _norm(text: str) -> str:
    return re.sub(r"[\s\"()]|::text", "", text or "").lower()


def _wanted(m) -> list[dict]:
    ms, u, a = m.memberships, m.users, m.audit
    out = [
        {"purpose": "a user's memberships", "table": ms, "column": ms.columns["user_id"]},
        {"purpose": "a workspace's memberships", "table": ms, "column": ms.columns["workspace_id"]},
    ]
    if m.deletion_source == "audit":
        rd = a.columns["row_data"]
        for purpose, owner, key in (
            ("audit rows of given workspaces and memberships", None, "id"),
            ("memberships of a user that no longer exist", ms, ms.columns["user_id"]),
            ("memberships in a workspace that no longer exist", ms, ms.columns["workspace_id"]),
            ("a user's own audit rows (creation, primary-workspace changes)", u, u.columns["id"]),
        ):
            out.append({"purpose": purpose, "table": a, "json": (rd, key),
                        "where": (a.columns["table_name"], owner.name) if owner is not None else None})
    return out


def index_advice(db) -> list[IndexAdvice]:
    """For each index the kit relies on: present or not, and for a missing one its cost and statement."""
    out: list[IndexAdvice] = []
    with db.read() as r:
        m = db.schema.check(r)  # without its (unasked-for) audit table, no audit index is wanted
        wanted = _wanted(m)
        tables = sorted({(w["table"].schema, w["table"].name) for w in wanted})
        existing = queries.index_definitions(r, tables)
        for w in wanted:
            t = w["table"]
            mine = [e for e in existing if (e["schema"], e["table"]) == (t.schema, t.name)]
            if "column" in w:
                key = w["column"]
                match = next((e for e in mine if _first_key(e["definition"]) == _norm(key)), None)
                create = f"create index concurrently on {t.sql} ({quote_ident(key)});"
                probe = (f"select 1 from {t.sql} x where x.{quote_ident(key)}::text = %(v)s", {"v": "?"})
            else:
                col, jkey = w["json"]
                key = f"({col} ->> '{jkey}')"
                expr = _norm(f"{col}->>'{jkey}'")
                match = next((e for e in mine if _first_key(e["definition"]) == expr
                              and _predicate_ok(e["predicate"], w["where"])), None)
                where = ""
                params = {"k": jkey, "v": "?"}
                cond = f"x.{quote_ident(col)} ->> %(k)s = %(v)s"
                if w["where"]:
                    tcol, tname = w["where"]
                    where = f" where {quote_ident(tcol)} = '{tname.replace(chr(39), chr(39) * 2)}'"
                    cond += f" and x.{quote_ident(tcol)} = %(t)s"
                    params["t"] = tname
                create = (f"create index concurrently on {t.sql} (({quote_ident(col)} ->> "
                          f"'{jkey.replace(chr(39), chr(39) * 2)}')){where};")
                probe = (f"select 1 from {t.sql} x where {cond}", params)
            advice = IndexAdvice(w["purpose"], t.qualified, key, match is not None,
                                 match["name"] if match else "", create,
                                 table_rows=queries.estimated_rows(r, t.schema, t.name))
            if match is None:
                advice.cost_without, advice.plan_without = queries.explain_cost(r, *probe)
            out.append(advice)
    return out


def _first_key(definition: str) -> str:
    """The first key of ``CREATE INDEX ... USING btree (<key>, ...)``, normalised."""
    m = re.search(r"USING \w+ \((.*)\)", (definition or "").split(" WHERE ")[0])
    if not m:
        return ""
    body, depth, first = m.group(1), 0, ""
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            break
        first += ch
    return _norm(first)


def _predicate_ok(predicate: str | None, where) -> bool:
    """An index serves the read when it has no predicate, or exactly the read's table filter."""
    if not predicate:
        return True
    if not where:
        return False
    return _norm(predicate) == _norm(f"{where[0]} = '{where[1]}'")


def advice_frame(advice: list[IndexAdvice]):
    import pandas as pd

    return pd.DataFrame([{
        "purpose": a.purpose, "table": a.table, "key": a.key, "present": a.found if a.present else "MISSING",
        "est. cost without (planner)": "" if a.cost_without is None else f"{a.cost_without:,.0f}",
        "table rows (est.)": "" if a.table_rows < 0 else f"{a.table_rows:,}",
    } for a in advice])


def advice_markdown(advice: list[IndexAdvice]) -> str:
    missing = [a for a in advice if not a.present]
    if not missing:
        return "Every index the per-user reads rely on is present."
    lines = [f"{len(missing)} of {len(advice)} indexes the per-user reads rely on are missing. Without them each "
             "timeline or verdict reads these tables wider than one user's rows (the planner's estimate above). "
             "For review, created without blocking writes:", "", "```sql"]
    lines += [a.create for a in missing]
    return "\n".join(lines + ["```"])


def remediation_sql(m) -> str:
    """The audit-log indexes the reference schema lacks, as a reviewed migration (never run by the kit)."""
    a, ms, u = m.audit, m.memberships, m.users
    rd, tcol = a.columns["row_data"], a.columns["table_name"]
    rows = [("incidentkit_audit_member_user_idx", ms.columns["user_id"], ms.name),
            ("incidentkit_audit_member_workspace_idx", ms.columns["workspace_id"], ms.name),
            ("incidentkit_audit_user_key_idx", u.columns["id"], u.name)]
    lit = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
    body = "\n".join(
        f"create index concurrently if not exists {quote_ident(name)}\n"
        f"    on {a.sql} (({quote_ident(rd)} ->> {lit(key)})) where {quote_ident(tcol)} = {lit(table)};"
        for name, key, table in rows)
    return (
        "-- 04_investigation_indexes.sql: indexes for incidentkit's per-user reads of the audit log.\n"
        "--\n"
        "-- What it does: adds three partial expression indexes on the audit log so that a user's timeline and\n"
        "-- the verdicts read only that user's or workspace's audit rows (memberships by user and by workspace,\n"
        "-- the user's own rows). Without them each read scans every audit row of that table.\n"
        "-- How it was verified: tests/test_indexes.py creates exactly these statements (as index_advice()\n"
        "-- prints them) on a copy of the demo database and checks that the reads then plan index scans.\n"
        "-- CONCURRENTLY does not block writes, and cannot run inside a transaction block.\n\n" + body + "\n")
