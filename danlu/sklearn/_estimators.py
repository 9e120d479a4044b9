"""scikit-learn estimators that train a danlu recipe on arrays in memory.

``DanluClassifier(recipe=None, **overrides)`` and ``DanluRegressor(...)`` follow scikit-learn's
conventions, so they work in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``:

* ``recipe`` is a recipe dict, a YAML path or ``None`` (a small MLP, :data:`DEFAULT_RECIPE`);
* every other keyword overrides one recipe key, with ``__`` between levels:
  ``DanluClassifier(optimizer__lr=0.01, model__hidden=[64, 32], train__epochs=30)``, and so in a
  grid search ``{"clf__optimizer__lr": [1e-3, 1e-2]}``;
* ``__init__`` only stores them; the recipe is built and checked in ``fit``.

``fit(X, y)`` runs danlu's own loop (``danlu.training.fit``) on a session built by
``danlu._run.build_session`` — the same model, loss, optimizer, schedule and monitors as
``danlu train`` — with no run directory. The recipe's ``data`` section only contributes
``scale`` (fitted on the ``X`` given), ``scale_target``, ``shape`` and, for early stopping,
``split.validation`` / ``split.stratify``: a fraction of the rows is held out only when
``train.early_stopping.enabled`` and ``data.split.validation > 0``; the default recipe trains on
every row for a fixed number of epochs. ``data.split.test`` is ignored (scikit-learn splits).

Like ``danlu train``, ``fit`` seeds Python's, NumPy's and torch's global generators with the
recipe's seed, so two fits of the same estimator on the same data give the same model.
"""
from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

DEFAULT_RECIPE = {
    "seed": 0,
    "model": {"kind": "mlp", "hidden": [32]},
    "optimizer": {"kind": "adam", "lr": 0.01},
    "train": {"epochs": 40, "batch_size": 32, "early_stopping": {"enabled": False}},
    "data": {"split": {"validation": 0.0, "test": 0.0}},
    "output": {"progress": "none"},
}
# recipe.from_dict needs a data source; the rows come from fit's arrays instead
_IN_MEMORY = {"source": "npy", "path": "<arrays given to fit>"}


def _recipe_sections() -> tuple[str, ...]:
    from ..recipe import schema

    return tuple(schema().fields)


def _is_param(name: str) -> bool:
    """Parameters are the public attributes that ``__init__`` / ``set_params`` stored; learned
    attributes end with ``_``, private ones start with it."""
    return not name.startswith("_") and not name.endswith("_")


