"""loss.class_weights: 'auto' against scikit-learn's 'balanced', the loss against torch's own weighted
losses, the minority class's recall, the errors, the unchanged default and evaluation's loss."""
import csv
import hashlib
import json
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import recall_score
from sklearn.utils.class_weight import compute_class_weight

import danlu
from danlu.errors import RecipeError
from danlu.training._factory import build_loss
from danlu.training._runs import prepare_run_data

CLS3 = types.SimpleNamespace(task="classification", n_classes=3, n_targets=1, classes=["a", "b", "c"],
                             class_counts=[60, 30, 10])
CLS2 = types.SimpleNamespace(task="classification", n_classes=2, n_targets=1, classes=["neg", "pos"],
                             class_counts=[90, 10])
REG1 = types.SimpleNamespace(task="regression", n_classes=None, n_targets=1, classes=[])


def _write_csv(path, n, shares, seed=0):
    """Rows of 4 features whose label (text, as users have it) shifts the first two features;
    ``shares`` are the class proportions, e.g. (0.9, 0.1)."""
    rng = np.random.default_rng(seed)
    names = ["neg", "pos"] if len(shares) == 2 else [f"c{i}" for i in range(len(shares))]
    y = rng.choice(len(shares), size=n, p=shares)
    X = rng.normal(size=(n, 4)) + y[:, None] * np.array([1.0, 0.8, 0.0, 0.0])
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["a", "b", "c", "d", "label"])
        for row, label in zip(X, y):
            out.writerow([f"{v:.5f}" for v in row] + [names[label]])
    return path


def _recipe(path, loss=None, epochs=10):
    return danlu.Recipe.from_dict({
        "name": "weighted", "seed": 0, "data": {"source": "csv", "path": str(path), "label": "label"},
        "model": {"kind": "logistic"}, "loss": loss or {}, "optimizer": {"lr": 0.05},
        "train": {"epochs": epochs, "batch_size": 64, "early_stopping": {"enabled": False}},
        "output": {"progress": "none"}})


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    return _write_csv(tmp_path_factory.mktemp("cw") / "binary.csv", 800, (0.9, 0.1))


# --- (1) auto is scikit-learn's "balanced", on the training split only ----------------------

def test_auto_weights_are_sklearns_balanced_weights_of_the_training_split(tmp_path):
    path = _write_csv(tmp_path / "three.csv", 500, (0.7, 0.2, 0.1))
    recipe = _recipe(path, {"class_weights": "auto"})
    prepared = prepare_run_data(recipe)
    y_train = prepared.splits["train"][1].numpy()
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y_train)
    weights = build_loss(recipe.loss, prepared.info).class_weights
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    # the training split, not the whole file: the file's own counts give other weights
    y_all = np.concatenate([prepared.splits[s][1].numpy() for s in prepared.splits])
    assert not np.allclose(weights.numpy(), compute_class_weight("balanced", classes=np.arange(3), y=y_all))
    assert prepared.info.classes == ["c0", "c1", "c2"] and weights[2] > weights[1] > weights[0]


def test_a_list_is_taken_in_the_runs_class_order():
    w = build_loss({"class_weights": [1, 2.5, 4]}, CLS3).class_weights
    assert w.tolist() == [1.0, 2.5, 4.0]


# --- (2) the loss value against torch's own weighted losses ---------------------------------

@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_weighted_cross_entropy_equals_torchs(smoothing):
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(32, 3, generator=g), torch.randint(0, 3, (32,), generator=g)
    w = torch.tensor([0.5, 2.0, 3.0])
    loss = build_loss({"kind": "cross_entropy", "class_weights": w.tolist(), "label_smoothing": smoothing}, CLS3)
    torch.testing.assert_close(loss(out, y), F.cross_entropy(out, y, weight=w, label_smoothing=smoothing))
    torch.testing.assert_close(build_loss({"class_weights": w.tolist()}, CLS3, reduction="none")(out, y),
                               F.cross_entropy(out, y, weight=w, reduction="none"))
    auto = torch.tensor([100 / (3 * 60), 100 / (3 * 30), 100 / (3 * 10)])
    torch.testing.assert_close(build_loss({"class_weights": "auto"}, CLS3)(out, y),
                               F.cross_entropy(out, y, weight=auto))


