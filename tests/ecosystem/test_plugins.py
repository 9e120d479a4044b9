"""Plugins: the one way code joins danlu. A recipe's plugins: list, the danlu.plugins entry-point
group, and the modules that registered a run's model or loss from Python — all found again by any
later command in a new process."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

import danlu
from danlu import _plugins
from danlu.errors import RecipeError
from danlu.recipe import Recipe

IRIS = {"data": {"source": "sklearn", "name": "iris"}, "train": {"epochs": 2}, "output": {"progress": "none"}}

MODULE = textwrap.dedent("""\
    import torch
    import danlu
    from danlu.recipe import Field

    @danlu.register_model("{kind}", params={{"width": Field(int, 8, min=1)}})
    def build(cfg, info, out_dim):
        return torch.nn.Sequential(torch.nn.Linear(info.input_shape[0], cfg["width"]), torch.nn.ReLU(),
                                   torch.nn.Linear(cfg["width"], out_dim))
    """)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "danlu", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _unregister(kind):
    from danlu.models import MODELS, unregister_model

    if kind in MODELS:
        unregister_model(kind)


def test_a_model_registered_from_python_is_found_again_by_the_cli(tmp_path, monkeypatch):
    """The reported case: register_model from Python, train from Python, `danlu eval` in a new
    process. The run's recipe names the registering module under plugins:, so eval rebuilds it."""
    (tmp_path / "shop_models.py").write_text(MODULE.format(kind="shop_net"))
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop_models  # noqa: F401  (registers shop_net)

    try:
        run = danlu.train({**IRIS, "model": {"kind": "shop_net", "width": 4}}, tmp_path / "run")
        saved = Recipe.from_yaml(run.path / "recipe.yaml")
        assert saved.plugins == ["shop_models"]
        res = _cli("eval", run.path, "--json", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["test"]["accuracy"] == pytest.approx(run.summary["test"]["accuracy"])
        res = _cli("resume", run.path, cwd=tmp_path)   # finished: left as it is
        assert res.returncode == 0, res.stderr
    finally:
        _unregister("shop_net")


def test_a_model_registered_in_main_is_refused_later_in_one_line(tmp_path):
    script = tmp_path / "train_it.py"
    script.write_text(MODULE.format(kind="main_net") + textwrap.dedent(f"""
        danlu.train({{**{IRIS!r}, "model": {{"kind": "main_net"}}}}, {str(tmp_path / 'run')!r})
        """))
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    res = _cli("eval", tmp_path / "run", cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1
    assert "main_net" in lines[0] and "plugins:" in lines[0] and "register_model" in lines[0]


def test_plugins_must_be_module_names(tmp_path):
    for bad, where in (("my_models", "plugins must be a list"), ([3], "plugins[0]"), (["../evil"], "plugins[0]"),
                       (["no_such_module_xyz"], "cannot import module 'no_such_module_xyz'")):
        with pytest.raises(RecipeError, match=where.replace("[", r"\[").replace("]", r"\]")) as err:
            Recipe.from_dict({**IRIS, "plugins": bad})
        assert "\n" not in str(err.value)


def test_a_plugin_that_fails_to_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise ValueError('half-written')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match=r"importing module 'broken_plugin' failed \(ValueError: half-written\)"):
        Recipe.from_dict({**IRIS, "plugins": ["broken_plugin"]})


def test_a_plugin_beside_the_recipe_is_found(tmp_path, monkeypatch):
    (tmp_path / "beside_models.py").write_text(MODULE.format(kind="beside_net"))
    (tmp_path / "r.yaml").write_text("plugins: [beside_models]\ndata: {source: sklearn, name: iris}\n"
                                     "model: {kind: beside_net, width: 3}\n")
    monkeypatch.chdir(tmp_path.parent)   # not the recipe's folder
    try:
        recipe = Recipe.from_yaml(tmp_path / "r.yaml")
        assert recipe.model == {"kind": "beside_net", "width": 3}
    finally:
        _unregister("beside_net")


def test_entry_point_plugins_are_loaded_with_the_builtin_ones(tmp_path, monkeypatch):
    """A package declares [project.entry-points."danlu.plugins"]; danlu imports it before a recipe is
    checked, like the capabilities it ships with."""
    (tmp_path / "pkg_models.py").write_text(MODULE.format(kind="pkg_net"))
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint(name="pkg", value="pkg_models", group=_plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(_plugins, "_entry_points", lambda: [point])
    monkeypatch.setattr(_plugins, "_builtin_done", False)
    try:
        recipe = Recipe.from_dict({**IRIS, "model": {"kind": "pkg_net"}})
        assert recipe.model.kind == "pkg_net" and "pkg_models" in _plugins.loaded()
    finally:
        _unregister("pkg_net")


def test_every_builtin_capability_is_a_plugin():
    """The core names no capability in its imports (tests/test_layers.py); they join through the
    same loader as a user's module, and each registers something."""
    from danlu.training import run_kinds
    from danlu.training._extend import CALLBACK_FACTORIES

    _plugins.load_builtin()
    assert set(_plugins.BUILTIN) <= set(_plugins.loaded())
    assert {"agent", "classical", "ensemble", "finetune", "neural", "python"} <= set(run_kinds())
    assert {"monitors", "quant", "lora"} <= set(CALLBACK_FACTORIES)
    assert {"monitors", "quant", "lora", "base", "env", "rl"} <= set(danlu.recipe.schema().fields)
