"""A fitted scikit-learn estimator seen as a ``torch.nn.Module``, so the verbs built for neural runs
(evaluate, predict, ensembles, a teacher in distillation) work on classical runs unchanged.

The module's output follows the neural conventions with ``loss_kind`` cross_entropy / mse:

* classification: log-probabilities ``log(predict_proba)`` (clipped at the float64 epsilon), one
  column per class of the data even when a class was missing from the training rows, so
  ``softmax(output)`` gives back the estimator's probabilities;
* regression: the predictions, ``(N, n_targets)``;
* k-means: minus the squared distance to each centre, so ``argmax`` is the cluster id;
* pca: the principal components of each row, ``(N, n_components)``.

The output is float64 (what scikit-learn computes in), on the device of the input. The module has
no parameters and no gradient: it is for inference only.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

EPS = float(np.finfo(np.float64).eps)


class SklearnModel(nn.Module):
    def __init__(self, estimator, kind: str, info, n_jobs: int = 1):
        super().__init__()
        self.estimator = estimator
        self.kind = kind
        self.info = info
        self.n_jobs = n_jobs

    def extra_repr(self) -> str:
        return f"kind={self.kind}, estimator={type(self.estimator).__name__}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = as_rows(x)
        with thread_limit(self.n_jobs):
            if self.kind == "kmeans":
                out = -np.square(self.estimator.transform(rows))
            elif self.kind == "pca":
                out = np.asarray(self.estimator.transform(rows), dtype=np.float64)
            elif self.info.task == "classification":
                out = np.log(np.clip(class_proba(self.estimator, rows, self.info.n_classes), EPS, None))
            else:
                out = np.asarray(self.estimator.predict(rows), dtype=np.float64).reshape(len(rows), -1)
        return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)


def thread_limit(n_jobs: int):
    """At most ``n_jobs`` OpenMP / BLAS threads inside the block (-1: no limit)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=None if n_jobs == -1 else n_jobs)


def as_rows(x) -> np.ndarray:
    """Samples of any shape (tabular, image, sequence) as flat float32 rows for scikit-learn."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float32, copy=False)


def class_proba(estimator, rows: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` widened to every class of the data: a class the training rows lacked gets 0."""
    proba = np.asarray(estimator.predict_proba(rows), dtype=np.float64)
    classes = np.asarray(estimator.classes_, dtype=np.int64)
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    full = np.zeros((len(rows), n_classes))
    full[:, classes] = proba
    return full
