"""A finished run's scores on one split, and its figures beside the baselines (``danlu eval --baseline``).

Loading a run needs the training layer, so this lives above it; the statistics are danlu.evaluation's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluation._baseline import compare_to_baseline


def evaluate_with_baseline(run_dir, split: str = "test", *, seed: int | None = None, n_boot: int = 2000) -> dict:
    """A finished run's figures on ``split`` with the baselines and the significance test beside them.

    Baselines are fitted on the run's own training rows. Returns ``{"split", "model": {metric: v},
    "baseline": {name: {metric: v}}, "against", "significance": {..., "verdict"}}``.
    """
    got = run_split_scores(run_dir, split)
    seed = got.recipe.seed if seed is None else seed
    extra = compare_to_baseline(got.info.task, got.y_train, got.y, got.scores, got.info.n_classes, seed, n_boot,
                                positive=getattr(got.info, "positive", 1))
    return {"split": split, "model": got.figures, **extra}


@dataclass
class SplitScores:
    """A finished run's model applied to one split of its own data."""

    split: str              # the split scored
    recipe: object          # the run's Recipe
    info: object            # DataInfo
    prepared: object        # danlu.data.Prepared: every split's (X, y) as the run saw them
    figures: dict           # loss and metrics, as `danlu eval` reports them
    y: np.ndarray           # the split's labels / targets
    scores: np.ndarray      # class probabilities or predictions, as compute_metrics takes them
    y_train: np.ndarray     # the training rows' labels, for fitting baselines


def run_split_scores(run_dir, split: str = "test") -> SplitScores:
    """Load a run's model and data (its rows.json included) and score one split."""
    import torch

    from .. import training as runs
    from ..training._factory import scores_to_proba
    from ..training._loop import evaluate_outputs, model_outputs

    run_dir = Path(run_dir)
    device = runs.resolve_device(runs.read_run_recipe(run_dir).device)
    sc = runs.scoring(run_dir, device=device)
    runs.refuse_generative(run_dir, sc.meta, sc.recipe, "compare")
    X, y = (t.to(device) for t in sc.split(split, run_dir))
    info, kind = sc.prepared.info, sc.meta["loss_kind"]
    with torch.no_grad():
        out = model_outputs(sc.model, X)
        figures = evaluate_outputs(out, y, sc.loss_fn, kind, info)
        scores = scores_to_proba(out, kind, info).float().cpu().numpy()
    return SplitScores(split, sc.recipe, info, sc.prepared, figures, y.cpu().numpy(), scores,
                       sc.prepared.splits["train"][1].cpu().numpy())
