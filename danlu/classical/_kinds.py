"""The classical model kinds and their recipe keys (as data), registered with the model registry.

``model: {kind: random_forest, n_estimators: 200}`` is validated by the same schema as a neural
model's keys, so a typo fails before any work starts. This module imports neither torch nor
scikit-learn: the registry is read by recipe validation, which must stay cheap.

The registered builders only refuse: a classical kind is a scikit-learn estimator fitted once on
the training split (``danlu.classical.plan``), never a ``torch.nn.Module`` trained by the loop.
"""
from __future__ import annotations

from ..errors import RecipeError
from .._extras import Extra, register_extra, register_loopless
from ..models._registry import MODELS, register_model
from ..training._runs import register_run_kind
from ..recipe import NUM, Field, union

CLASSIFICATION_CRITERIA = ("gini", "entropy", "log_loss")
REGRESSION_CRITERIA = ("squared_error", "friedman_mse", "absolute_error", "poisson")


def _max_depth(default=None) -> Field:
    return Field(int, default, min=1, doc="deepest level of a tree; null: no limit")


def _min_samples_leaf(default: int) -> Field:
    return Field(int, default, min=1, nullable=False, doc="fewest training rows a leaf may hold")


DECISION_TREE_PARAMS = {
    "max_depth": _max_depth(),
    "min_samples_split": Field(int, 2, min=2, nullable=False, doc="fewest rows a node needs to be split"),
    "min_samples_leaf": _min_samples_leaf(1),
    "criterion": Field(str, None, choices=CLASSIFICATION_CRITERIA + REGRESSION_CRITERIA,
                       doc="split quality; null: gini (classification) or squared_error (regression)"),
}

RANDOM_FOREST_PARAMS = {
    "n_estimators": Field(int, 100, min=1, nullable=False, doc="number of trees"),
    "max_depth": _max_depth(),
    "min_samples_leaf": _min_samples_leaf(1),
    "max_features": union(Field(str, choices=("sqrt", "log2")),
                          Field(NUM, min=0, min_exclusive=True, max=1, doc="a fraction of features, in (0, 1]"),
                          doc="features tried at each split: sqrt, log2 or a fraction in (0, 1]; null: sqrt "
                              "(classification) or all (regression)"),
    "bootstrap": Field(bool, True, nullable=False, doc="grow each tree on a bootstrap sample of the rows"),
}

SVM_PARAMS = {
    "C": Field(NUM, 1.0, min=0, min_exclusive=True, nullable=False,
               doc="inverse regularisation strength (larger: fit the training rows more closely)"),
    "kernel": Field(str, "rbf", choices=("rbf", "linear", "poly", "sigmoid"), nullable=False,
                    doc="kernel function"),
    "gamma": union(Field(str, choices=("scale", "auto")), Field(NUM, min=0, min_exclusive=True), default="scale",
                   nullable=False, doc="kernel width: scale, auto or a number > 0"),
    "degree": Field(int, 3, min=1, nullable=False, doc="degree of the poly kernel"),
    "epsilon": Field(NUM, 0.1, min=0, nullable=False,
                     doc="regression: half-width of the error tube that costs nothing (in standard deviations "
                         "of the target when data.scale_target is on)"),
    "calibration": Field(str, "sigmoid", choices=("sigmoid", "isotonic"), nullable=False,
                         doc="classification: how decision values become probabilities, fitted on "
                             "cross-validated decision values (sigmoid: Platt scaling)"),
    "calibration_folds": Field(int, 5, min=2, nullable=False,
                               doc="classification: folds of the cross-validation that calibrates probabilities"),
}

GRADIENT_BOOSTING_PARAMS = {
    "n_estimators": Field(int, 100, min=1, nullable=False,
                          doc="boosting rounds (one tree per round, per class for multiclass)"),
    "learning_rate": Field(NUM, 0.1, min=0, min_exclusive=True, nullable=False,
                           doc="shrinkage of each tree's contribution"),
    "max_depth": _max_depth(),
    "max_leaf_nodes": Field(int, 31, min=2, doc="most leaves per tree; null: no limit"),
    "min_samples_leaf": _min_samples_leaf(20),
    "l2_regularization": Field(NUM, 0.0, min=0, nullable=False, doc="L2 penalty on leaf values"),
}

KMEANS_PARAMS = {
    "n_clusters": Field(int, None, min=1, doc="number of clusters; null: the number of classes "
                                              "(8 when the labels are not classes)"),
    "init": Field(str, "k-means++", choices=("k-means++", "random"), nullable=False,
                  doc="how the first centres are picked"),
    "n_init": Field(int, 10, min=1, nullable=False, doc="restarts from different centres; the best is kept"),
    "max_iter": Field(int, 300, min=1, nullable=False, doc="most iterations of one run"),
}

PCA_PARAMS = {
    "n_components": Field(int, 2, min=1, nullable=False,
                          doc="principal components kept (at most the number of features)"),
    "whiten": Field(bool, False, nullable=False,
                    doc="scale each component to unit variance (the reconstruction is unchanged)"),
}

# One thread by default: predictable on a shared machine, and OpenMP threads that spin-wait for a
# busy core made gradient boosting 15x slower on a loaded 2-core box. Raise it for big data.
N_JOBS = union(Field(int, choices=(-1,), doc="-1 (all cores)"), Field(int, min=1, doc="a number of threads >= 1"),
               default=1, nullable=False, doc="CPU threads for fitting and predicting (-1: all cores)")

KIND_PARAMS = {
    "decision_tree": DECISION_TREE_PARAMS | {"n_jobs": N_JOBS},
    "random_forest": RANDOM_FOREST_PARAMS | {"n_jobs": N_JOBS},
    "svm": SVM_PARAMS | {"n_jobs": N_JOBS},
    "gradient_boosting": GRADIENT_BOOSTING_PARAMS | {"n_jobs": N_JOBS},
    "kmeans": KMEANS_PARAMS | {"n_jobs": N_JOBS},
    "pca": PCA_PARAMS | {"n_jobs": N_JOBS},
}

#: The model kinds that are scikit-learn estimators, fitted once instead of trained by the loop.
CLASSICAL_KINDS = frozenset(KIND_PARAMS)

#: Kinds that learn without the labels: k-means answers a cluster id, PCA the components of a row.
UNSUPERVISED_KINDS = frozenset({"kmeans", "pca"})


def is_classical(kind_or_recipe) -> bool:
    """True for a classical kind name, a ``model`` section or a recipe whose model is classical."""
    kind = kind_or_recipe
    if isinstance(kind, dict):
        kind = (kind.get("model") or {}).get("kind") if "model" in kind else kind.get("kind")
    return kind in CLASSICAL_KINDS


def _refuse_module(cfg, info, out_dim):
    raise RecipeError(f"model.kind {cfg['kind']} is a scikit-learn model: it is fitted by `danlu train` "
                      f"(danlu.train), not built as a torch module")


def register_kinds() -> None:
    """Register the classical kinds (again) unless a kind of that name is already there."""
    for name, params in KIND_PARAMS.items():
        if name not in MODELS:
            register_model(name, _refuse_module, params)


register_kinds()
register_extra(Extra("a classical model (model.kind: {kind})", "classical", ("skops",), is_classical))
register_run_kind("classical", "danlu.classical._runs:ClassicalRuns", recipe=is_classical, order=30)
register_loopless(is_classical, lambda r: f"a classical model (model.kind: {r['model']['kind']}) is fitted once, "
                                          f"without the loop")
