"""The numbers behind the report that the run directory does not hold as such: the saved
model's predictions on the test split, the baseline's metrics, and the planned learning-rate
schedule per step. All of them come from the recipe's data, split again by its seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np


@dataclass
class Evidence:
    info: object                 # danlu.data.DataInfo
    split: str                   # the split the predictions are for
    y_true: np.ndarray           # class ids (N,) or targets (N,) / (N, k)
    scores: np.ndarray           # class probabilities (N, C) or predictions (N,) / (N, k)
    baseline_name: str           # "majority" or "mean"
    baseline: dict               # split -> metrics of the baseline
    verdict: str                 # is the model better than the baseline on ``split``, beyond luck?
    n_train: int                 # training rows (steps per epoch follow from it)

    @property
    def predicted_class(self) -> np.ndarray:
        return self.scores.argmax(axis=1)


def gather(run_dir, recipe) -> Evidence:
    """Predictions of the saved model on the test split (validation, then train, if the recipe
    has none), the baseline on every split, and the significance of the model's edge."""
    import torch

    from ..training import prepare_run_data as _prepare_data, load_model, resolve_device
    from ..training import model_outputs
    from ..training._factory import scores_to_proba

    # "auto", not the recipe's device: a run trained on a GPU can be reported on a laptop.
    model, _pipeline, meta, _recipe = load_model(run_dir, device=resolve_device("auto"))
    prepared = _prepare_data(recipe, run_dir)
    info = prepared.info
    split = next(s for s in ("test", "validation", "train") if s in prepared.splits)
    X, y = prepared.splits[split]
    weights = next(model.parameters(), None)   # classical models may hold no torch parameters
    device = weights.device if weights is not None else torch.device("cpu")
    with torch.no_grad():
        out = model_outputs(model, X.to(device))
        scores = scores_to_proba(out, meta["loss_kind"], info)
    scores = scores.float().cpu().numpy()
    name, figures, verdict = baselines(info, prepared.splits, split, scores, recipe.seed)
    return Evidence(info=info, split=split, y_true=y.cpu().numpy(), scores=scores, baseline_name=name,
                    baseline=figures, verdict=verdict, n_train=len(prepared.splits["train"][0]))


def baselines(info, splits: dict, split: str, scores: np.ndarray, seed: int) -> tuple[str, dict, str]:
    """(the baseline's name, its metrics per split, the verdict of the model against it on ``split``).

    The baseline is danlu.evaluation's main one, fitted on the training split: the majority class
    (with the class frequencies as probabilities) for classification, the mean for regression.
    """
    from ..evaluation import baseline_metrics, compare_to_baseline

    y_train = splits["train"][1].cpu().numpy()
    y_eval = splits[split][1].cpu().numpy()
    against = compare_to_baseline(info.task, y_train, y_eval, scores, info.n_classes, seed)
    name = against["against"]
    figures = {s: baseline_metrics(info.task, y_train, y.cpu().numpy(), info.n_classes, seed)[name]
               for s, (_X, y) in splits.items()}
    return name, figures, against["significance"]["verdict"]


def planned_lr(recipe, n_train: int) -> tuple[list, list] | None:
    """The schedule's learning rate at every optimizer step of the planned epochs, recomputed
    from the recipe; ``None`` for ``plateau``, whose rate depends on the validation figures."""
    from ..training._factory import build_schedule
    from ..training._loop import batch_count

    if recipe.schedule.kind == "plateau":
        return None
    steps_per_epoch = -(-batch_count(n_train, recipe.train.batch_size) // recipe.train.accumulate)
    total = steps_per_epoch * recipe.train.epochs
    # A stand-in for the optimizer: the schedule only reads and sets its param groups' rates,
    # and a real one would cost parameters and torch.optim's start-up for nothing.
    optimizer = SimpleNamespace(param_groups=[{"lr": recipe.optimizer.lr}])
    schedule = build_schedule(recipe.schedule, optimizer, steps_per_epoch, recipe.train.epochs,
                              source=recipe.source)
    steps = list(range(total + 1))
    return steps, [schedule.lr_at(s) for s in steps]
