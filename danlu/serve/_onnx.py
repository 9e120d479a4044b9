"""``danlu export --format onnx``: the model with its preprocessing folded into one ONNX graph.

The graph takes raw features — the numbers as they stand in the training CSV or array, before the
source's divisor, imputation and scaling — and those steps run as graph ops. Categorical columns
take integer category codes (as floats); the code table is written beside the model in
``<file>.pipeline.json``, with the column order, the classes and the output names.

torch 2.13 exports with the torch.export-based exporter by default, which needs ``onnxscript``;
the TorchScript-based exporter (``dynamo=False``) needs nothing more, handles LSTM/GRU layers and
gives a plain dynamic batch axis, so it is used here.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data._scaler_module import ScalerModule
from ..errors import UserError

OPSET = 17
INPUT_NAME = "input"
FORMAT = "danlu.onnx-pipeline"


class FoldedModel(nn.Module):
    """raw x -> x / divisor -> fill missing (NaN) cells -> (x - shift) / div -> model -> outputs."""

    def __init__(self, model: nn.Module, pipeline, loss_kind: str):
        super().__init__()
        self.model = model
        self.pipeline_info = pipeline.info
        self.loss_kind = loss_kind
        shape = tuple(pipeline.info.input_shape)
        self.register_buffer("divisor", torch.tensor(float(pipeline.reader.get("divisor", 1.0))))
        fills = _fill_values(pipeline)
        self.impute = fills is not None
        self.register_buffer("fill", torch.zeros(shape) if fills is None else torch.from_numpy(fills).reshape(shape))
        self.scaler = ScalerModule(pipeline.scaler, shape)

    def forward(self, x):
        x = x / self.divisor
        if self.impute:
            x = torch.where(torch.isnan(x), self.fill.unsqueeze(0).expand_as(x), x)
        x = self.scaler(x)
        out = self.model(x)
        info = self.pipeline_info
        if info.task in ("classification", "multilabel"):   # multilabel: one sigmoid probability per label
            from ..training import scores_to_proba

            return out, scores_to_proba(out, self.loss_kind, info)
        k = int(info.n_targets or 1)
        return out.reshape(-1) if k == 1 else out.reshape(-1, k)


def _fill_values(pipeline) -> np.ndarray | None:
    """The imputation fills as numbers (categorical fills as their codes), or None without imputation."""
    encoder = pipeline.encoder
    if encoder.fills is None:
        return None
    out = np.zeros(len(encoder.fills), dtype=np.float32)
    for j, fill in enumerate(encoder.fills):
        if j in encoder.categories:
            cats = encoder.categories[j]
            out[j] = cats.index(fill) if fill in cats else len(cats)
        elif fill is not None:
            out[j] = float(fill)
    return out


def output_names(info) -> list[str]:
    return ["logits", "probabilities"] if info.task in ("classification", "multilabel") else ["predictions"]


def export_onnx(run_dir: str | Path, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Write the run's model, preprocessing folded in, to ``path`` (default RUN/model.onnx).

    Beside it, ``<path>.pipeline.json`` describes the input (columns, shape, category codes) and the
    outputs. Returns the path of the ONNX file.
    """
    from ..training import load_model, refuse_generative

    run_dir = Path(run_dir)
    path = Path(path) if path is not None else run_dir / "model.onnx"
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists; choose another -o path or pass --overwrite")
    model, pipeline, meta, recipe = load_model(run_dir, device="cpu")
    refuse_generative(run_dir, meta, recipe, "export")
    if _is_classical(recipe):
        raise UserError(f"{run_dir}: model kind '{recipe.model.kind}' is a scikit-learn model; ONNX export "
                        f"covers danlu's neural models (mlp, cnn, rnn, ...) — use `danlu serve` for it instead")
    folded = FoldedModel(model.float(), pipeline, meta["loss_kind"]).eval()
    example = _example_input(pipeline)
    names = output_names(pipeline.info)
    path.parent.mkdir(parents=True, exist_ok=True)
    _export(folded, example, path, names)
    sidecar = sidecar_path(path)
    sidecar.write_text(json.dumps(describe_pipeline(pipeline, meta, names), indent=1, ensure_ascii=False),
                       encoding="utf-8")
    return path


def sidecar_path(path: Path) -> Path:
    return Path(str(path) + ".pipeline.json")


def _is_classical(recipe) -> bool:
    from .. import classical

    return classical.is_classical(recipe.model.kind)


def _example_input(pipeline) -> torch.Tensor:
    x = torch.zeros(2, *pipeline.info.input_shape)
    for j, _ in pipeline.info.categorical:
        x.view(2, -1)[:, j] = 0.0   # a valid category code, so embedding lookups trace
    return x


def _export(module: nn.Module, example: torch.Tensor, path: Path, names: list[str]) -> None:
    axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is chosen on purpose (see the module docstring); its notices are noise
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=axes, opset_version=OPSET)


def describe_pipeline(pipeline, meta: dict, names: list[str]) -> dict:
    """The JSON written beside the ONNX file: what to feed it and what comes out."""
    info = pipeline.info
    encoder = pipeline.encoder
    columns = pipeline.reader.get("columns") or []
    categorical = {}
    for j, cats in sorted(encoder.categories.items()):
        name = columns[j] if j < len(columns) else str(j)
        categorical[name] = {"column": j, "codes": {c: i for i, c in enumerate(cats)}, "unknown_code": len(cats)}
    return {
        "format": FORMAT,
        "version": 1,
        "input": {"name": INPUT_NAME, "shape": ["batch", *info.input_shape], "dtype": "float32",
                  "columns": list(columns), "missing": "NaN" if encoder.fills is not None else "not accepted"},
        "folded": {"divisor": float(pipeline.reader.get("divisor", 1.0)),
                   "impute": encoder.impute, "scale": pipeline.scaler.mode},
        "categorical": categorical,
        "task": info.task,
        "classes": list(info.classes),
        "loss": meta.get("loss_kind"),
        "outputs": names,
    }
