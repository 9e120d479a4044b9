"""Fitted estimators on disk without pickle: skops files read against an explicit trust list.

A skops file is a zip of ``schema.json`` (the object tree, each node naming its type) and ``.npy``
arrays (read with ``allow_pickle=False``). Loading builds only the types the schema names, and
we accept a file only when every type it names is in :data:`TRUSTED_TYPES` — the exact types
that danlu's classical kinds produce — so a file holding anything else (a function, ``os.system``,
another estimator) is refused before a single object is built. skops then checks the same list
again (``trusted=TRUSTED_TYPES``; never ``trusted=True``). The file's SHA-256 is kept in
model.json and in the run's manifest.json, so a file changed after training is refused too.

A trusted type can still hold untrustworthy numbers: scikit-learn's native predictors index tree
nodes, support vectors and centres without bounds checks. :func:`check_structures` checks every
such structure (children in range and acyclic, feature indices in range, finite thresholds,
consistent shapes) before the estimator is handed out, so a crafted file is one refusal, never
a crash.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .. import _integrity as integrity
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
    return _types_in(Path(path).read_bytes(), Path(path))


def _schema_types(schema) -> set[str]:
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


def save_estimator(estimator, path: str | Path) -> str:
    """Write ``estimator`` to ``path`` atomically (its checksum kept in the run's manifest);
    returns the file's SHA-256.

    A model that could not be loaded again (a type outside the trust list, a structure the
    checks of :func:`check_structures` refuse) is refused here, at save time, rather than after
    training when someone needs it.
    """
    sio = _skops_io()
    path = Path(path)
    check_structures(estimator, path)
    data = sio.dumps(estimator)
    unknown = sorted(_types_in(data, path) - set(TRUSTED_TYPES))
    if unknown:
        raise RuntimeError(f"the fitted {type(estimator).__name__} holds types outside danlu's trust list "
                           f"({', '.join(unknown)}); add them to TRUSTED_TYPES after review")
    integrity.atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return integrity.sha256_bytes(data)


def load_estimator(path: str | Path, *, sha256: str | None = None, expected: str | None = None):
    """Read a fitted estimator; refuse a changed file, an untrusted type, an unexpected estimator
    or a structure that native code could not safely use.

    A file in a run directory must match its checksum in the run's manifest.json; ``sha256``: the
    checksum also recorded in model.json. ``expected``: the estimator's full type name.
    """
    sio = _skops_io()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; the run directory must hold the fitted model (model.skops)")
    # a file of a run (or any folder danlu made) only if it matches its manifest; a file of one's own as it is
    data = integrity.read_bytes(path) if integrity.is_checked(path) else path.read_bytes()
    if sha256 is not None and integrity.sha256_bytes(data) != sha256:
        raise CheckpointError(f"{path}: the file does not match the checksum in model.json (changed after "
                              f"training); refit the model with `danlu train`")
    unknown = sorted(_types_in(data, path) - set(TRUSTED_TYPES))
    if unknown:
        raise CheckpointError(f"{path}: refused: the file holds types danlu does not trust "
                              f"({', '.join(unknown)}); only load models that danlu saved")
    try:
        estimator = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except sio.exceptions.UntrustedTypesFoundException as err:
        raise CheckpointError(f"{path}: refused by skops: {err}") from None
    except (ValueError, KeyError, TypeError, OSError, IndexError, AttributeError, OverflowError, MemoryError,
            zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: cannot read the fitted model ({type(err).__name__}: {err}); "
                              f"the file is damaged, refit with `danlu train`") from None
    name = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if expected is not None and name != expected:
        raise CheckpointError(f"{path}: holds a {name}, but model.json says {expected}; the file was replaced")
    check_structures(estimator, path)
    return estimator


def _types_in(data: bytes, path: Path) -> set[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable skops model file ({err}); the file is damaged") from None
    return _schema_types(schema)


# ---------------------------------------------------------------------------------------------
# Structures handed to native code: checked before any prediction
# ---------------------------------------------------------------------------------------------

_TARGET_SIDE = ("transformer_", "transformer")


class _Bad(Exception):
    """One structural problem, with the place it was found."""


def check_structures(estimator, path: str | Path, n_features: int | None = None) -> None:
    """Refuse a fitted estimator whose arrays native code would trust blindly: tree nodes whose
    children point outside the tree or back up it, feature indices out of range, non-finite
    thresholds or values, support vectors, coefficients or centres of inconsistent shapes.

    scikit-learn's Cython predictors (trees, histogram gradient boosting, libsvm, k-means) index
    these arrays without bounds checks, so a crafted file would crash the process (SIGSEGV) or
    loop for ever. ``n_features``: the number of input columns the run's pipeline gives.
    """
    try:
        top = getattr(estimator, "n_features_in_", None)
        if n_features is not None and top is not None and int(top) != int(n_features):
            raise _Bad(f"the estimator reads {int(top)} features, the run's pipeline gives {n_features}")
        _visit(estimator, n_features if top is None else int(top), "estimator", set())
    except _Bad as err:
        raise CheckpointError(f"{path}: refused: {err}; the file is damaged or was crafted — refit the model "
                              f"with `danlu train`") from None
    except (AttributeError, TypeError, ValueError, IndexError, OverflowError) as err:
        raise CheckpointError(f"{path}: refused: the fitted model is incomplete ({type(err).__name__}: {err}); "
                              f"refit the model with `danlu train`") from None


def _visit(obj, n_features, where: str, seen: set) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _visit(item, n_features, f"{where}[{i}]", seen)
        return
    if isinstance(obj, dict):
        for key, item in obj.items():
            _visit(item, n_features, f"{where}[{key!r}]", seen)
        return
    module = type(obj).__module__ or ""
    if not module.startswith("sklearn."):
        return
    own = getattr(obj, "n_features_in_", None)
    if own is not None:
        own = _int(own, f"{where}.n_features_in_")
        if n_features is not None and own != n_features:
            raise _Bad(f"{where} reads {own} features, its owner {n_features}")
        n_features = own
    kind = type(obj).__name__
    if kind == "Tree" and module == "sklearn.tree._tree":
        _check_tree(obj, n_features, where)
        return
    if kind == "TreePredictor":
        _check_predictor(obj, n_features, where)
        return
    fitted = {"SVC": "support_vectors_", "SVR": "support_vectors_", "KMeans": "cluster_centers_", "PCA": "components_"}
    if kind in fitted and hasattr(obj, fitted[kind]):   # an unfitted template (CalibratedClassifierCV.estimator) is never run
        _CHECKS[kind](obj, n_features, where)
    for key, value in (getattr(obj, "__dict__", None) or {}).items():   # compiled objects have none
        reads = None if key in _TARGET_SIDE else n_features   # a target transformer reads y, not the rows
        _visit(value, reads, f"{where}.{key}", seen)


def _int(value, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _Bad(f"{where} is {type(value).__name__}, not an integer")
    return int(value)


def _array(value, where: str, shape: tuple, finite: bool = True) -> np.ndarray:
    """``value`` as an array of ``shape`` (None: any length there), numeric and finite."""
    if not isinstance(value, np.ndarray):
        raise _Bad(f"{where} is {type(value).__name__}, not an array")
    if value.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, value.shape)):
        raise _Bad(f"{where} has shape {list(value.shape)}, expected {[('*' if s is None else s) for s in shape]}")
    if value.dtype.kind not in "biuf":
        raise _Bad(f"{where} holds {value.dtype}, not numbers")
    if finite and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise _Bad(f"{where} holds values that are not finite")
    return value


def _check_links(left: np.ndarray, right: np.ndarray, leaf: np.ndarray, where: str) -> None:
    """Children point to later nodes of the same tree (so no cycle), and every node but the root
    has exactly one parent (so each node is reached once)."""
    n = len(left)
    inner = ~leaf
    index = np.arange(n)
    for side, kids in (("left", left), ("right", right)):
        k = kids[inner].astype(np.int64)
        if np.any(k <= index[inner]) or np.any(k >= n):
            bad = int(index[inner][(k <= index[inner]) | (k >= n)][0])
            raise _Bad(f"{where}: node {bad}'s {side} child {int(kids[bad])} is outside the tree (nodes {bad + 1}.."
                       f"{n - 1}) or points back up it")
    parents = np.concatenate([left[inner], right[inner]]).astype(np.int64)
    if len(parents) != n - 1 or len(np.unique(parents)) != n - 1:
        raise _Bad(f"{where}: {n} nodes but {len(parents)} child links, or a node with two parents")


def _check_tree(tree, n_features, where: str) -> None:
    count, capacity = _int(tree.node_count, f"{where}.node_count"), _int(tree.capacity, f"{where}.capacity")
    if not 1 <= count <= capacity:   # checked first: the arrays below are views of node_count nodes
        raise _Bad(f"{where}: node_count {count} does not fit the {capacity} stored nodes")
    if n_features is not None and tree.n_features != n_features:
        raise _Bad(f"{where} reads {tree.n_features} features, its estimator {n_features}")
    outputs, classes = _int(tree.n_outputs, f"{where}.n_outputs"), _int(tree.max_n_classes, f"{where}.max_n_classes")
    if outputs < 1 or classes < 1:
        raise _Bad(f"{where}: n_outputs {outputs} and max_n_classes {classes} must be at least 1")
    left, right = tree.children_left, tree.children_right
    feature, threshold = tree.feature, tree.threshold
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise _Bad(f"{where}: node {int(np.flatnonzero(leaf != (right == -1))[0])} has one child only")
    _check_links(left, right, leaf, where)
    inner_features = feature[~leaf]
    if np.any(inner_features < 0) or np.any(inner_features >= tree.n_features):
        raise _Bad(f"{where}: a split reads feature {int(inner_features[(inner_features < 0) | (inner_features >= tree.n_features)][0])}, "
                   f"outside 0..{tree.n_features - 1}")
    if np.any(feature[leaf] != -2):
        raise _Bad(f"{where}: a leaf names feature {int(feature[leaf][feature[leaf] != -2][0])} (leaves have -2)")
    if not np.all(np.isfinite(threshold[~leaf])):
        raise _Bad(f"{where}: a split threshold is not finite")
    _array(tree.value, f"{where}.value", (count, outputs, classes))


def _check_predictor(predictor, n_features, where: str) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = predictor.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1 or not len(nodes):
        raise _Bad(f"{where}.nodes is not a list of tree nodes of scikit-learn's layout")
    leaf = nodes["is_leaf"].astype(bool)
    _check_links(nodes["left"], nodes["right"], leaf, where)
    feature = nodes["feature_idx"][~leaf]
    if n_features is not None and (np.any(feature < 0) or np.any(feature >= n_features)):
        raise _Bad(f"{where}: a split reads a feature outside 0..{n_features - 1}")
    if np.any(np.isnan(nodes["num_threshold"][~leaf])) or not np.all(np.isfinite(nodes["value"][leaf])):
        raise _Bad(f"{where}: a threshold or leaf value is not a number")
    categorical = nodes["is_categorical"].astype(bool) & ~leaf
    if np.any(categorical):   # categorical splits index bitsets danlu's models never have
        raise _Bad(f"{where}: holds categorical splits, which danlu's models do not make")


def _check_svm(model, n_features, where: str) -> None:
    if getattr(model, "_sparse", False):
        raise _Bad(f"{where}: a sparse support-vector model, which danlu does not make")
    sv = _array(model.support_vectors_, f"{where}.support_vectors_", (None, n_features))
    n_sv = len(sv)
    _array(model.support_, f"{where}.support_", (n_sv,))
    n_support = _array(model._n_support, f"{where}._n_support", (None,))
    if type(model).__name__ == "SVC":
        n_class = len(model.classes_)
        pairs = n_class * (n_class - 1) // 2
        if len(n_support) != n_class or np.any(n_support < 0) or int(n_support.sum()) != n_sv:
            raise _Bad(f"{where}: support vectors per class {n_support.tolist()} do not add up to the {n_sv} "
                       f"support vectors of {n_class} classes")
        _array(model._dual_coef_, f"{where}._dual_coef_", (n_class - 1, n_sv))
        _array(model._intercept_, f"{where}._intercept_", (pairs,))
        for name in ("_probA", "_probB"):
            if len(getattr(model, name)) not in (0, pairs):
                raise _Bad(f"{where}.{name} has {len(getattr(model, name))} values, expected 0 or {pairs}")
    else:
        _array(model._dual_coef_, f"{where}._dual_coef_", (1, n_sv))
        _array(model._intercept_, f"{where}._intercept_", (1,))
    if not np.isfinite(float(model._gamma)):
        raise _Bad(f"{where}: gamma is not finite")


def _check_kmeans(model, n_features, where: str) -> None:
    centres = _array(model.cluster_centers_, f"{where}.cluster_centers_", (None, n_features))
    if not len(centres):
        raise _Bad(f"{where}: no cluster centres")


def _check_pca(model, n_features, where: str) -> None:
    k = _int(model.n_components_, f"{where}.n_components_")
    _array(model.components_, f"{where}.components_", (k, n_features))
    _array(model.mean_, f"{where}.mean_", (n_features,))
    _array(model.explained_variance_, f"{where}.explained_variance_", (k,))


_CHECKS = {"SVC": _check_svm, "SVR": _check_svm, "KMeans": _check_kmeans, "PCA": _check_pca}
