"""Recipe ``model`` section -> an unfitted scikit-learn estimator.

Choices made once, here:

* svm (classification): probabilities come from ``CalibratedClassifierCV(SVC(), ensemble=False)``:
  the SVC's decision values are cross-validated (``calibration_folds``), a sigmoid (Platt) or
  isotonic map is fitted on them, and one SVC is then fitted on all training rows. This is what
  ``SVC(probability=True)`` did internally, and what scikit-learn 1.9 asks for instead of it.
* svm (regression): with ``data.scale_target`` on, the SVR learns the standardised target
  (``TransformedTargetRegressor``), because its ``epsilon`` and ``C`` are in target units; the other
  kinds do not depend on the target's scale.
* gradient_boosting is ``HistGradientBoosting*`` (binned features, fast on every size) without
  internal early stopping, so every training row is used and the result depends only on the seed.
* pca uses the exact (LAPACK, ``svd_solver="full"``) decomposition: the result is the one
  scikit-learn gives on the same rows whatever their size, and needs no seed.
* Every other estimator gets ``random_state = recipe seed``.
"""
from __future__ import annotations

from ..errors import RecipeError
from ._kinds import CLASSIFICATION_CRITERIA, REGRESSION_CRITERIA


def make_estimator(cfg, info, seed: int, *, scale_target: bool = True, source: str = "recipe"):
    """The unfitted estimator that the ``model`` section ``cfg`` describes for data ``info``."""
    kind = cfg["kind"]
    classify = info.task == "classification"
    try:
        return _BUILDERS[kind](cfg, info, seed, classify, scale_target)
    except RecipeError as err:
        raise RecipeError(f"{source}: {err}") from None


def _decision_tree(cfg, info, seed, classify, scale_target):
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    cls = DecisionTreeClassifier if classify else DecisionTreeRegressor
    return cls(max_depth=cfg["max_depth"], min_samples_split=cfg["min_samples_split"],
               min_samples_leaf=cfg["min_samples_leaf"], random_state=seed,
               **_criterion(cfg["criterion"], classify))


def _criterion(criterion, classify: bool) -> dict:
    if criterion is None:
        return {}
    allowed = CLASSIFICATION_CRITERIA if classify else REGRESSION_CRITERIA
    if criterion not in allowed:
        task = "classification" if classify else "regression"
        raise RecipeError(f"model.criterion {criterion} does not fit {task}; use one of {', '.join(allowed)}")
    return {"criterion": criterion}


def _random_forest(cfg, info, seed, classify, scale_target):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    extra = {}
    if cfg["max_features"] is not None:
        extra["max_features"] = _max_features(cfg["max_features"])
    cls = RandomForestClassifier if classify else RandomForestRegressor
    return cls(n_estimators=cfg["n_estimators"], max_depth=cfg["max_depth"],
               min_samples_leaf=cfg["min_samples_leaf"], bootstrap=cfg["bootstrap"], n_jobs=cfg["n_jobs"],
               random_state=seed, **extra)


def _max_features(value):
    """sqrt, log2 or a fraction in (0, 1] (the schema checked which)."""
    return value if isinstance(value, str) else float(value)


def _svm(cfg, info, seed, classify, scale_target):
    from sklearn.svm import SVC, SVR

    gamma = cfg["gamma"]   # scale, auto or a number > 0 (the schema checked which)
    kernel = {"C": float(cfg["C"]), "kernel": cfg["kernel"], "gamma": gamma, "degree": cfg["degree"]}
    if classify:
        from sklearn.calibration import CalibratedClassifierCV

        return CalibratedClassifierCV(SVC(random_state=seed, **kernel), method=cfg["calibration"],
                                      cv=cfg["calibration_folds"], ensemble=False)
    svr = SVR(epsilon=float(cfg["epsilon"]), **kernel)
    if not scale_target:
        return svr
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=svr, transformer=StandardScaler())


def _gradient_boosting(cfg, info, seed, classify, scale_target):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    return cls(max_iter=cfg["n_estimators"], learning_rate=float(cfg["learning_rate"]), max_depth=cfg["max_depth"],
               max_leaf_nodes=cfg["max_leaf_nodes"], min_samples_leaf=cfg["min_samples_leaf"],
               l2_regularization=float(cfg["l2_regularization"]), early_stopping=False, random_state=seed)


def _kmeans(cfg, info, seed, classify, scale_target):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters(cfg, info), init=cfg["init"], n_init=cfg["n_init"],
                  max_iter=cfg["max_iter"], random_state=seed)


def _pca(cfg, info, seed, classify, scale_target):
    from sklearn.decomposition import PCA

    return PCA(n_components=cfg["n_components"], whiten=cfg["whiten"], svd_solver="full")


def n_clusters(cfg, info) -> int:
    if cfg["n_clusters"] is not None:
        return int(cfg["n_clusters"])
    return int(info.n_classes) if info.task == "classification" else 8


_BUILDERS = {
    "decision_tree": _decision_tree,
    "random_forest": _random_forest,
    "svm": _svm,
    "gradient_boosting": _gradient_boosting,
    "kmeans": _kmeans,
    "pca": _pca,
}
