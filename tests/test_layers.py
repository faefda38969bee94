"""The packages of `app/` import one way only: a layer imports the layers below it, never above,
and no set of packages imports itself in a circle. docs/architecture.md explains the order.

Imports are read from the source (module level and inside functions; `TYPE_CHECKING` blocks are
left out, since they never run), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"

# Top to bottom. A unit is a top-level package or module of `app/`.
LAYERS: list[tuple[str, frozenset[str]]] = [
    (
        "edge",
        frozenset({"__main__", "main", "runtime", "bootstrap", "models", "api", "admin", "http", "cli", "console"}),
    ),
    ("tasks", frozenset({"tasks"})),
    ("generation", frozenset({"generation"})),
    ("routing", frozenset({"routing"})),
    ("providers", frozenset({"providers"})),
    (
        "domains",
        frozenset(
            {"alerts", "operators", "keys", "billing", "catalog", "files", "idempotency", "callbacks", "observability"}
        ),
    ),
    ("foundation", frozenset({"images", "specs", "errors", "db", "settings", "net", "memory", "redis_client"})),
]
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_OF = {unit: name for name, units in LAYERS for unit in units}


def unit_of(module: str) -> str:
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    type_checking_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_checking_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "app")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("app.")}


def unit_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the modules that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in APP.rglob("*.py"):
        module = module_name(path)
        if module == "app":
            continue
        source = unit_of(module)
        for imported in imported_modules(path):
            target = unit_of(imported)
            if target != source:
                graph[source][target].add(module)
    return graph


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in APP.rglob("*.py") if module_name(p) != "app"}
    assert sorted(units - set(RANK)) == [], "add the new package to LAYERS (and to docs/architecture.md)"


def test_no_import_runs_up_the_layers() -> None:
    upward = [
        f"{', '.join(sorted(modules))} ({LAYER_OF[source]}) imports app.{target} ({LAYER_OF[target]})"
        for source, targets in unit_graph().items()
        for target, modules in targets.items()
        if source in RANK and target in RANK and RANK[target] < RANK[source]
    ]
    assert upward == []


def test_no_packages_import_each_other_in_a_cycle() -> None:
    graph = unit_graph()
    cycles = [sorted(component) for component in _strongly_connected(graph) if len(component) > 1]
    assert cycles == [], "break the cycle: move what both need below both"


def _strongly_connected(graph: dict[str, dict[str, set[str]]]) -> list[set[str]]:
    """Tarjan's algorithm over the unit graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        on_stack.add(unit)
        for target in graph.get(unit, {}):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in on_stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == unit:
                    break
            components.append(component)

    for unit in sorted(set(graph) | {t for targets in graph.values() for t in targets}):
        if unit not in index:
            visit(unit)
    return components