class _DanluEstimator(BaseEstimator):
    _task = ""

    def __init__(self, recipe=None, **overrides):
        self.recipe = recipe
        for key, value in overrides.items():
            setattr(self, key, value)

    # -- parameters (the recipe and every override, as scikit-learn's clone expects) ---------

    def get_params(self, deep: bool = True) -> dict:
        params = {"recipe": None}
        params.update({k: v for k, v in vars(self).items() if _is_param(k)})
        return params

    def set_params(self, **params):
        # stored as given; like every scikit-learn estimator, the values are checked in fit
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def _overrides(self) -> dict:
        """The overrides as recipe key paths (``optimizer__lr`` -> ``optimizer.lr``)."""
        from ..errors import did_you_mean

        sections = _recipe_sections()
        out = {}
        for key, value in self.get_params().items():
            if key == "recipe":
                continue
            if key.split("__", 1)[0] not in sections:
                raise ValueError(f"{type(self).__name__}: unknown parameter {key!r}"
                                 f"{did_you_mean(key.split('__', 1)[0], sections)}; give recipe=... or a recipe key "
                                 f"with '__' between levels, e.g. optimizer__lr=0.01")
            out[key.replace("__", ".")] = value
        return out

    def resolved_recipe(self):
        """The recipe ``fit`` trains: ``recipe`` (or the default) with the overrides applied."""
        from ..errors import RecipeError
        from ..recipe import Recipe, load_yaml

        if self.recipe is None:
            data, source = copy.deepcopy(DEFAULT_RECIPE), type(self).__name__
        elif isinstance(self.recipe, (str, Path)):
            data, source = load_yaml(Path(self.recipe)) or {}, str(self.recipe)
        elif isinstance(self.recipe, dict):
            data, source = copy.deepcopy(self.recipe), type(self).__name__
        elif isinstance(self.recipe, Recipe):
            data, source = self.recipe.to_dict(), self.recipe.source
        else:
            raise TypeError(f"recipe must be None, a dict, a Recipe or a YAML path, got {type(self.recipe).__name__}")
        section = data.setdefault("data", {}) or {}
        data["data"] = {**section, **_IN_MEMORY}
        for key, value in self._overrides().items():
            _set_key(data, key, value)
        try:
            return Recipe.from_dict(data, source=source)
        except RecipeError as err:
            raise ValueError(str(err)) from None   # scikit-learn reports bad parameters as ValueError

    # -- training ----------------------------------------------------------------------------

    def _fit_arrays(self, X, y, classes=None):
        import torch

        from ..data._encode import Scaler
        from ..training import build_session
        from ..training import fit

        recipe = self.resolved_recipe()
        shape = self._input_shape(recipe, X.shape[1])
        X = X.reshape(len(X), *shape)
        # the scaler of a recipe's own data: fitted per feature (per channel of a sequence or image)
        self.scaler_ = Scaler.fit(X, recipe.data.scale, axis=2 if len(shape) == 2 else 1)
        Xt = self.scaler_.apply(torch.as_tensor(X, dtype=torch.float32))
        # a copy: y may be a read-only view (memmap), which torch refuses to share
        yt = torch.tensor(np.array(y), dtype=torch.long if classes is not None else torch.float32)
        info = self._info(recipe, shape, classes, y)
        splits = _splits(recipe, Xt, yt, classes, type(self).__name__)
        prepared = SimpleNamespace(info=info, splits=splits, pipeline=None)
        session = build_session(recipe, None, prepared, progress="none")
        fit(session.state, session.callbacks)
        state = session.state
        state.model.eval()
        self.model_ = state.model
        self.loss_kind_ = state.loss_kind
        self.info_ = info
        self.input_shape_ = shape
        self.history_ = list(state.history)
        self.n_iter_ = state.epoch
        self.stop_reason_ = state.stop_reason
        return self

    @staticmethod
    def _input_shape(recipe, n_features: int) -> tuple:
        if recipe.data.shape is None:
            return (n_features,)
        shape = tuple(int(s) for s in recipe.data.shape)
        if int(np.prod(shape)) != n_features:
            raise ValueError(f"data.shape {list(shape)} holds {int(np.prod(shape))} values but X has {n_features} "
                             f"features; fix data.shape")
        return shape

    def _info(self, recipe, shape, classes, y):
        from ..data import DataInfo

        kind = {1: "tabular", 2: "sequence", 3: "image"}[len(shape)]
        return DataInfo(task=self._task, kind=kind, input_shape=shape,
                        n_classes=len(classes) if classes is not None else None,
                        classes=[_plain(c) for c in classes] if classes is not None else [],
                        feature_names=[f"x{i}" for i in range(shape[-1] if kind == "sequence" else shape[0])],
                        n_targets=1 if classes is not None or y.ndim == 1 else int(y.shape[1]))

    def _scores(self, X) -> np.ndarray:
        """Class probabilities or regression values for new rows."""
        import torch

        from ..training import model_outputs, scores_to_proba

        check_is_fitted(self, "model_")
        X = _validate_data(self, X, reset=False, dtype=np.float64)
        X = X.reshape(len(X), *self.input_shape_)
        device = next(self.model_.parameters()).device
        Xt = self.scaler_.apply(torch.as_tensor(X, dtype=torch.float32))
        out = model_outputs(self.model_, Xt.to(device))
        return scores_to_proba(out, self.loss_kind_, self.info_).detach().cpu().numpy().astype(np.float64)


class DanluClassifier(ClassifierMixin, _DanluEstimator):
    """A danlu recipe as a scikit-learn classifier (see the module docstring)."""

    _task = "classification"

    def fit(self, X, y):
        X, y = _validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y; got one class: "
                             f"{self.classes_[0]!r}")
        return self._fit_arrays(X, codes, self.classes_)

    def predict_proba(self, X) -> np.ndarray:
        return self._scores(X)

    def predict(self, X) -> np.ndarray:
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]


class DanluRegressor(RegressorMixin, _DanluEstimator):
    """A danlu recipe as a scikit-learn regressor (see the module docstring); ``y`` may have
    several columns."""

    _task = "regression"

    def fit(self, X, y):
        X, y = _validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        self.n_outputs_ = 1 if y.ndim == 1 else int(y.shape[1])
        return self._fit_arrays(X, y)

    def predict(self, X) -> np.ndarray:
        scores = self._scores(X)
        return scores.reshape(len(scores), -1) if self.n_outputs_ > 1 else scores.reshape(-1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _set_key(data: dict, path: str, value) -> None:
    """Set ``a.b.c`` in nested dicts (the value as given: no YAML text in between)."""
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[leaf] = copy.deepcopy(value)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _splits(recipe, X, y, classes, where: str) -> dict:
    """All rows for training, or a validation hold-out for early stopping when the recipe asks: cut
    by danlu.data's seeded (and, for classes, stratified) split, as a recipe's own data would be."""
    import torch

    from ..data._split import split_rows
    from ..errors import DataError

    fraction = recipe.data.split.validation
    if not (recipe.train.early_stopping.enabled and fraction > 0):
        return {"train": (X, y)}
    stratify = classes is not None and recipe.data.split.stratify
    try:
        rows = split_rows(len(X), fraction, 0.0, recipe.seed, y.numpy() if stratify else None,
                          [_plain(c) for c in classes] if stratify else [], where)
    except DataError as err:
        raise ValueError(str(err)) from None   # scikit-learn reports unusable data as ValueError
    return {name: (X[torch.as_tensor(idx)], y[torch.as_tensor(idx)]) for name, idx in rows.items()}
