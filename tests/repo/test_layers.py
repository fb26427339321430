"""Who may import whom inside hybrid (docs/design.md, "Package layers").

The import graph is read from the source with ``ast``: imports at module level and inside
functions alike, because an import tucked into a function still ties the two modules
together (it only hides the tie until run time). Add a layer by adding a row below.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import hybrid

#: The only modules that may import the command line (argument parsing, not a library).
CLI_ENTRY_POINTS = frozenset({"hybrid.__main__", "hybrid.management.commands.runhybrid"})

#: (importer prefix, imported prefix, except importers): no module under the first may
#: import one under the second, unless it is listed in the third.
FORBIDDEN: list[tuple[str, str, frozenset[str]]] = [
    ("hybrid.db", "hybrid.bridge", frozenset()),
    ("hybrid.db", "hybrid.web", frozenset()),
    ("hybrid.process", "hybrid.bridge", frozenset()),
    ("hybrid.process", "hybrid.web", frozenset()),
    ("hybrid.lanes", "hybrid.bridge", frozenset()),
    ("hybrid.lanes", "hybrid.web", frozenset()),
    ("hybrid.lanes", "hybrid.db", frozenset()),
    ("hybrid.groups", "hybrid.bridge", frozenset()),
    ("hybrid.groups", "hybrid.web", frozenset()),
    ("hybrid.groups", "hybrid.db", frozenset()),
    ("hybrid.groups", "hybrid.lanes", frozenset()),
    ("hybrid.tasks", "hybrid.bridge", frozenset()),  # tasks may use groups, not the server
    ("hybrid.tasks", "hybrid.web", frozenset()),
    ("hybrid.tasks", "hybrid.worker", frozenset()),
    ("hybrid.tasks", "hybrid.db", frozenset()),
    ("hybrid.tasks", "hybrid.lanes", frozenset()),
    ("hybrid.subscriber", "hybrid.groups", frozenset()),
    ("hybrid.subscriber", "hybrid.tasks", frozenset()),
    ("hybrid.slots", "hybrid", frozenset()),  # the bottom: stdlib only
    ("hybrid", "hybrid.cli", CLI_ENTRY_POINTS),
    # The process model: the master's helpers never load the master, nor each other's side.
    ("hybrid.protocol", "hybrid", frozenset()),  # stdlib only, shared by master and worker
    ("hybrid.procutil", "hybrid", frozenset()),
    ("hybrid.control", "hybrid.arbiter", frozenset()),
    ("hybrid.control", "hybrid.worker", frozenset()),
    ("hybrid.nginx", "hybrid.arbiter", frozenset()),
    ("hybrid.worker", "hybrid.arbiter", frozenset()),
]

#: Packages whose modules must not import one another in a circle.
ACYCLIC = ["hybrid.db"]

PACKAGE = Path(hybrid.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The hybrid modules ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # ``from hybrid.db import pool`` imports the module hybrid.db.pool
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("hybrid"):
                yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(name, path, modules)) - {name} for name, path in modules.items()}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "hybrid.lanes" in graph["hybrid.db.pool"]
    assert "hybrid.db.pool" in graph["hybrid.db.execute"]
    assert "hybrid.cli" in graph["hybrid.__main__"]


def test_no_module_imports_across_a_forbidden_edge() -> None:
    offenders = [
        f"{importer} imports {imported}"
        for importer, imports in _graph().items()
        for imported in imports
        for low, high, allowed in FORBIDDEN
        if _under(importer, low)
        and _under(imported, high)
        and importer not in allowed
        and not (low == "hybrid" and _under(importer, high))  # a package's own modules
    ]
    assert offenders == []


def _cycle(graph: dict[str, set[str]], nodes: set[str]) -> list[str] | None:
    """One import cycle among ``nodes``, or None (depth-first, colouring)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node] & nodes):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles_inside_the_acyclic_packages() -> None:
    graph = _graph()
    for package in ACYCLIC:
        # The package's __init__ re-exports its modules; the modules must not need it.
        nodes = {name for name in graph if _under(name, package) and name != package}
        assert _cycle(graph, nodes) is None, f"import cycle in {package}"
        leaning = sorted(name for name in nodes if package in graph[name])
        assert leaning == [], f"modules of {package} import the package itself"


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph, set(graph)) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}, {"a", "b"}) is None
