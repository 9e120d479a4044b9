"""A finished run, loaded once, answering rows: the model behind ``danlu serve``."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from ..data._table import check_outputs
from ._rows import rows_to_features

CHUNK = 1024   # rows per forward pass, as danlu.predict batches them


class Predictor:
    """Loads a run's model and pipeline; ``predict(rows)`` is safe to call from many threads.

    Inference holds a lock: one forward pass at a time keeps torch's own thread pool from being
    oversubscribed by the server's worker threads, and makes sharing one model object safe.
    """

    def __init__(self, run_dir: str | Path, device: str = "auto"):
        from ..training import load_model, refuse_generative, resolve_device

        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.model, self.pipeline, self.meta, self.recipe = load_model(self.run_dir, device=self.device)
        refuse_generative(self.run_dir, self.meta, self.recipe, "serve")
        self.model.eval()
        self._lock = threading.Lock()

    def predict(self, rows: list) -> list[dict]:
        """One answer per row: label and class probabilities, a value (regression), a cluster id
        (k-means) or the components (pca)."""
        X = rows_to_features(self.pipeline, rows)
        with self._lock, torch.no_grad():
            if self.meta.get("unsupervised"):
                from ..classical import unsupervised_answers

                return unsupervised_answers(self.model, X)
            scores = self._scores(X)
        return self._answers(scores)

    def _scores(self, X: torch.Tensor) -> np.ndarray:
        from ..training import scores_to_proba

        # the model stays in eval mode for good: no train()/eval() toggling per request
        X = X.to(self.device)
        out = torch.cat([self.model(X[i:i + CHUNK]) for i in range(0, len(X), CHUNK)])
        scores = scores_to_proba(out, self.meta["loss_kind"], self.pipeline.info).float().cpu().numpy()
        check_outputs(scores, "request", list(range(len(scores))))
        return scores

    def _answers(self, scores: np.ndarray) -> list[dict]:
        info = self.pipeline.info
        if info.task == "multilabel":   # as danlu predict: the labels on (probability >= 0.5), joined by '|'
            names = [str(c) for c in info.classes]
            return [{"prediction": label, "probabilities": dict(zip(names, map(float, s)))}
                    for label, s in zip(self.pipeline.decode((scores >= 0.5).astype(np.int64)), scores)]
        if info.task != "classification":
            return [{"prediction": _values(s)} for s in scores]
        labels = self.pipeline.decode(scores.argmax(axis=1).tolist())
        names = [str(c) for c in info.classes]
        return [{"prediction": label, "probabilities": dict(zip(names, map(float, s)))}
                for label, s in zip(labels, scores)]

    def describe(self) -> dict:
        """What ``GET /info`` answers: the model, its inputs and outputs, and its metrics."""
        info = self.pipeline.info
        reader = self.pipeline.reader
        categories = {self._column_name(j): cats for j, cats in sorted(self.pipeline.encoder.categories.items())}
        return {
            "run": self.run_dir.name,
            "model": self.recipe.model.kind,
            "task": info.task,
            "data_kind": info.kind,
            "classes": list(info.classes),
            "features": list(reader.get("columns") or info.feature_names),
            "categorical": categories,
            "input_shape": list(info.input_shape),
            "impute": self.pipeline.encoder.impute,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "loss": self.meta.get("loss_kind"),
            "metrics": self._metrics(),
            "device": str(self.device),
        }

    def _column_name(self, j: int) -> str:
        columns = self.pipeline.reader.get("columns") or []
        return columns[j] if j < len(columns) else str(j)

    def _metrics(self) -> dict:
        from .._integrity import read_json

        path = self.run_dir / "summary.json"
        if not path.is_file():
            return {}
        summary = read_json(path)   # checked against the run's manifest, like the model
        splits = ("train", "validation", "test")
        return {split: summary[split] for split in splits if isinstance(summary.get(split), dict)}


def _values(s) -> float | list[float]:
    values = np.atleast_1d(s)
    return float(values[0]) if len(values) == 1 else [float(v) for v in values]