def test_weighted_bce_is_the_weighted_mean_of_torchs_bce_and_equals_two_logit_cross_entropy():
    g = torch.Generator().manual_seed(1)
    f, y = torch.randn(40, 1, generator=g), torch.randint(0, 2, (40,), generator=g)
    w = torch.tensor([0.6, 5.0])
    value = build_loss({"kind": "bce", "class_weights": w.tolist()}, CLS2)(f, y)
    per_row = F.binary_cross_entropy_with_logits(f.reshape(-1), y.float(), weight=w[y], reduction="sum")
    torch.testing.assert_close(value, per_row / w[y].sum())
    two_logits = torch.cat([torch.zeros_like(f), f], dim=1)   # softmax([0, f]) = [1 - sigmoid(f), sigmoid(f)]
    torch.testing.assert_close(value, F.cross_entropy(two_logits, y, weight=w))


def test_weighted_multiclass_hinge_equals_torchs_multi_margin_weights():
    g = torch.Generator().manual_seed(2)
    out, y = torch.randn(30, 3, generator=g), torch.randint(0, 3, (30,), generator=g)
    w = torch.tensor([1.0, 0.5, 2.0])
    value = build_loss({"kind": "hinge", "class_weights": w.tolist()}, CLS3)(out, y)
    torch.testing.assert_close(value, F.multi_margin_loss(out, y, weight=w, reduction="sum") / w[y].sum())


def test_equal_weights_leave_the_loss_as_it_was():
    g = torch.Generator().manual_seed(3)
    out, y = torch.randn(16, 3, generator=g), torch.randint(0, 3, (16,), generator=g)
    torch.testing.assert_close(build_loss({"class_weights": [2, 2, 2]}, CLS3)(out, y), F.cross_entropy(out, y))
    assert build_loss({}, CLS3).class_weights is None


# --- (3) the minority class is found more often --------------------------------------------

def test_balanced_weights_raise_the_minority_recall(imbalanced, tmp_path):
    recalls = {}
    for name, loss in [("plain", {}), ("auto", {"class_weights": "auto"}), ("bce", {"kind": "bce",
                                                                                   "class_weights": "auto"})]:
        run_dir = tmp_path / name
        danlu.train(_recipe(imbalanced, loss), run_dir)
        model, _pipeline, _meta, saved = danlu.load_model(run_dir)
        X, y = prepare_run_data(saved).splits["test"]
        with torch.no_grad():
            out = model(X)
        predicted = (out.reshape(-1) > 0).long() if out.shape[1] == 1 else out.argmax(1)
        recalls[name] = recall_score(y.numpy(), predicted.numpy(), pos_label=1)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["test"]["recall"] == pytest.approx(recalls[name])   # "pos" is the positive class
    # measured: plain 0.38, auto 0.92 (cross-entropy and bce alike; 13 minority rows in the test split)
    assert recalls["plain"] < 0.6
    assert recalls["auto"] >= recalls["plain"] + 0.3
    assert recalls["bce"] >= recalls["plain"] + 0.3


# --- (4) errors: one line, naming the key and the class count ------------------------------

def test_a_list_of_the_wrong_length_is_one_line_naming_the_key_and_the_class_count():
    with pytest.raises(RecipeError) as err:
        build_loss({"class_weights": [1, 2]}, CLS3, source="r.yaml")
    message = str(err.value)
    assert message.startswith("r.yaml: loss.class_weights has 2 weights but the data has 3 classes (a, b, c)")
    assert "\n" not in message


