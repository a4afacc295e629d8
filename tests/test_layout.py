"""The layout: saferl's imports point one way (no cycle among its modules, counting imports made inside functions
and under ``TYPE_CHECKING``), and every package says in its first docstring what lives there."""

import ast
import importlib
from pathlib import Path

import saferl

ROOT = Path(saferl.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in ROOT.rglob("*.py")}


def imported(name: str, path: Path) -> set[str]:
    """The saferl modules ``name`` imports anywhere in its file (a ``from M import X`` counts as M.X when that is
    a module, else as M)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def cycle_from(start: str) -> list[str] | None:
    """A path of imports from ``start`` back to it, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for target in GRAPH[node]:
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_import_cycle_among_saferls_modules():
    cycles = [cycle for name in sorted(GRAPH) if (cycle := cycle_from(name))]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles[:5])


def test_the_graph_is_read_right():
    """The checker itself: it sees a function-level import, and a cycle planted in a copy of the graph."""
    assert "saferl.env.shared_vec_env" in GRAPH["saferl.env.factory"]  # imported inside make_raw_vec_env
    GRAPH["saferl.games"].add("saferl.cli")
    try:
        assert cycle_from("saferl.games") is not None
    finally:
        GRAPH["saferl.games"].discard("saferl.cli")


def test_lower_layers_do_not_reach_up():
    layers = ["saferl.games", "saferl.env", "saferl.labels", "saferl.oversight", "saferl.blocker", "saferl.human_ui",
              "saferl.registry", "saferl.agents", "saferl.experiment", "saferl.attack", "saferl.cli"]

    def layer(name: str) -> int | None:
        return next((k for k, top in enumerate(layers) if name == top or name.startswith(top + ".")), None)

    upward = [(name, target) for name, targets in GRAPH.items() for target in targets
              if layer(name) is not None and layer(target) is not None and layer(target) > layer(name)]
    assert not upward, upward


def test_every_package_says_what_lives_there():
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and len(doc) > 40, f"{name} has no docstring saying what lives there"
            importlib.import_module(name)
