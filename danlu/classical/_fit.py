"""Fitting a classical kind into a run directory, and its figures per split.

A classical run uses the same data pipeline, metrics and run directory as a neural one:
recipe.yaml and the pipeline (written by ``danlu._run.train``), then here model.skops (the
fitted estimator, see ``_persist``), model.json (``"classical": true``), a metrics.jsonl of one line
(``epoch`` 1, ``fit_seconds``, ``train_*`` and ``val_*`` figures), an empty events.jsonl and
summary.json with train / validation / test. The estimator is fitted once on the training
rows; there is no loop, so ``loss``, ``optimizer``, ``schedule`` and ``train`` do not apply.

Figures per split:

* classification: ``loss`` is the log loss of the predicted probabilities (what cross-entropy
  training minimises), then every metric of ``danlu.evaluation`` on ``predict_proba``;
* regression: ``loss`` is the MSE, then the regression metrics;
* k-means: ``inertia`` (sum of squared distances to the nearest centre, scikit-learn's
  definition), ``silhouette`` (over at most 2000 rows, seeded) and, when the labels are classes,
  ``adjusted_rand`` between clusters and classes;
* pca: ``reconstruction_mse`` (mean squared difference between a row and its reconstruction
  from the kept components) and ``variance_explained`` (the share of the split's variance that
  the reconstruction keeps; on the training split, the sum of scikit-learn's
  ``explained_variance_ratio_``). The per-component ratios of the fit are in ``run``.

Unsupervised runs also draw their pictures into ``RUN/plots/`` (``_plots``).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, RecipeError
from ._estimators import make_estimator
from ._kinds import CLASSICAL_KINDS, UNSUPERVISED_KINDS
from ._module import SklearnModel, as_rows, thread_limit
from ._persist import load_estimator, save_estimator

MODEL_FILE = "model.skops"
SILHOUETTE_ROWS = 2000   # silhouette costs O(n^2); larger splits are sampled (seeded)
_SINGLE_TARGET = ("svm", "gradient_boosting")


@dataclass
class Plan:
    """A checked, not yet fitted classical model: made before anything is written to disk."""

    recipe: object
    info: object
    estimator: object

    @property
    def kind(self) -> str:
        return self.recipe.model.kind

    def fit_run(self, prepared, run_dir: Path, progress: str | None = None) -> dict:
        """Fit on the training rows, save model and figures into ``run_dir``; returns the summary."""
        run_dir = Path(run_dir)
        show = (progress or self.recipe.output.progress) != "none"
        seconds = self._fit(prepared.splits["train"], run_dir, show)
        digest = save_estimator(self.estimator, run_dir / MODEL_FILE)
        module = SklearnModel(self.estimator, self.kind, self.info, self.recipe.model.n_jobs)
        summary = {split: split_figures(module, X, y, self.info, self.recipe.seed)
                   for split, (X, y) in prepared.splits.items()}
        summary["run"] = {"classical": True, "kind": self.kind, "estimator": type(self.estimator).__name__,
                          "fit_seconds": seconds, "epochs": 1, "steps": 0, "stop_reason": None, "parameters": None,
                          "device": "cpu", "events": 0, "size": size_facts(self.estimator)}
        if self.kind == "pca":
            summary["run"]["explained_variance_ratio"] = [float(r) for r in self.estimator.explained_variance_ratio_]
        self._write(run_dir, summary, digest)
        if self.kind in UNSUPERVISED_KINDS:
            self._draw(prepared.splits, run_dir, show)
        return summary

    def _draw(self, splits: dict, run_dir: Path, show: bool) -> None:
        """The run's pictures; failing to draw never fails the run (the model is already saved)."""
        from ._plots import write_plots

        try:
            paths = write_plots(self.estimator, self.kind, splits, self.info, run_dir / "plots", self.recipe.seed,
                                self.recipe.model.n_jobs)
        except Exception as err:  # noqa: BLE001
            print(f"danlu: warning: plots of {run_dir} not drawn ({type(err).__name__}: {err})", file=sys.stderr)
            return
        if show:
            print(f"danlu: plots: {', '.join(str(p) for p in paths)}", file=sys.stderr, flush=True)

    def _fit(self, train, run_dir: Path, show: bool) -> float:
        X, y = train
        if show:
            print(f"danlu: fitting {self.kind} ({type(self.estimator).__name__}) on {len(X)} training rows, "
                  f"{self.recipe.model.n_jobs} thread(s) -> {run_dir}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        with thread_limit(self.recipe.model.n_jobs):
            if self.kind in UNSUPERVISED_KINDS:
                self.estimator.fit(as_rows(X))
            else:
                self.estimator.fit(as_rows(X), _targets(y, self.info))
        seconds = time.perf_counter() - start
        if show:
            print(f"danlu: fitted in {seconds:.2f} s", file=sys.stderr, flush=True)
        return seconds

    def _write(self, run_dir: Path, summary: dict, digest: str) -> None:
        from ..training import _checkpoint as ck

        meta = model_meta(self.recipe, self.info, self.estimator, digest)
        ck.atomic_write_text(run_dir / "model.json", json.dumps(meta, indent=1))
        line = {"epoch": 1, "step": 0, "fit_seconds": summary["run"]["fit_seconds"],
                **{f"train_{k}": v for k, v in summary["train"].items()},
                **{f"val_{k}": v for k, v in summary.get("validation", {}).items()}}
        ck.atomic_write_text(run_dir / "metrics.jsonl", json.dumps(line) + "\n")
        ck.atomic_write_text(run_dir / "events.jsonl", "")   # no loop, no monitors: nothing happened
        ck.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))


