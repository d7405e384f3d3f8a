"""The shape of the code (docs/architecture.md): no import cycles, command modules that do not import each
other, and imports that never point up the layer order, as docs/architecture.md lists the layers.

Every ``import`` statement of every module under ``musictl/`` counts, wherever it is (top level, inside a
function, under ``if TYPE_CHECKING``): a lazy import is still a dependency. The modules are read with
``ast``, never imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "musictl"
DOC = PACKAGE.parent / "docs" / "architecture.md"


def documented_layers() -> tuple[tuple[str, ...], ...]:
    """The layers, top to bottom, as docs/architecture.md lists them ("Layers, top to bottom (...): `cli`,
    `__main__`; `commands`; ... ."): layers separated by ``;``, each module or package in backticks
    (``__init__`` is the package ``musictl`` itself)."""
    found = re.search(r"Layers, top to bottom \([^)]*\):(.*?)\.(?:\s|$)", DOC.read_text(), re.S)
    assert found, "docs/architecture.md lost its sentence 'Layers, top to bottom (...): `cli`, ...; ... .'"
    layers = tuple(tuple("musictl" if name == "__init__" else f"musictl.{name}" for name in re.findall(r"`(\w+)`", layer))
                   for layer in found.group(1).split(";"))
    assert all(layers) and len(layers) >= 3, f"docs/architecture.md's layer list reads oddly: {layers}"
    return layers


# Top to bottom; a module may import any module of its own layer or a lower one, never a higher one.
LAYERS = documented_layers()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The musictl module ``name`` is, or lies in (``musictl.x.y.Name`` -> ``musictl.x.y``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """The musictl modules ``module`` imports."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    is_package = MODULES[module].name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".rstrip(".")
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in ``base``
        else:
            continue
        for name in names:
            if name == "musictl" or name.startswith("musictl."):
                target = _resolve(name)
                if target is not None and target != module:
                    found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "musictl") or module in prefixes:
            return index
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for component in components:  # a shortest path back to the start, inside the component
        members, start = set(component), component[0]
        paths, seen = {start: [start]}, {start}
        queue = [start]
        while queue:
            v = queue.pop(0)
            for w in sorted(graph[v] & members):
                if w == start:
                    found.append([*paths[v], start])
                    queue = []
                    break
                if w not in seen:
                    seen.add(w)
                    paths[w] = [*paths[v], w]
                    queue.append(w)
    return found


def test_the_walker_sees_lazy_imports():
    assert "musictl.commands._common" in GRAPH["musictl.commands.gcn"]
    assert "musictl.transfer.pipeline" in GRAPH["musictl.commands.gcn"]  # imported inside the command body
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_command_modules_do_not_import_each_other():
    commands = [m for m in MODULES if m.startswith("musictl.commands.")]
    bad = [f"{m} imports {t}" for m in commands if not m.rpartition(".")[2].startswith("_")
           for t in sorted(GRAPH[m]) if t in commands and not t.rpartition(".")[2].startswith("_")]
    assert not bad, "a command module may import only commands/_private helpers: " + "; ".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_never_point_up(module):
    layer = layer_of(module)
    assert layer is not None, f"{module} has no layer: add it to the layer list of docs/architecture.md"
    up = [t for t in sorted(GRAPH[module]) if layer_of(t) is not None and layer_of(t) < layer]
    assert not up, f"{module} (layer {layer}) imports a higher layer: {up}"