def test_a_wrong_length_stops_training_before_it_starts(imbalanced, tmp_path):
    with pytest.raises(RecipeError, match=r"loss\.class_weights has 3 weights but the data has 2 classes"):
        danlu.train(_recipe(imbalanced, {"class_weights": [1, 2, 3]}), tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("value, message", [
    ([1, 0], r"loss\.class_weights\[1\] must be > 0, got 0"),
    ([], r"loss\.class_weights must be at least 1 numbers > 0, got \[\]"),
    ("balanced", r"loss\.class_weights must be 'auto' or at least 1 numbers > 0; got 'balanced'"),
])
def test_the_schema_refuses_bad_values(value, message):
    with pytest.raises(RecipeError, match=message):
        danlu.Recipe.from_dict({"loss": {"class_weights": value}})


def test_regression_with_class_weights_is_one_line():
    with pytest.raises(RecipeError, match="^r.yaml: loss.class_weights applies to the built-in classification "
                                          "losses .* not loss.kind mse; remove loss.class_weights$"):
        danlu.Recipe.from_dict({"loss": {"kind": "mse", "class_weights": "auto"}}, source="r.yaml")
    with pytest.raises(RecipeError) as err:   # auto on regression data: found once the data is known
        build_loss({"class_weights": [1, 2]}, REG1, source="r.yaml")
    assert str(err.value) == ("r.yaml: loss.class_weights applies to classification, but the task is regression; "
                              "remove loss.class_weights")


def test_regression_data_with_class_weights_stops_training(tmp_path):
    recipe = danlu.Recipe.from_dict({
        "name": "reg", "data": {"source": "sklearn", "name": "diabetes"}, "model": {"kind": "linear"},
        "loss": {"class_weights": "auto"}, "train": {"epochs": 1}, "output": {"progress": "none"}})
    with pytest.raises(RecipeError, match="loss.class_weights applies to classification, but the task is "
                                          "regression"):
        danlu.train(recipe, tmp_path / "run")


def test_a_class_missing_from_the_training_split_is_named():
    info = types.SimpleNamespace(**{**vars(CLS3), "class_counts": [5, 0, 3]})
    with pytest.raises(RecipeError, match="cannot weigh class 'b': the training split has no row of it"):
        build_loss({"class_weights": "auto"}, info)


def test_the_cli_says_it_in_one_line(imbalanced, tmp_path, cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: bad\ndata: {{source: csv, path: {imbalanced}, label: label}}\n"
                      f"model: {{kind: logistic}}\nloss: {{class_weights: [1, 2, 3]}}\ntrain: {{epochs: 1}}\n")
    done = cli("train", recipe, "--run-dir", tmp_path / "run")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "loss.class_weights has 3 weights but the data has 2 classes" in lines[0]


# --- (5) the default is unchanged -----------------------------------------------------------

def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_class_weights_trains_the_same_bytes_as_before(imbalanced, tmp_path):
    danlu.train(_recipe(imbalanced, epochs=3), tmp_path / "without")
    danlu.train(_recipe(imbalanced, {"class_weights": None}, epochs=3), tmp_path / "null")
    danlu.train(_recipe(imbalanced, {"class_weights": [1, 1]}, epochs=3), tmp_path / "ones")
    without = tmp_path / "without" / "model.safetensors"
    assert _digest(without) == _digest(tmp_path / "null" / "model.safetensors")
    saved = danlu.Recipe.from_yaml(tmp_path / "without" / "recipe.yaml")
    assert saved.loss.class_weights is None
    # equal weights are the unweighted loss up to rounding (a weighted mean of ones)
    a = danlu.load_model(tmp_path / "without")[0].state_dict()
    b = danlu.load_model(tmp_path / "ones")[0].state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


# --- (6) evaluation uses the same weights ----------------------------------------------------

def test_evaluate_gives_the_summarys_weighted_test_loss(imbalanced, tmp_path):
    run_dir = tmp_path / "run"
    danlu.train(_recipe(imbalanced, {"class_weights": "auto"}, epochs=3), run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    evaluated = danlu.evaluate(run_dir, "test")
    assert evaluated["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    # the oracle: torch's weighted cross-entropy with sklearn's balanced weights of the training split
    model, _pipeline, _meta, saved = danlu.load_model(run_dir)
    prepared = prepare_run_data(saved)
    w = compute_class_weight("balanced", classes=np.arange(2), y=prepared.splits["train"][1].numpy())
    X, y = prepared.splits["test"]
    with torch.no_grad():
        expected = F.cross_entropy(model(X), y, weight=torch.tensor(w, dtype=torch.float32))
    assert summary["test"]["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) != pytest.approx(float(F.cross_entropy(model(X), y).detach()), rel=1e-3)
