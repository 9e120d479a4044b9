"""danlu recipes as scikit-learn estimators: :class:`DanluClassifier` and :class:`DanluRegressor`.

>>> from sklearn.model_selection import cross_val_score
>>> from danlu.sklearn import DanluClassifier
>>> cross_val_score(DanluClassifier(model__hidden=[64], train__epochs=30), X, y, cv=5)

They train in memory with danlu's loop (no run directory) and follow scikit-learn's estimator
conventions, so ``Pipeline``, ``GridSearchCV`` and ``cross_val_score`` take them as they are.
"""
from ._estimators import DEFAULT_RECIPE, DanluClassifier, DanluRegressor

__all__ = ["DEFAULT_RECIPE", "DanluClassifier", "DanluRegressor"]
