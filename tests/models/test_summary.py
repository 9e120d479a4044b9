"""`danlu summary` and danlu.models._summary.summarize: layers, output shapes, parameters, memory,
checked against the model's own parameters and against running its layers by hand."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from danlu.cli import main
from danlu.models import build_model, register_model, unregister_model
from danlu.models._summary import summarize
from danlu.recipe import Recipe
from danlu.training import prepare_run_data

ROOT = Path(__file__).resolve().parents[2]


def _unique_params(model):
    return list({id(p): p for p in model.parameters()}.values())


def _check_totals(model, summary):
    params = _unique_params(model)
    assert summary.total_params == sum(p.numel() for p in params)
    assert summary.trainable_params == sum(p.numel() for p in params if p.requires_grad)
    assert summary.frozen_params == sum(p.numel() for p in params if not p.requires_grad)
    assert summary.param_bytes == sum(p.numel() * p.element_size() for p in params)
    assert summary.buffer_bytes == sum(b.numel() * b.element_size() for b in model.buffers())
    # the rows account for every parameter exactly once
    assert sum(layer.params for layer in summary.layers) == summary.total_params
    assert sum(layer.trainable for layer in summary.layers) == summary.trainable_params


@pytest.fixture(scope="module")
def digits_info():
    return prepare_run_data(Recipe.from_yaml(ROOT / "recipes" / "digits_cnn.yaml")).info


def test_totals_with_lora_adapters_and_a_frozen_layer():
    from danlu.transfer import add_lora

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    add_lora(model, rank=2, verbose=False)   # every linear layer but the head: frozen base + adapters
    summary = summarize(model, (6,), batch=5)
    _check_totals(model, summary)
    assert 0 < summary.trainable_params < summary.total_params
    # the LoRA wrapper holds its own adapter parameters beside its base layer: both are rows
    types = [layer.type for layer in summary.layers]
    assert "LoRALinear" in types and "Linear" in types
    assert summary.layers[-1].output_shape == [5, 3]

    frozen = nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 2))
    frozen[0].requires_grad_(False)
    summary = summarize(frozen, (4,))
    _check_totals(frozen, summary)
    assert summary.frozen_params == 4 * 10 + 10
    assert [(row.params, row.trainable) for row in summary.layers] == [(50, 0), (0, 0), (22, 22)]


def test_shared_layer_counts_once_and_unused_layer_is_listed():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Linear(5, 5)
            self.unused = nn.Linear(5, 7)

        def forward(self, x):
            return self.block(torch.relu(self.block(x)))

    model = Tied()
    summary = summarize(model, (5,), batch=3)
    _check_totals(model, summary)
    assert [(row.name, row.output_shape, row.params) for row in summary.layers] == [
        ("block", [3, 5], 30), ("block", [3, 5], 0), ("unused", None, 42)]
    assert "(not called)" in summary.table()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_output_shapes_equal_running_the_layers_by_hand(kind, digits_info):
    torch.manual_seed(0)
    input_shape = (64,) if kind == "mlp" else digits_info.input_shape
    info = type(digits_info)(**{**vars(digits_info), "input_shape": tuple(input_shape)})
    cfg = {"kind": kind, "hidden": [32, 16]} if kind == "mlp" else {"kind": kind, "channels": [4, 8]}
    model = build_model(cfg, info, 10).eval()
    batch = 7
    summary = summarize(model, input_shape, batch=batch)
    _check_totals(model, summary)

    # by hand: the input stage (MLP), then every leaf layer in turn
    h = torch.zeros(batch, *input_shape)
    by_hand = []
    with torch.no_grad():
        if kind == "mlp":
            h = model.input(h)
        for name, module in model.named_modules():
            if name.startswith("input") or list(module.children()):
                continue
            h = module(h)
            by_hand.append((name, list(h.shape), h.numel() * h.element_size()))
    assert [(row.name, row.output_shape, row.output_bytes) for row in summary.layers] == by_hand
    assert by_hand[-1][1] == [batch, 10]
    assert summary.activation_bytes == sum(size for _, _, size in by_hand)
    assert summary.input_bytes == batch * int(torch.tensor(input_shape).prod()) * 4
    table = summary.table()
    assert f"total params: {summary.total_params:,} (trainable {summary.total_params:,}, frozen 0)" in table


def _torch_kinds():
    from danlu import _plugins
    from danlu.classical import CLASSICAL_KINDS
    from danlu.models import MODELS

    _plugins.load_builtin()   # every shipped kind registers itself (generative, transfer, ...)
    return sorted(k for k in MODELS if k not in CLASSICAL_KINDS and k != "python")


@pytest.mark.parametrize("kind", _torch_kinds())
def test_every_torch_kind_is_summarized(kind):
    import types

    # data each kind is meant for (as in test_models_builtin); plugins get rows with a category
    shape, categorical = {"cnn": ((1, 8, 8), []), "vae": ((1, 8, 8), []), "autoencoder": ((1, 8, 8), []),
                          "diffusion": ((1, 8, 8), []), "rnn": ((12, 3), [])}.get(kind, ((7,), [(1, 4)]))
    info = types.SimpleNamespace(task="classification", kind="tabular", input_shape=shape, n_classes=3,
                                 classes=[0, 1, 2], feature_names=[], categorical=categorical, n_targets=1)
    torch.manual_seed(0)
    model = build_model({"kind": kind}, info, 3)
    summary = summarize(model, shape, batch=2)
    _check_totals(model, summary)
    called = [layer for layer in summary.layers if layer.output_shape is not None]
    assert called and all(layer.output_bytes > 0 for layer in called if 0 not in layer.output_shape)
    assert summary.activation_bytes == sum(layer.output_bytes for layer in called)
    assert json.loads(json.dumps(summary.to_json()))["total_params"] == summary.total_params


def test_mode_is_restored_and_nothing_is_learned():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, (3,), batch=2)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # batch norm statistics untouched
    assert all(p.grad is None for p in model.parameters())


def _run_main(capsys, *args):
    code = main(["summary", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_on_a_recipe_with_a_registered_kind_and_a_frozen_layer(tmp_path, capsys):
    def build(cfg, info, out_dim):
        net = nn.Sequential(nn.Linear(info.input_shape[0], 12), nn.ReLU(), nn.Linear(12, out_dim))
        net[0].requires_grad_(False)
        return net

    register_model("summary_toy", build)
    try:
        recipe = tmp_path / "toy.yaml"
        recipe.write_text("data: {source: sklearn, name: iris}\nmodel: {kind: summary_toy}\n")
        code, out, err = _run_main(capsys, recipe, "--batch", "4")
        assert code == 0, err
        # iris: 4 features, 3 classes; the first layer (4*12 + 12) frozen, the head (12*3 + 3) trained
        assert "total params: 99 (trainable 39, frozen 60)" in out
        assert "[4, 3]" in out
        code, out, err = _run_main(capsys, recipe, "--json")
        got = json.loads(out)
        assert (got["total_params"], got["trainable_params"], got["frozen_params"]) == (99, 39, 60)
        assert got["memory_bytes"]["parameters"] == 99 * 4
        assert [layer["output_shape"] for layer in got["layers"]] == [[1, 12], [1, 12], [1, 3]]
    finally:
        unregister_model("summary_toy")


def test_cli_on_a_finished_run_in_a_new_process(tmp_path):
    import danlu

    recipe = {"name": "iris_mlp", "data": {"source": "sklearn", "name": "iris"},
              "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 1},
              "output": {"progress": "none"}}
    run = danlu.train(recipe, tmp_path / "run")
    model = danlu.training.load_model(run.path)[0]
    total = sum(p.numel() for p in model.parameters())
    assert total == 4 * 8 + 8 + 8 * 3 + 3
    res = subprocess.run([sys.executable, "-m", "danlu", "summary", str(run.path), "--batch", "16"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"total params: {total:,} (trainable {total:,}, frozen 0)" in res.stdout
    assert "body.0  Linear  [16, 8]" in res.stdout
    # the input is 16 rows of 4 float32 features
    assert "input (batch 16): 256 B" in res.stdout


def test_classical_recipe_and_run_refuse_in_one_line(tmp_path, capsys):
    code, out, err = _run_main(capsys, ROOT / "recipes" / "digits_kmeans.yaml")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"danlu: error: {ROOT / 'recipes' / 'digits_kmeans.yaml'}: model kind "
                                        f"'kmeans' is a scikit-learn estimator, which has no layers to summarize; "
                                        f"its settings are the recipe's model section (`danlu keys` lists them)"]
    import danlu

    run = danlu.train({"name": "iris_tree", "data": {"source": "sklearn", "name": "iris"},
                       "model": {"kind": "decision_tree"}, "output": {"progress": "none"}}, tmp_path / "tree")
    capsys.readouterr()
    code, out, err = _run_main(capsys, run.path)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"danlu: error: {run.path}: model kind 'decision_tree' is a scikit-learn "
                                        f"estimator, which has no layers to summarize; its settings are the model "
                                        f"section of {run.path / 'recipe.yaml'} (`danlu keys` lists them)"]


def test_agent_recipe_and_run_refuse_in_one_line(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    import danlu

    code, out, err = _run_main(capsys, ROOT / "recipes" / "cartpole_ppo.yaml")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "an agent's run (CartPole-v1) holds a policy" in err
    run = danlu.train({"seed": 0, "env": {"name": "CartPole-v1", "num_envs": 2, "eval_episodes": 1},
                       "model": {"kind": "mlp", "hidden": [8]}, "output": {"progress": "none"},
                       "rl": {"steps": 64, "rollout": 16, "epochs": 1, "minibatches": 1, "checkpoint_every": 0}},
                      tmp_path / "agent")
    capsys.readouterr()
    code, out, err = _run_main(capsys, run.path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"danlu: error: {run.path}: an agent's run (CartPole-v1) holds a policy")


def test_bad_path_and_batch_exit_2(tmp_path, capsys):
    code, _, err = _run_main(capsys, tmp_path / "missing")
    assert code == 2 and "no such run directory or recipe file" in err
    code, _, err = _run_main(capsys, ROOT / "recipes" / "digits_mlp.yaml", "--batch", "0")
    assert code == 2 and "--batch must be >= 1, got 0" in err


def test_summary_help_does_not_import_torch():
    code = ("import sys, contextlib, io\n"
            "from danlu.cli import main\n"
            "buf = io.StringIO()\n"
            "for argv in (['--help'], ['summary', '--help']):\n"
            "    with contextlib.redirect_stdout(buf):\n"
            "        try: main(argv)\n"
            "        except SystemExit: pass\n"
            "print('torch' in sys.modules, 'summary' in buf.getvalue())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False True"
