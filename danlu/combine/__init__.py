"""Model fusion (模型融合): combine finished runs — neural and classical alike — by hard or soft
voting, weights fitted on the validation split, stacking with a meta-model, or Bayesian model
averaging, and compare members and ensemble on the same test split.

>>> from danlu.combine import ensemble
>>> result = ensemble(["runs/mlp", "runs/forest", "runs/svm"], method="weighted", out_dir="runs/ens")
>>> result["ensemble"]["test"]["accuracy"], [m["weight"] for m in result["members"]]

The combination rules are plain numpy functions in ``_methods`` (documented there); the members'
same-data check is shared with distillation and fine-tuning. An ensemble folder is a run for
predict, serve, export and eval (``_model``).
"""
from ._ensemble import RESULT_FILE, combine, ensemble, figures, table_rows
from ._members import (Member, check_reshape, check_runs, check_same_data, data_identity, load_members,
                       outputs_of, run_recipe)
from .._lazy import lazy_getattr
from ._methods import (
    CLASSIFICATION_METHODS,
    FITTED,
    REGRESSION_METHODS,
    bayes_weights,
    classification_log_likelihood,
    fit_simplex_weights,
    gaussian_log_likelihood,
    mix,
    vote,
    weighted_classification,
    weighted_regression,
)

_LAZY = {name: "_model" for name in ("Combiner", "EnsembleModel", "evaluate_ensemble", "load_ensemble")}
__getattr__ = lazy_getattr(__name__, _LAZY)   # these need torch; importing the package does not


def is_ensemble_dir(path) -> bool:
    """A folder written by ``danlu ensemble`` (ensemble.json, no recipe.yaml of its own)."""
    from pathlib import Path

    path = Path(path)
    return (path / RESULT_FILE).is_file() and not (path / "recipe.yaml").is_file()


__all__ = [
    "CLASSIFICATION_METHODS", "Combiner", "EnsembleModel", "FITTED", "Member", "REGRESSION_METHODS", "RESULT_FILE",
    "bayes_weights", "check_reshape", "check_runs", "evaluate_ensemble", "is_ensemble_dir", "load_ensemble",
    "check_same_data", "classification_log_likelihood", "combine", "data_identity", "ensemble", "figures",
    "fit_simplex_weights", "gaussian_log_likelihood", "load_members", "mix", "outputs_of", "run_recipe", "table_rows",
    "vote", "weighted_classification", "weighted_regression",
]