def plan(recipe, prepared) -> Plan | None:
    """The classical model a recipe asks for (checked against the data), or None for a neural kind."""
    kind = recipe.model.kind
    if kind not in CLASSICAL_KINDS:
        return None
    info = prepared.info
    if prepared.pipeline.augments:
        raise RecipeError(f"{recipe.source}: data.augment applies to the batches of neural training; "
                          f"model.kind {kind} is fitted once on the training rows, so remove data.augment")
    if info.task == "multilabel":
        raise RecipeError(f"{recipe.source}: model.kind {kind} does not learn data.task multilabel yet; use a neural "
                          f"model (mlp, logistic, ...) with one sigmoid output per label")
    if kind in _SINGLE_TARGET and info.task == "regression" and info.n_targets > 1:
        raise RecipeError(f"{recipe.source}: model.kind {kind} predicts one target, the data has "
                          f"{info.n_targets}; use decision_tree or random_forest (or a neural model)")
    estimator = make_estimator(recipe.model, info, recipe.seed, scale_target=recipe.data.scale_target,
                               source=recipe.source)
    if kind == "svm" and info.task == "classification":
        _check_calibration_folds(recipe, prepared)
    if kind == "kmeans" and estimator.n_clusters > len(prepared.splits["train"][0]):
        raise RecipeError(f"{recipe.source}: model.n_clusters {estimator.n_clusters} is more than the "
                          f"{len(prepared.splits['train'][0])} training rows; lower model.n_clusters")
    if kind == "pca":
        _check_components(recipe, prepared)
    return Plan(recipe, info, estimator)


def _check_components(recipe, prepared) -> None:
    """PCA keeps at most min(rows, features) components: say which one binds, before fitting."""
    X = prepared.splits["train"][0]
    rows, features = len(X), int(np.prod(X.shape[1:]))
    limit = min(rows, features)
    wanted = recipe.model.n_components
    if wanted > limit:
        what = f"{features} features" if features <= rows else f"{rows} training rows"
        raise RecipeError(f"{recipe.source}: model.n_components {wanted} is more than the {what} of the data; "
                          f"set model.n_components to at most {limit}")


def _check_calibration_folds(recipe, prepared) -> None:
    y = prepared.splits["train"][1].numpy()
    counts = np.bincount(y.astype(np.int64), minlength=prepared.info.n_classes)
    present = counts[counts > 0]
    folds = recipe.model.calibration_folds
    if present.min() < folds:
        label = prepared.info.classes[int(np.flatnonzero(counts == present.min())[0])]
        raise DataError(f"{recipe.source}: class {label!r} has {present.min()} training rows, fewer than "
                        f"model.calibration_folds ({folds}) that calibrate the SVM's probabilities; lower "
                        f"model.calibration_folds or give more rows")


def _targets(y: torch.Tensor, info) -> np.ndarray:
    y = y.detach().cpu().numpy()
    if info.task == "classification":
        return y.astype(np.int64)
    return y.astype(np.float64)


def model_meta(recipe, info, estimator, digest: str) -> dict:
    import sklearn

    kind = recipe.model.kind
    unsupervised = kind in UNSUPERVISED_KINDS
    loss_kind = "none" if unsupervised else ("cross_entropy" if info.task == "classification" else "mse")
    return {"classical": True, "kind": kind, "unsupervised": unsupervised,
            "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            "file": MODEL_FILE, "sha256": digest, "sklearn_version": sklearn.__version__,
            "loss_kind": loss_kind, "info": info.to_json(), "model": dict(recipe.model), "target_scaled": False}


