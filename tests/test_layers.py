"""The layers of danlu, enforced on every run of the suite.

Every import counts, inside functions too (a function-level import is still a dependency; it only
happens later). Lower layers never import higher ones, so the core — recipe schema, registries,
data, metrics, training — imports no capability; capabilities join through registries that
danlu._plugins fills. No two sub-packages may import each other, directly or around a cycle.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import danlu

ROOT = Path(danlu.__file__).parent

#: lowest first; a unit may import units of its own layer or below, never above
LAYERS = [
    ("foundation", {"danlu.errors", "danlu._lazy", "danlu._jsonl", "danlu._yaml", "danlu._integrity", "danlu._validate",
                    "danlu._rundir"}),
    ("schema", {"danlu.recipe", "danlu._plugins", "danlu._extras"}),
    ("models", {"danlu.models"}),
    ("data and metrics", {"danlu.data", "danlu.evaluation"}),
    ("training", {"danlu.training", "danlu._index"}),
    ("capabilities", {"danlu.classical", "danlu.generative", "danlu.transfer", "danlu.compress", "danlu.distill",
                      "danlu.combine", "danlu.tune", "danlu.rl", "danlu.diagnose", "danlu.report", "danlu.serve",
                      "danlu.distributed", "danlu.unsupervised", "danlu.glossary", "danlu.sklearn",
                      "danlu.experiments"}),
    ("commands", {"danlu.commands", "danlu.cli", "danlu.__main__", "danlu.checks", "danlu"}),
]
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else module


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> where, for every import in danlu (function level too)."""
    if ROOT in _SEEN:
        return _SEEN[ROOT]
    _SEEN[ROOT] = edges = _scan()
    return edges


_SEEN: dict = {}


def _scan() -> dict[tuple[str, str], list[str]]:
    mods = _modules()
    edges: dict[tuple[str, str], list[str]] = {}
    for name, path in mods.items():
        base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    src = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = {src} | {f"{src}.{a.name}" for a in node.names}
            else:
                continue
            for target in targets:
                if target != "danlu" and not target.startswith("danlu."):
                    continue
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target == "danlu" and name != "danlu":
                    continue   # `from danlu import x` is caught by its submodule target
                if target in mods and _unit(target) != _unit(name):
                    edges.setdefault((_unit(name), _unit(target)), []).append(f"{name}:{node.lineno}")
    return edges


def test_every_sub_package_has_a_layer():
    units = {_unit(m) for m in _modules()}
    assert units - set(LAYER_OF) == set(), "place new sub-packages in LAYERS"


def test_no_unit_imports_a_higher_layer():
    upward = [f"{a} ({LAYERS[LAYER_OF[a]][0]}) imports {b} ({LAYERS[LAYER_OF[b]][0]}) at {', '.join(where[:3])}"
              for (a, b), where in sorted(_edges().items()) if LAYER_OF[b] > LAYER_OF[a]]
    assert upward == []


def test_no_import_cycle_between_sub_packages():
    graph: dict[str, set[str]] = {}
    for a, b in _edges():
        graph.setdefault(a, set()).add(b)
    # Tarjan's strongly connected components
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    assert [c for c in comps if len(c) > 1] == []


def test_the_hub_is_gone():
    """The verbs live with their layer (danlu.training and the capabilities' run kinds)."""
    assert not (ROOT / "_run.py").exists()


@pytest.mark.parametrize("module", ["danlu.recipe", "danlu.training", "danlu._plugins"])
def test_core_modules_name_no_capability_in_their_imports(module):
    capabilities = LAYERS[LAYER_OF["danlu.classical"]][1]
    edges = _edges()
    unit = _unit(module)
    assert [b for (a, b) in edges if a == unit and b in capabilities] == []


def test_the_checker_sees_function_level_imports(tmp_path, monkeypatch):
    """The check itself: an import inside a function is an edge (so it cannot hide a cycle)."""
    pkg = tmp_path / "danlu"
    (pkg / "training").mkdir(parents=True)
    (pkg / "classical").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "training" / "__init__.py").write_text("def f():\n    from ..classical import x\n")
    (pkg / "classical" / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    assert ("danlu.training", "danlu.classical") in _edges()
