"""The layers of ``docs/ARCHITECTURE.md`` hold: every import in ``src/mtlab`` — at module level or
inside a function — goes to a package of the same or a lower layer, the packages import each
other without cycles, and the architecture's layer table names every package at its layer."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mtlab"

#: package → layer (each imports only from its own layer or below)
LAYERS = {
    "mtlab": 0,  # the package root: __version__ only
    "mtlab._seeding": 0,
    "mtlab.tasks": 0,
    "mtlab.models": 0,
    "mtlab.theory": 1,
    "mtlab.measure": 1,
    "mtlab.grad": 1,
    "mtlab.grouping": 2,
    "mtlab.train": 2,
    "mtlab.loop": 2,
    "mtlab.report": 2,
    "mtlab.runs": 3,
    "mtlab.studies": 4,
    "mtlab.advise": 4,
    "mtlab.cli": 5,
    "mtlab.__main__": 5,
}


def package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imports() -> dict[str, set[tuple[str, str]]]:
    """Per source module: (imported mtlab module, 'file:line')."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(f.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = module.split(".")[: -node.level + (f.name == "__init__.py")]
                names = [".".join([*base, *([node.module] if node.module else [])])]
            for name in names:
                if name == "mtlab" or name.startswith("mtlab."):
                    out[module].add((name, f"{f.relative_to(ROOT)}:{node.lineno}"))
    return out


def test_every_package_has_a_layer():
    found = {package(m) for m in imports()} | {
        package(".".join(f.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"))
        for f in SRC.rglob("*.py")
    }
    assert found <= set(LAYERS), f"give these packages a layer: {sorted(found - set(LAYERS))}"


def test_no_import_goes_up_a_layer():
    bad = []
    for module, targets in imports().items():
        for target, where in targets:
            a, b = package(module), package(target)
            if LAYERS[b] > LAYERS[a]:
                bad.append(f"{where}: {a} (layer {LAYERS[a]}) imports {target} "
                           f"(layer {LAYERS[b]})")  # fmt: skip
    assert not bad, "\n".join(bad)


def test_packages_import_each_other_without_cycles():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports().items():
        for target, _ in targets:
            if package(target) != package(module):
                graph[package(module)].add(package(target))
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in list(graph):
        if node not in state:
            visit(node, [])


def test_the_architecture_table_names_every_package_at_its_layer():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    documented: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d)\s*\|\s*([^|]+)\|", line)
        if m:
            for name in re.findall(r"`(mtlab[\w.]*)`", m.group(2)):
                documented[name] = int(m.group(1))
    assert documented == LAYERS