def load_module(run_dir: str | Path, meta: dict, info) -> SklearnModel:
    """The fitted estimator of a classical run (checked against model.json), as a module."""
    estimator = load_estimator(Path(run_dir) / meta.get("file", MODEL_FILE), sha256=meta.get("sha256"),
                               expected=meta.get("estimator"))
    return SklearnModel(estimator, meta["kind"], info, int(meta["model"].get("n_jobs", 1)))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def split_figures(module: SklearnModel, X, y, info, seed: int = 0) -> dict:
    """Loss and metrics of one split, as for a neural run (k-means: cluster figures; pca: how well
    the components rebuild the rows)."""
    from ..training import evaluate_outputs, model_outputs

    if module.kind == "pca":
        return component_figures(module.estimator, X, module.n_jobs)
    if module.kind in UNSUPERVISED_KINDS:
        return cluster_figures(module.estimator, X, y, info, seed, module.n_jobs)
    loss_kind = "cross_entropy" if info.task == "classification" else "mse"
    return evaluate_outputs(model_outputs(module, X), y, _plain_loss(loss_kind), loss_kind, info)


def _plain_loss(loss_kind: str):
    import torch.nn.functional as F

    if loss_kind == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y.to(out.device).long())
    return lambda out, y: F.mse_loss(out, y.to(out).reshape(out.shape))


def cluster_figures(estimator, X, y, info, seed: int = 0, n_jobs: int = 1) -> dict:
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    rows = as_rows(X)
    with thread_limit(n_jobs):
        clusters = estimator.predict(rows)
        distances = np.min(estimator.transform(rows), axis=1)
    out = {"inertia": float(np.sum(np.square(distances.astype(np.float64))))}
    if 2 <= len(np.unique(clusters)) <= len(rows) - 1:
        size = min(len(rows), SILHOUETTE_ROWS)
        out["silhouette"] = float(silhouette_score(rows, clusters, sample_size=size if size < len(rows) else None,
                                                   random_state=seed))
    if info.task == "classification":
        out["adjusted_rand"] = float(adjusted_rand_score(y.detach().cpu().numpy().astype(np.int64), clusters))
    return out


def component_figures(estimator, X, n_jobs: int = 1) -> dict:
    """``reconstruction_mse`` and ``variance_explained`` of a fitted PCA on the rows ``X``.

    ``variance_explained`` is 1 - (squared reconstruction error) / (squared distance to the split's
    own mean): on the training rows exactly the summed ``explained_variance_ratio_``, and on a
    held-out split the same question asked of new rows. A split without variance has none.
    """
    rows = as_rows(X)
    with thread_limit(n_jobs):
        rebuilt = estimator.inverse_transform(estimator.transform(rows))
    rows = rows.astype(np.float64)
    error = np.square(rows - rebuilt.astype(np.float64))
    out = {"reconstruction_mse": float(error.mean())}
    spread = float(np.square(rows - rows.mean(axis=0)).sum())
    if spread > 0:
        out["variance_explained"] = 1.0 - float(error.sum()) / spread
    return out


def cluster_ids(module: SklearnModel, X) -> np.ndarray:
    with thread_limit(module.n_jobs):
        return np.asarray(module.estimator.predict(as_rows(X)), dtype=np.int64)


def unsupervised_answers(module: SklearnModel, X) -> list[dict]:
    """What ``danlu predict`` and ``danlu serve`` answer for each row of an unsupervised run:
    ``{"prediction": cluster id}`` (k-means) or ``{"pc1": ..., "pcK": ...}`` (pca)."""
    if module.kind == "pca":
        with thread_limit(module.n_jobs):
            components = module.estimator.transform(as_rows(X))
        return [{f"pc{k + 1}": float(v) for k, v in enumerate(row)} for row in components]
    return [{"prediction": int(c)} for c in cluster_ids(module, X)]


def size_facts(estimator) -> dict:
    """A few numbers that say how big the fitted model is."""
    inner = getattr(estimator, "regressor_", None) or estimator
    facts = {}
    if hasattr(inner, "tree_"):
        facts.update(nodes=int(inner.tree_.node_count), depth=int(inner.get_depth()), leaves=int(inner.get_n_leaves()))
    if hasattr(inner, "estimators_") and isinstance(inner.estimators_, list) and inner.estimators_ \
            and hasattr(inner.estimators_[0], "tree_"):
        facts.update(trees=len(inner.estimators_), nodes=int(sum(t.tree_.node_count for t in inner.estimators_)))
    if hasattr(inner, "calibrated_classifiers_"):
        inner = inner.calibrated_classifiers_[0].estimator
    if hasattr(inner, "support_vectors_"):
        facts["support_vectors"] = int(len(inner.support_vectors_))
    if hasattr(inner, "n_iter_"):
        facts["iterations"] = int(np.max(inner.n_iter_))
    if hasattr(inner, "cluster_centers_"):
        facts["clusters"] = int(len(inner.cluster_centers_))
    if hasattr(inner, "components_"):
        facts["components"] = int(len(inner.components_))
    return facts
