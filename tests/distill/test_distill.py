"""Distillation: the loss against a hand-written formula, the gain over the student trained alone,
alpha = 0 being exactly the student alone, the same-data check and the command line."""
import json
import math

import pytest
import torch

import danlu
from danlu import training as runs
from danlu.distill import class_logits, distill, kd_loss, soft_targets, table_rows
from danlu.errors import RecipeError, UserError
from danlu.recipe import Recipe

QUIET = {"divergence": {"enabled": False}, "gradients": {"enabled": False}, "fit": {"enabled": False},
         "convergence": {"enabled": False}}
# A small training split (10% of digits, 180 rows) and a tiny student that trains long enough for the
# teacher's soft targets to matter; on seeds 0, 1 and 2 distillation gained 3 to 6 points of test accuracy.
SPLIT = {"validation": 0.3, "test": 0.6}


def _recipe(shape, model, lr, epochs, **extra):
    return Recipe.from_dict({"seed": 0, "data": {"source": "sklearn", "name": "digits", "shape": shape, "split": SPLIT},
                             "model": model, "optimizer": {"lr": lr}, "train": {"epochs": epochs, "batch_size": 32},
                             "checkpoint": {"every_epochs": 0}, "monitors": QUIET, "output": {"progress": "none"},
                             **extra})


def _student(epochs=30):
    return _recipe([64], {"kind": "mlp", "hidden": [8]}, 0.03, epochs, name="student")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    run = danlu.train(_recipe([64], {"kind": "mlp", "hidden": [128]}, 0.01, 20),
                      tmp_path_factory.mktemp("teacher") / "run")
    return run.path


@pytest.fixture(scope="module")
def distilled(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill")
    return distill(_student(), [teacher], temperature=4.0, alpha=0.9, run_dir=out / "student", progress="none")


def test_kd_loss_is_t_squared_kl_of_softened_distributions():
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    T = 3.0
    p = torch.softmax(t / T, 1)
    q = torch.softmax(s / T, 1)
    by_hand = T * T * sum(float((p[i] * (p[i].log() - q[i].log())).sum()) for i in range(5)) / 5
    assert float(kd_loss(s, p, T)) == pytest.approx(by_hand, rel=1e-5)
    assert float(kd_loss(t, p, T)) == pytest.approx(0.0, abs=1e-6)        # a perfect student loses nothing
    # several teachers: the mean of their softened distributions
    t2 = torch.randn(5, 4)
    mean = (torch.softmax(t / T, 1) + torch.softmax(t2 / T, 1)) / 2
    assert torch.allclose(soft_targets([t, t2], T), mean)


def test_single_logit_heads_become_two_class_logits():
    f = torch.tensor([[0.3], [-1.2]])
    two = class_logits(f, "bce")
    assert torch.allclose(torch.softmax(two, 1)[:, 1], torch.sigmoid(f[:, 0]))
    assert torch.allclose(torch.softmax(class_logits(f, "exponential"), 1)[:, 1], torch.sigmoid(2 * f[:, 0]))
    wide = torch.randn(3, 5)
    assert class_logits(wide, "cross_entropy") is wide


def test_distilled_student_beats_the_student_trained_alone(distilled):
    student, alone = distilled["student"]["test"], distilled["baseline"]["test"]
    assert student["accuracy"] > alone["accuracy"] + 0.01
    assert student["log_loss"] < alone["log_loss"]
    teacher = distilled["teachers"][0]
    assert teacher["test"]["accuracy"] > student["accuracy"]
    assert teacher["parameters"] > 10 * distilled["student"]["parameters"]
    saved = json.loads(open(distilled["path"]).read())
    assert saved["temperature"] == 4.0 and saved["alpha"] == 0.9 and saved["baseline"]["trained_here"] is True
    assert saved["gain"]["accuracy"] == pytest.approx(student["accuracy"] - alone["accuracy"])
    # the baseline really is the same recipe without a teacher, on the same test rows
    assert runs.evaluate(saved["baseline"]["run"], "test")["test"]["accuracy"] == alone["accuracy"]
    assert list(table_rows(saved)) == ["teacher (run)", "student alone", "student distilled"]


def test_alpha_zero_is_exactly_the_student_alone(teacher, distilled, tmp_path):
    baseline = distilled["baseline"]["run"]
    result = distill(_student(), [teacher], temperature=4.0, alpha=0.0, run_dir=tmp_path / "s", baseline=baseline,
                     progress="none")
    assert not (tmp_path / "s-alone").exists()                          # the given baseline is reused
    assert (tmp_path / "s" / "model.safetensors").read_bytes() == \
        (danlu.Run(baseline).path / "model.safetensors").read_bytes()
    assert result["gain"]["accuracy"] == 0.0


def test_teachers_from_other_data_are_refused_before_training(teacher, distilled, tmp_path):
    other_seed = _student().with_overrides({"seed": 1})
    with pytest.raises(UserError, match=r"its seed is 0 but the student recipe has 1"):
        distill(other_seed, [teacher], run_dir=tmp_path / "s", progress="none")
    other_split = _student().with_overrides({"data.split.test": 0.5})
    with pytest.raises(UserError, match=r"its data.split.test is 0.6 but"):
        distill(other_split, [teacher], run_dir=tmp_path / "s", progress="none")
    classical = _student().with_overrides({"model": {"kind": "random_forest"}})
    with pytest.raises(RecipeError, match="must be a neural model"):
        distill(classical, [teacher], run_dir=tmp_path / "s", progress="none")
    with pytest.raises(UserError, match="temperature must be > 0"):
        distill(_student(), [teacher], temperature=0, run_dir=tmp_path / "s", progress="none")
    with pytest.raises(UserError, match=r"its train.epochs is 30 but the student recipe has 5"):
        distill(_student(epochs=5), [teacher], baseline=distilled["baseline"]["run"], run_dir=tmp_path / "s",
                progress="none")
    assert not (tmp_path / "s").exists()


def test_cli_two_teachers_one_classical_and_a_given_baseline(teacher, distilled, cli, tmp_path):
    svm = danlu.train(_recipe([64], {"kind": "svm", "C": 10.0}, 0.01, 1), tmp_path / "svm").path
    recipe = tmp_path / "student.yaml"
    recipe.write_text(_student().to_yaml())
    res = cli("distill", "--teacher", teacher, "--teacher", svm, "--student", recipe,
              "--baseline", distilled["baseline"]["run"], "--run-dir", tmp_path / "s", "--alpha", "0.8",
              "--progress", "none")
    assert res.returncode == 0, res.stderr
    assert "student distilled" in res.stdout and "teacher 2 (svm)" in res.stdout
    saved = json.loads((tmp_path / "s" / "distill.json").read_text())
    assert [t["kind"] for t in saved["teachers"]] == ["mlp", "svm"] and saved["alpha"] == 0.8
    assert math.isfinite(saved["student"]["test"]["log_loss"])

    res = cli("distill", "--teacher", teacher, "--student", recipe, "--set", "seed=3",
              "--run-dir", tmp_path / "t")
    assert res.returncode == 2 and "seed" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "t").exists()
