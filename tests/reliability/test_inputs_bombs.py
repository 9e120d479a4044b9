"""Resource bombs are refused before they cost anything: YAML alias bombs, recursive aliases, deep
nesting, huge documents, duplicate keys (at any depth), and models whose parameters cannot fit in
memory (counted on the meta device, never allocated)."""
import pytest

from danlu.errors import RecipeError
from danlu.recipe import Recipe, parse_value


def _laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["lol0: &lol0 [" + ", ".join(["lol"] * width) + "]"]
    for k in range(1, levels + 1):
        lines.append(f"lol{k}: &lol{k} [" + ", ".join([f"*lol{k - 1}"] * width) + "]")
    return "data: {source: sklearn, name: iris}\n" + "\n".join(lines) + "\n"


def _refusal(tmp_path, text: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        Recipe.from_yaml(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("levels, width", [(9, 9), (30, 2), (5, 100)])
def test_billion_laughs_is_refused_while_composing(tmp_path, levels, width):
    message = _refusal(tmp_path, _laughs(levels, width))
    assert "aliases" in message and "line " in message


def test_alias_bomb_in_a_set_value():
    bomb = "[&a [x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a], &c [*b, *b, *b, *b, *b, *b, *b, *b], " \
           "&d [*c, *c, *c, *c, *c, *c, *c, *c], &e [*d, *d, *d, *d, *d, *d, *d, *d], [*e, *e, *e, *e, *e, *e, *e, *e]]"
    with pytest.raises(RecipeError, match="--set value .*aliases"):
        parse_value(bomb)
    with pytest.raises(RecipeError, match="aliases"):
        Recipe.from_dict({"data": {"name": "iris"}}).with_overrides([f"model.hidden={bomb}"])


def test_small_honest_aliases_still_work(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: iris}\nsizes: &sizes [16, 8]\n", encoding="utf-8")
    # an unknown top-level key is refused as usual; the alias itself is fine
    with pytest.raises(RecipeError, match="unknown key sizes"):
        Recipe.from_yaml(path)
    path.write_text("data: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: &h [16, 8]}\n"
                    "base: &b {mode: probe}\nlora: {target_modules: [body.0]}\n", encoding="utf-8")
    assert Recipe.from_yaml(path).model.hidden == [16, 8]
    path.write_text("data: &d {source: sklearn, name: iris}\noptimizer: &o {kind: sgd, lr: 0.1}\n"
                    "schedule: {<<: {kind: step}, step_size: 2}\n", encoding="utf-8")
    r = Recipe.from_yaml(path)
    assert r.optimizer.kind == "sgd" and r.schedule.kind == "step" and r.schedule.step_size == 2


def test_recursive_alias_is_refused(tmp_path):
    assert "recursive alias" in _refusal(tmp_path, "data: {source: sklearn, name: iris}\nmodel: &m {hidden: *m}\n")
    assert "recursive alias" in _refusal(tmp_path, "data: {source: sklearn, name: iris}\nx: &l [1, *l]\n")


@pytest.mark.parametrize("text", [
    "[" * 5000 + "]" * 5000,
    "{a: " * 200 + "1" + "}" * 200,
    "".join("  " * i + f"k{i}:\n" for i in range(120)) + "  " * 120 + "v\n",
])
def test_deep_nesting_is_refused(tmp_path, text):
    assert "nested" in _refusal(tmp_path, text)


def test_huge_documents_are_refused(tmp_path):
    text = "data: {source: sklearn, name: iris}\nname: '" + "x" * (2 << 20) + "'\n"
    assert "too large" in _refusal(tmp_path, text)


@pytest.mark.parametrize("text, key, lines", [
    ("data: {source: sklearn, name: iris}\nseed: 1\nseed: 2\n", "seed", "lines 2 and 3"),
    ("data: {source: sklearn, name: iris}\noptimizer:\n  lr: 0.1\n  kind: sgd\n  lr: 0.2\n", "lr", "lines 3 and 5"),
    ("data:\n  source: sklearn\n  name: iris\n  split:\n    test: 0.1\n    test: 0.2\n", "test", "lines 5 and 6"),
    ("data: {source: sklearn, name: iris, name: wine}\n", "name", "lines 1 and 1"),
    ("data: {source: sklearn, name: iris}\nmodel: {kind: mlp}\nmodel: {kind: cnn}\n", "model", "lines 2 and 3"),
    ("data: {source: sklearn, name: iris}\nlora: {target_modules: [{a: 1, a: 2}]}\n", "a", "lines 2 and 2"),
])
def test_duplicate_keys_name_the_key_and_lines(tmp_path, text, key, lines):
    message = _refusal(tmp_path, text)
    assert f"key '{key}' appears twice" in message and lines in message


def test_duplicate_keys_in_set_values():
    with pytest.raises(RecipeError, match="key 'lr' appears twice"):
        Recipe.from_dict({"data": {"name": "iris"}}).with_overrides(["optimizer={lr: 0.1, lr: 0.2}"])


def test_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: iris}\nbase: &b {kind: sgd, lr: 0.1}\n", encoding="utf-8")
    from danlu._yaml import loads

    assert loads("a: &a {x: 1, y: 2}\nb: {<<: *a, x: 3}\n") == {"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}}


# --- models that cannot fit ---------------------------------------------------------------------------

def _info(shape=(4,)):
    from danlu.data._info import DataInfo

    return DataInfo("classification", "tabular" if len(shape) == 1 else "image", shape, 3, [0, 1, 2],
                    ["f"] * (shape[0] if len(shape) == 1 else 1))


@pytest.mark.parametrize("cfg, key", [
    ({"kind": "mlp", "hidden": [100_000_000]}, "model.hidden"),
    ({"kind": "mlp", "hidden": [64, 3_000_000_000]}, "model.hidden"),
    ({"kind": "cnn", "channels": [8, 100_000_000]}, "model.channels"),
    ({"kind": "rnn", "hidden_size": 10_000_000}, "model.hidden_size"),
])
def test_too_large_models_are_refused_before_allocating(monkeypatch, cfg, key):
    import torch

    from danlu.models import _budget, build_model
    from danlu.models._registry import MODELS, ModelEntry, _ENTRIES

    monkeypatch.setattr(_budget, "available_memory", lambda: 8 * 10**9)   # the same answer on any machine
    devices = []
    entry = MODELS[cfg["kind"]]

    def watched(model_cfg, info, out_dim):   # where would this build allocate its tensors?
        devices.append(torch.empty(0).device.type)
        return entry.builder(model_cfg, info, out_dim)

    monkeypatch.setitem(_ENTRIES, cfg["kind"], ModelEntry(entry.name, watched, entry.params))
    shape = {"cnn": (1, 8, 8), "rnn": (20, 1)}.get(cfg["kind"], (4,))
    with pytest.raises(RecipeError) as err:
        build_model(cfg, _info(shape), 3, source="r.yaml")
    message = str(err.value)
    assert message.startswith("r.yaml: ") and key in message and "parameters" in message and "GB" in message
    assert devices == ["meta"]   # counted on the meta device only; the real build never ran


def test_refused_on_any_machine_when_it_cannot_fit_at_all():
    from danlu.models import build_model

    with pytest.raises(RecipeError, match="lower model.hidden"):
        build_model({"kind": "mlp", "hidden": [10**12]}, _info(), 3)


def test_models_that_fit_are_built_and_counted(monkeypatch):
    from danlu.models import _budget, build_model

    monkeypatch.setattr(_budget, "available_memory", lambda: 8 * 10**9)
    model = build_model({"kind": "mlp", "hidden": [16, 8]}, _info(), 3)
    expected = (4 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == expected
    expected += sum(b.numel() for b in model.buffers())   # buffers take memory too
    from danlu.models._budget import parameter_count
    from danlu.models._registry import MODELS, complete_model_cfg

    cfg = complete_model_cfg({"kind": "mlp", "hidden": [16, 8]})
    assert parameter_count(MODELS["mlp"].builder, cfg, _info(), 3) == expected


def test_train_refuses_a_huge_model_in_one_line(tmp_path, capsys, monkeypatch):
    from danlu.cli import main
    from danlu.models import _budget

    monkeypatch.setattr(_budget, "available_memory", lambda: 4 * 10**9)
    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: [100000000]}\n", encoding="utf-8")
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.hidden" in err and str(path) in err
    assert not (tmp_path / "run").exists()


def test_generated_data_too_large_is_refused_before_numpy_allocates(monkeypatch):
    from danlu.data import prepare
    from danlu.models import _budget

    monkeypatch.setattr(_budget, "available_memory", lambda: 10**9)
    with pytest.raises(RecipeError, match="lower data.samples or data.length"):
        prepare({"source": "sequence", "name": "sum", "samples": 10**8, "length": 50}, seed=0)
    assert len(prepare({"source": "sequence", "name": "sum", "samples": 50, "length": 4}, seed=0).splits["train"][0])


def test_a_memory_error_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from danlu import training as runs
    from danlu.cli import main

    def boom(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(runs, "train", boom)
    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: iris}\n", encoding="utf-8")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlu: error: out of memory") and "\n" not in err
