"""Optional packages: every import is declared, every extra has a version range, and a recipe whose
extra is missing stops before anything is written, with one line naming the extra."""
import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from danlu import cli
from danlu._extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?(.*)$")


def _name(requirement: str) -> str:
    return REQUIREMENT.match(requirement).group(1).lower().replace("_", "-")


def _declared() -> set[str]:
    names = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra, reqs in PYPROJECT["optional-dependencies"].items():
        names |= {_name(r) for r in reqs}
    return names


def _imported_top_level() -> set[str]:
    found = set()
    for path in (ROOT / "danlu").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"danlu"}


def test_every_imported_package_is_declared():
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = {}
    for module in _imported_top_level():
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not dists & declared:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_requirement_has_a_lower_and_an_upper_bound():
    reqs = list(PYPROJECT["dependencies"])
    for extra, items in PYPROJECT["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("danlu[")]
    loose = [r for r in reqs if ">=" not in r or "<" not in r.replace("<=", "")]
    assert not loose


def test_all_extra_names_every_feature_extra():
    extras = PYPROJECT["optional-dependencies"]
    (everything,) = extras["all"]
    named = set(re.match(r"danlu\[(.*)\]", everything).group(1).split(","))
    assert named == set(extras) - {"all", "test"}


def test_the_table_names_real_extras_whose_packages_provide_the_probes():
    distributions = importlib.metadata.packages_distributions()
    extras = PYPROJECT["optional-dependencies"]
    for entry in EXTRAS:
        listed = {_name(r) for r in extras[entry.extra]}
        for module in entry.probes:
            dists = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
            assert dists & listed, (entry.extra, module, dists)
        # the test extra installs them, so CI runs what they enable
        assert listed <= {_name(r) for r in extras["test"]}, entry.extra


@pytest.mark.parametrize("recipe, module, extra", [
    ("digits_kmeans.yaml", "skops", "classical"),
    ("digits_mlp.yaml --set output.loggers=[tensorboard]", "tensorboard", "tensorboard"),
    ("digits_mlp.yaml --set output.loggers=[mlflow]", "mlflow", "mlflow"),
    ("cartpole_ppo.yaml", "gymnasium", "rl"),
])
def test_a_missing_extra_stops_the_run_before_anything_is_written(recipe, module, extra, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setitem(sys.modules, module, None)   # `import module` now fails, as if not installed
    path, *more = recipe.split()
    runs = tmp_path / "runs"
    code = cli.main(["train", str(ROOT / "recipes" / path), *more, "--set", f"output.runs_dir={runs}"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"pip install 'danlu[{extra}]'" in err and module in err
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("recipe", ["digits_kmeans.yaml", "cartpole_ppo.yaml"])
def test_loggers_are_refused_where_the_loop_does_not_run(recipe, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = cli.main(["train", str(ROOT / "recipes" / recipe), "--set", "output.loggers=[tensorboard]",
                     "--set", f"output.runs_dir={runs}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "output.loggers applies to runs trained by danlu's loop" in err
    assert not runs.exists() or not any(runs.iterdir())
