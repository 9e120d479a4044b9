"""Fitted estimators on disk without pickle: skops files read against an explicit trust list.

A skops file is a zip of ``schema.json`` (the object tree, each node naming its type) and ``.npy``
arrays (read with ``allow_pickle=False``). Loading builds only the types the schema names, and
we accept a file only when every type it names is in :data:`TRUSTED_TYPES` — the exact types
that danlu's classical kinds produce — so a file holding anything else (a function, ``os.system``,
another estimator) is refused before a single object is built. skops then checks the same list
again (``trusted=TRUSTED_TYPES``; never ``trusted=True``). The file's SHA-256 is kept in
model.json, so a file changed after training is refused too.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

from ..errors import CheckpointError, UserError

#: Every type a saved classical model may contain (module path + class name), nothing more.
TRUSTED_TYPES = (
    # containers and scalars
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool",
    "numpy.ndarray", "numpy.int64", "numpy.int32", "numpy.float64", "numpy.float32", "numpy.uint64",
    "numpy.bool_", "numpy.dtype", "numpy.random._generator.Generator",
    # decision_tree, random_forest
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.ensemble._forest.RandomForestRegressor",
    # svm
    "sklearn.svm._classes.SVC", "sklearn.svm._classes.SVR",
    "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration", "sklearn.isotonic.IsotonicRegression",
    "sklearn.compose._target.TransformedTargetRegressor", "sklearn.preprocessing._data.StandardScaler",
    # gradient_boosting
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.LogitLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
    # kmeans, pca
    "sklearn.cluster._kmeans.KMeans",
    "sklearn.decomposition._pca.PCA",
)


def _skops_io():
    try:
        import skops.io as sio
    except ImportError:
        raise UserError("classical models are saved with skops, which is not installed; "
                        "pip install 'danlu[classical]' (or pip install skops)") from None
    return sio


def schema_types(path: Path) -> set[str]:
    """Every ``module.Class`` that the file's schema names, read as plain JSON (nothing is built)."""
    try:
        with zipfile.ZipFile(path) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable skops model file ({err}); the file is damaged") from None
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__module__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def untrusted_types(path: Path) -> list[str]:
    return sorted(schema_types(path) - set(TRUSTED_TYPES))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_estimator(estimator, path: str | Path) -> str:
    """Write ``estimator`` to ``path`` atomically; returns the file's SHA-256.

    A model that could not be loaded again (a type outside the trust list) is refused here,
    at save time, rather than after training when someone needs it.
    """
    sio = _skops_io()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        sio.dump(estimator, tmp)
        unknown = untrusted_types(Path(tmp))
        if unknown:
            raise RuntimeError(f"the fitted {type(estimator).__name__} holds types outside danlu's trust list "
                               f"({', '.join(unknown)}); add them to TRUSTED_TYPES after review")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        digest = file_sha256(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def load_estimator(path: str | Path, *, sha256: str | None = None, expected: str | None = None):
    """Read a fitted estimator; refuse a changed file, an untrusted type or an unexpected estimator.

    ``sha256``: the checksum recorded at save time. ``expected``: the estimator's full type name.
    """
    sio = _skops_io()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; the run directory must hold the fitted model (model.skops)")
    if sha256 is not None and file_sha256(path) != sha256:
        raise CheckpointError(f"{path}: the file does not match the checksum in model.json (changed after "
                              f"training); refit the model with `danlu train`")
    unknown = untrusted_types(path)
    if unknown:
        raise CheckpointError(f"{path}: refused: the file holds types danlu does not trust "
                              f"({', '.join(unknown)}); only load models that danlu saved")
    try:
        estimator = sio.load(path, trusted=list(TRUSTED_TYPES))
    except sio.exceptions.UntrustedTypesFoundException as err:
        raise CheckpointError(f"{path}: refused by skops: {err}") from None
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: cannot read the fitted model ({type(err).__name__}: {err}); "
                              f"the file is damaged, refit with `danlu train`") from None
    name = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if expected is not None and name != expected:
        raise CheckpointError(f"{path}: holds a {name}, but model.json says {expected}; the file was replaced")
    return estimator
