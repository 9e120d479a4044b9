"""Classical models from scikit-learn beside the neural ones: decision tree, random forest, SVM,
gradient boosting, and the unsupervised k-means and PCA, as recipe model kinds.

>>> recipe = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"},
...                            "model": {"kind": "random_forest", "n_estimators": 200}})
>>> run = danlu.train(recipe)          # fitted once on the training split; same run directory

They share the data pipeline, the metrics and the run directory with neural runs; `danlu eval`
and `danlu predict` work on them, and the supervised ones can be members of `danlu ensemble` or
teachers in `danlu distill`. k-means and PCA runs also leave pictures in ``RUN/plots/`` (see
``_plots``). The fitted estimator is saved as a skops file read against an explicit trust list
(never pickle); see ``_persist``.

Importing this package registers the kinds with the model registry and imports neither torch
nor scikit-learn; the rest is loaded on first use.
"""
from .._lazy import lazy_getattr
from ._kinds import CLASSICAL_KINDS, KIND_PARAMS, UNSUPERVISED_KINDS, is_classical, register_kinds

_LAZY = {  # public name -> private module that needs numpy / torch / scikit-learn
    "Plan": "_fit",
    "plan": "_fit",
    "load_module": "_fit",
    "split_figures": "_fit",
    "cluster_figures": "_fit",
    "cluster_ids": "_fit",
    "component_figures": "_fit",
    "unsupervised_answers": "_fit",
    "write_plots": "_plots",
    "make_estimator": "_estimators",
    "SklearnModel": "_module",
    "class_proba": "_module",
    "save_estimator": "_persist",
    "load_estimator": "_persist",
    "TRUSTED_TYPES": "_persist",
    "schema_types": "_persist",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["CLASSICAL_KINDS", "KIND_PARAMS", "UNSUPERVISED_KINDS", "is_classical", "register_kinds", *_LAZY]
