"""The package's layout: its import graph has no circle.

Every ``import``/``from ... import`` of the kit's own modules counts, at module level or inside a
function (a deferred import that closes a circle is still a circle in the design). ``from pkg import
name`` is an edge to ``pkg.name`` when that is a module, otherwise to ``pkg`` itself; importing a
submodule is not counted as importing its parent packages' ``__init__`` (as import-linter does), and
imports under ``if TYPE_CHECKING:`` (never executed) do not count. Pure: reads the source with
:mod:`ast`, imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "incidentkit"
ROOT = Path(__file__).resolve().parents[1] / "lib" / PACKAGE


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """``incidentkit.report.render`` -> its file, for every module and package of the kit."""
    names = {}
    for path in root.rglob("*.py"):
        parts = (PACKAGE,) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Each module of the kit -> the modules of the kit it imports (anywhere in its source)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                if base is None:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                while target and target not in modules:  # ``import incidentkit.x.y`` of a name: its module
                    target = target.rpartition(".")[0] if target.startswith(PACKAGE) else ""
                if target and target != module:
                    graph[module].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other (strongly connected, more than one module),
    each sorted; Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(groups)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


#: The flow, lowest first: a module may import its own layer or a lower one, never a higher one.
LAYERS = (
    ("incidentkit.config", "incidentkit.exceptions", "incidentkit.text"),
    ("incidentkit.db",),
    ("incidentkit.analysis",),
    ("incidentkit.evidence",),
    ("incidentkit.racelab",),
    ("incidentkit.report", "incidentkit.lab"),
    ("incidentkit.cli", "incidentkit.__main__", "incidentkit"),  # the root package re-exports the API
)


def layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or (p != "incidentkit" and module.startswith(p + ".")) for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layout.py")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if layer(t) > layer(m))


def test_the_graph_sees_the_packages_imports():
    graph = import_graph()
    assert "incidentkit.report.render" in graph
    # module-level and function-level imports both count
    assert "incidentkit.config" in graph["incidentkit.report.render"]
    assert "incidentkit.report.manifest" in graph["incidentkit.report.render"]  # imported inside render_for
    assert "incidentkit.racelab" in graph["incidentkit.report.render"]  # inside latest_race_results


def test_find_cycle_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_type_checking_imports_do_not_count(tmp_path):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    graph = import_graph(pkg)
    assert graph[f"{PACKAGE}.a"] == set()
    assert graph[f"{PACKAGE}.b"] == {f"{PACKAGE}.a"}  # inside a function: counted


def test_circles_names_every_group():
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert circles(graph) == [["a", "b"], ["c", "d", "e"]]


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(
        " -> ".join(find_cycle({m: graph[m] & set(group) for m in group})) for group in found)


def test_a_lower_layer_never_imports_a_higher_one():
    assert upward_imports({"incidentkit.db.x": {"incidentkit.report.y"}}) == ["incidentkit.db.x -> incidentkit.report.y"]
    found = upward_imports(import_graph())
    assert not found, "imports against the flow (db -> analysis -> evidence -> racelab -> report -> cli):\n" + \
        "\n".join(found)
