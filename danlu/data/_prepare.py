"""``prepare``: recipe.data -> checked, split, transformed tensors and the fitted pipeline.

The order matters and reads top to bottom: load, refuse unusable values, encode labels,
split, then fit every transform on the training rows only, so validation and test scores
are honest.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError, RecipeError
from ._augment import GEOMETRIC
from ._encode import FeatureEncoder, Scaler
from ._info import DataInfo
from ._labels import LabelCodec
from ._pipeline import Pipeline
from ._sources import Loaded, kind_of, load
from ._split import split_or_given
from ._table import Table, check_finite, check_scaled, missing_summary


@dataclass
class Prepared:
    info: DataInfo
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "train" / "validation" / "test" -> (X, y)
    pipeline: Pipeline


def _checked_rows(cfg, seed: int, source_name: str):
    """Load and check every labelled row: (loaded, table, codec, y)."""
    return _checked_table(load(cfg, seed, source_name), cfg)


def _checked_table(loaded, cfg):
    """A loaded table's usable rows: (loaded, table, codec, y) — unusable values refused, missing
    values handled as ``data.impute`` says, labels encoded."""
    label = loaded.reader.get("label") or "label"
    table = loaded.table
    if len(table) == 0:
        raise DataError(f"{table.where}: no rows; the data set is empty")
    check_finite(table, label)
    table = _missing_labels(table, cfg["impute"], label)
    table = _missing_features(table, cfg["impute"])
    if cfg["task"] == "multilabel":
        labels = table.labels if table.labels is not None else np.empty((len(table), 0))
        width = labels.shape[1] if labels.ndim == 2 else 1
        names = label if isinstance(label, list) else [str(j) for j in range(width)]   # arrays: column numbers
        codec = LabelCodec.fit_multilabel(labels, table.where, names, table.row_lines(), table.line_word)
    else:
        codec = LabelCodec.fit(table.labels, cfg["task"], table.where, label, loaded.class_names)
    return loaded, table, codec, codec.encode(table.labels)


def labelled_rows(data_cfg, seed: int, source_name: str = "recipe") -> tuple[np.ndarray, str]:
    """Label codes of every usable row, in the order ``prepare(..., rows=...)`` indexes them, and the
    task — what cross-validation needs to assign folds."""
    _, _, codec, y = _checked_rows(_config(data_cfg, source_name), seed, source_name)
    return y, codec.task


def prepare(data_cfg, seed: int, source_name: str = "recipe", rows: dict | None = None) -> Prepared:
    """Load, check, split and transform the data a recipe's ``data`` section describes.

    ``rows`` (name -> row indices into :func:`labelled_rows`) replaces the recipe's seeded split,
    e.g. for the folds of cross-validation; transforms are still fitted on ``rows["train"]`` only.
    """
    cfg = _config(data_cfg, source_name)
    from ._stream import prepare_streamed, wants_stream

    if wants_stream(cfg, source_name):   # data.stream: features stay on disk, read batch by batch
        return prepare_streamed(cfg, seed, source_name, rows)
    return prepare_loaded(load(cfg, seed, source_name), cfg, seed, source_name, rows)


def prepare_loaded(loaded, cfg, seed: int, source_name: str, rows: dict | None = None) -> Prepared:
    """A loaded table (a recipe's source, or Python objects: danlu.data._python) through the rest:
    refuse unusable values, encode labels, split, fit the transforms on the training rows, build
    the pipeline."""
    loaded, table, codec, y = _checked_table(loaded, cfg)
    shape, kind = _sample_shape(loaded, cfg["shape"], source_name)
    _check_augment(cfg["augment"], kind, source_name)

    rows = split_or_given(y, codec, cfg["split"], seed, table.where, rows)

    # fitted on the training rows only: categories, fill values and scaling statistics
    encoder = FeatureEncoder.fit(table.take(rows["train"]), cfg["impute"])
    X = encoder.transform(table).reshape(len(table), *shape)
    skip = [j for j, _ in encoder.cardinalities()]
    scaler = Scaler.fit(X[rows["train"]], cfg["scale"], 2 if kind == "sequence" else 1, skip)
    X_all = scaler.apply(torch.from_numpy(np.ascontiguousarray(X)))
    check_scaled(table, X_all)
    y_all = torch.from_numpy(y)

    info = DataInfo(
        task=codec.task,
        kind=kind,
        input_shape=shape,
        n_classes=len(codec.classes) if codec.task == "classification" else None,
        classes=codec.classes,
        feature_names=loaded.feature_names,
        categorical=encoder.cardinalities(),
        n_targets=codec.n_targets,
    )
    pipeline = Pipeline(info, loaded.reader, encoder, scaler, codec, dict(cfg["augment"]))
    splits = {}
    for name, idx in rows.items():
        index = torch.from_numpy(idx)
        splits[name] = (X_all[index], y_all[index])
    return Prepared(info, splits, pipeline)


def _config(data_cfg, source_name: str):
    """A validated data section: a recipe's ``data`` node as is, a plain mapping checked by the schema."""
    from ..recipe import DATA, Node, check_section

    if isinstance(data_cfg, Node):
        cfg = data_cfg
    elif isinstance(data_cfg, Mapping):
        cfg = check_section(DATA, dict(data_cfg), "data", source_name)
    else:
        raise TypeError(f"prepare() needs the recipe's data section (a mapping), got {type(data_cfg).__name__}")
    if isinstance(cfg["label"], list) and cfg["task"] != "multilabel":
        raise RecipeError(f"{source_name}: data.label is a list of columns, which only data.task multilabel takes; "
                          f"set data.task: multilabel or name one label column")
    return cfg


def _sample_shape(loaded: Loaded, shape_cfg, source_name: str) -> tuple[tuple[int, ...], str]:
    """The per-sample shape: the source's own, or ``data.shape`` (which also sets the kind)."""
    if shape_cfg is None:
        return tuple(loaded.shape), loaded.kind
    shape = tuple(int(s) for s in shape_cfg)   # 1 to 3 sizes >= 1 (the schema checked them)
    width = loaded.table.values.shape[1]
    if math.prod(shape) != width:
        raise DataError(f"{loaded.table.where}: data.shape {list(shape)} holds {math.prod(shape)} values but each "
                        f"row has {width}; fix data.shape")
    if loaded.table.cats:
        names = ", ".join(loaded.table.names[j] for j in sorted(loaded.table.cats))
        raise DataError(f"{loaded.table.where}: data.shape cannot reshape rows with categorical columns ({names}); "
                        f"remove data.shape or those columns")
    return shape, kind_of(shape)


def _check_augment(augment, kind: str, source_name: str) -> None:
    for key in GEOMETRIC:
        if augment[key] and kind != "image":
            raise RecipeError(f"{source_name}: data.augment.{key} applies to image data, but these data are {kind}; "
                              f"remove it (data.augment.noise works for any data)")


def _missing_labels(table: Table, impute: str, label: str) -> Table:
    missing = table.label_missing()
    if not missing.any():
        return table
    if impute != "drop":
        first = table.row_lines()[int(np.argmax(missing))]
        raise DataError(f"{table.where}: label '{label}' is missing on {int(missing.sum())} row(s) (first on "
                        f"{table.line_word} {first}); fill the labels in or set data.impute: drop to drop those rows")
    return _keep(table, ~missing, "a missing label")


def _missing_features(table: Table, impute: str) -> Table:
    mask = table.missing_mask()
    if not mask.any():
        return table
    if impute == "none":
        raise DataError(f"{table.where}: missing values in {missing_summary(table, mask)}; set data.impute to "
                        f"mean, median, most_frequent or drop, or fill the cells in")
    if impute == "drop":
        return _keep(table, ~mask.any(axis=1), "missing values")
    return table  # filled after the split, with values from the training rows


def _keep(table: Table, keep: np.ndarray, why: str) -> Table:
    if not keep.any():
        raise DataError(f"{table.where}: every row has {why}, so data.impute: drop leaves nothing; "
                        f"fill the cells in or choose mean, median or most_frequent")
    return table.take(np.flatnonzero(keep))
